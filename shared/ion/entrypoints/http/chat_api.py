"""The `chat` function's HTTP API: chat and conversations.

Idempotency-Key (optional request header on POST /v1/chat): the first request with a
key claims (user, key) with a hash of its message and conversation_id; when it succeeds
its reply is stored, and a retry with the same key, user and body gets that reply again
(200, `Idempotent-Replayed: true`) without another LLM call. The same key with another
body is 422 `idempotency_key_reused`; a retry while the first is still running is 409
`conflict` with Retry-After. A failed request (503, 422 blocked...) releases the key, so
retrying with it runs again (and completes the message kept `unanswered`). The `stream`
flag is not part of the hash: a replay answers in the form the retry asks for, JSON or a
one-shot SSE stream (`meta`, one `delta` with the whole reply, `done`).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Iterator
from typing import Any

from flask import Request, Response, stream_with_context
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from ion.bootstrap import App, get_app
from ion.domain.models import ChatReply, Conversation, Message, Safety
from ion.domain.text import clean_text
from ion.entrypoints.http import feedback_api, me_api, profile_api
from ion.entrypoints.http.api import (
    ID_PATTERN,
    Call,
    dispatch,
    error_body,
    error_response,
    json_response,
    route,
)
from ion.entrypoints.http.health import health, ready
from ion.errors import (
    BadRequest,
    IonError,
    LlmError,
    ValidationFailed,
)
from ion.services.idempotency import IDEMPOTENCY_HEADER, IdempotencyClaim, IdempotencyService
from ion.services.turn_preparation import PreparedTurn

REPLAYED_HEADER = "Idempotent-Replayed"
_IDEMPOTENCY_KEY = re.compile(r"^[\x21-\x7e]{1,255}$")

log = logging.getLogger("ion.http")


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: StrictStr
    conversation_id: StrictStr | None = None
    stream: StrictBool = False


def post_chat(call: Call[App]) -> Response:
    user = call.user()
    try:
        body = call.json_body(ChatBody)
        text = clean_text(
            body.message, field_name="message", max_chars=call.app.settings.max_message_chars
        )
        if body.conversation_id is not None and not ID_PATTERN.match(body.conversation_id):
            raise ValidationFailed("conversation_id: must match ^[A-Za-z0-9_-]{1,64}$")
        key = _idempotency_key(call, user, text, body.conversation_id)
    except IonError:
        call.app.quota.admit(user, "api")  # every authenticated call counts, refused ones too
        raise
    chat = call.app.chat
    # An explicit "stream" in the body wins; otherwise the Accept header decides.
    if "stream" in body.model_fields_set:
        wants_stream = body.stream
    else:
        wants_stream = "text/event-stream" in call.request.headers.get("Accept", "")
    try:
        # Reads the conversation (and claims the Idempotency-Key at the same time), checks
        # the message for crisis language, then claims the conversation's turn (409 while
        # another turn of it runs) in one write with the request's charges: the API limit,
        # and (never for a learner in crisis) the chat limit and the call's tokens on the
        # daily budget (429); all before any LLM call. Invalid bodies, refused keys and
        # replays count on the API limit only.
        try:
            turn = chat.prepare(
                user,
                text,
                body.conversation_id,
                budget=call.app.quota,
                buckets=("api",),
                alongside=key,
            )
        except _Replay as replay:
            call.app.quota.admit(user, "api")
            return _replay(call, replay.reply, wants_stream)
        except IonError:
            if key is not None and key.refused:
                call.app.quota.admit(user, "api")
            raise
        if wants_stream:
            return _sse_response(call, turn, key)
        try:
            # Settles or releases what the turn holds; the key's reply is stored with the
            # turn's last writes.
            reply = chat.answer(turn, key.complete if key is not None else None)
        except LlmError as exc:
            # The learner's message is stored (unanswered/blocked): say in which
            # conversation, so a retry can send it there and complete it.
            if key is not None:
                key.release()
            return _turn_error(exc, call.request_id, turn.conversation.id)
    except BaseException:
        if key is not None:
            key.release()
        raise
    return json_response(key.reply if key is not None and key.reply else reply_json(reply))


class _Replay(Exception):
    """Not an error: the key's stored reply answers, and the turn ends before it began."""

    def __init__(self, reply: dict[str, Any]) -> None:
        super().__init__("replayed")
        self.reply = reply


class _KeyClaim:
    """The request's Idempotency-Key (rules: ion.services.idempotency), claimed at the same
    time as the turn's first reads; its reply stored with the turn's last writes."""

    def __init__(
        self, service: IdempotencyService, user: str, key: str, text: str, cid: str | None
    ) -> None:
        self._service = service
        self._request = (user, key, text, cid)
        self.claim: IdempotencyClaim | None = None
        self.refused = False  # another body's key, or one still being answered
        self.reply: dict[str, Any] | None = None

    def __call__(self) -> None:
        try:
            claim = self._service.claim(*self._request)
        except IonError:
            self.refused = True
            raise
        if claim.replay is not None:
            raise _Replay(claim.replay)
        self.claim = claim

    def complete(self, reply: ChatReply) -> None:
        if self.claim is not None:
            self.reply = reply_json(reply)
            claim, self.claim = self.claim, None  # stored or not, never released after this
            claim.complete(self.reply)

    def release(self) -> None:
        """A failed or cut-off request: a retry with the key runs again."""
        if self.claim is not None:
            claim, self.claim = self.claim, None
            claim.release()


def _idempotency_key(
    call: Call[App], user: str, text: str, conversation_id: str | None
) -> _KeyClaim | None:
    """The request's Idempotency-Key, when it sent the header (checked, not yet claimed)."""
    raw = call.request.headers.get(IDEMPOTENCY_HEADER)
    if raw is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(raw):
        raise BadRequest(
            f"{IDEMPOTENCY_HEADER} must be 1 to 255 visible ASCII characters (no spaces)"
        )
    return _KeyClaim(call.app.idempotency, user, raw, text, conversation_id)


def _turn_error(exc: IonError, request_id: str, conversation_id: str) -> Response:
    response = error_response(exc, request_id)
    body = json.loads(response.get_data())
    body["conversation_id"] = conversation_id
    response.set_data(json.dumps(body, ensure_ascii=False))
    return response


def _replay(call: Call[App], reply: dict[str, Any], wants_stream: bool) -> Response:
    # A reply stored before turns had a mode was a single persona's answer.
    reply.setdefault("mode", "single")
    reply.setdefault("personas", [reply["persona"]["id"]])
    reply.setdefault("quick_replies", [])
    if not wants_stream:
        response = json_response(reply)
    else:
        events = [
            _sse(
                "meta",
                {
                    "conversation_id": reply["conversation_id"],
                    "message_id": reply["message_id"],
                    "user_message_id": reply["user_message_id"],
                    "persona": reply["persona"],
                    "routing": reply["routing"],
                    "resonance_key": reply["resonance_key"],
                    "safety": reply["safety"],
                    "mode": reply["mode"],
                    "personas": reply["personas"],
                    "quick_replies": reply["quick_replies"],
                    "request_id": call.request_id,
                },
            ),
            _sse("delta", {"text": reply["reply"]}),
            _sse(
                "done",
                {
                    "model": reply["model"],
                    "usage": reply["usage"],
                    "finish_reason": reply["finish_reason"],
                    "cached": reply["cached"],
                    "latency_ms": reply["latency_ms"],
                },
            ),
        ]
        response = Response("".join(events), mimetype="text/event-stream")
        response.headers["Cache-Control"] = "no-store"
    response.headers[REPLAYED_HEADER] = "true"
    return response


def reply_json(reply: ChatReply) -> dict[str, Any]:
    return {
        "conversation_id": reply.conversation_id,
        "message_id": reply.message_id,
        "user_message_id": reply.user_message_id,
        "reply": reply.reply,
        "persona": {"id": reply.persona.id, "name": reply.persona.name},
        "routing": reply.routing.model_dump(mode="json"),
        "resonance_key": reply.resonance_key.model_dump(mode="json"),
        "model": reply.model,
        "usage": reply.usage.model_dump(mode="json"),
        "latency_ms": reply.latency_ms,
        "finish_reason": reply.finish_reason,
        "cached": reply.cached,
        "safety": safety_json(reply.safety),
        "mode": reply.mode,
        "personas": list(reply.personas),
        "quick_replies": list(reply.quick_replies),
    }


def safety_json(safety: Safety) -> dict[str, Any]:
    return safety.model_dump(mode="json", exclude_none=True)


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse_response(call: Call[App], turn: PreparedTurn, key: _KeyClaim | None = None) -> Response:
    chat = call.app.chat
    request_id = call.request_id
    completed: list[ChatReply] = []

    def on_reply(reply: ChatReply) -> None:
        completed.append(reply)
        if key is not None:
            key.complete(reply)

    progress: dict[str, Any] = {}

    def events() -> Iterator[str]:
        try:
            yield from stream_events()
        finally:
            if key is not None and not completed:
                key.release()  # failed or cut off: a retry with the key runs again
            _log_stream(call, progress, completed=bool(completed))

    def stream_events() -> Iterator[str]:
        progress["meta_at"] = time.perf_counter()
        yield _sse(
            "meta",
            {
                "conversation_id": turn.conversation.id,
                "message_id": turn.assistant_message_id,
                "user_message_id": turn.user_message.id,
                "persona": {"id": turn.persona.id, "name": turn.persona.name},
                "routing": turn.routing.model_dump(mode="json"),
                "resonance_key": turn.resonance_key.model_dump(mode="json"),
                "safety": safety_json(turn.safety),
                "mode": turn.plan.mode,
                "personas": list(turn.plan.personas),
                "quick_replies": list(turn.plan.quick_replies),
                "request_id": request_id,
            },
        )
        try:
            for chunk in chat.stream(turn, on_reply):
                if chunk.final is not None:
                    yield _sse(
                        "done",
                        {
                            "model": chunk.final.model,
                            "usage": chunk.final.usage.model_dump(mode="json"),
                            "finish_reason": chunk.final.finish_reason,
                            "cached": turn.cached is not None,
                            "latency_ms": completed[-1].latency_ms,
                        },
                    )
                elif chunk.text:
                    yield _sse("delta", {"text": chunk.text})
        except IonError as exc:
            # Headers are gone already: the failure travels as an `error` event.
            body = error_body(exc, request_id)
            progress["code"] = body["error"]["code"]
            yield _sse("error", body)

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    # Should the server close the response before streaming it at all, the stream's own
    # cleanup never runs: give back the turn lease and the token reservation here.
    response.call_on_close(lambda: chat.abandon(turn))
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


def _log_stream(call: Call[App], progress: dict[str, Any], *, completed: bool) -> None:
    """One line per streamed turn: `time_to_meta_ms` feeds the latency SLO (time to the
    first event, terraform/slo.tf); `code` the error event's, like a request line's."""
    if "meta_at" not in progress:
        return
    now = time.perf_counter()
    code = progress.get("code")
    outcome = f"error {code}" if code else "done" if completed else "cut off"
    time_to_meta_ms = round((progress["meta_at"] - call.started) * 1000, 1)
    stream_ms = round((now - call.started) * 1000, 1)
    log.info(
        "chat stream %s: meta after %.1f ms, %s after %.1f ms",
        call.request_id,
        time_to_meta_ms,
        outcome,
        stream_ms,
        extra={
            "request_id": call.request_id,
            "time_to_meta_ms": time_to_meta_ms,
            "stream_ms": stream_ms,
            "code": code,
        },
    )


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "conversation_id": conversation.id,
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
        "current_persona": conversation.current_persona,
        "message_count": conversation.message_count,
    }


def message_json(message: Message) -> dict[str, Any]:
    return {
        "message_id": message.id,
        "role": message.role,
        "text": message.text,
        "persona": message.persona,
        "created_at": message.created_at.isoformat(),
        "status": message.status,
        "model": message.model,
        "resonance_key": message.resonance_key.model_dump(mode="json")
        if message.resonance_key
        else None,
        "usage": message.usage.model_dump(mode="json") if message.usage else None,
        "latency_ms": message.latency_ms,
        "finish_reason": message.finish_reason,
        "crisis": message.crisis,
        "mode": message.mode,
        "personas": list(message.personas),
        "quick_replies": list(message.quick_replies),
    }


def list_conversations(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")  # every authenticated call counts
    settings = call.app.settings
    limit = call.query_int("limit", settings.page_size, low=1, high=100)
    cursor = call.request.args.get("cursor") or None
    page = call.app.chat.list_conversations(user, limit=limit, cursor=cursor)
    return json_response(
        {
            "conversations": [conversation_json(c) for c in page.conversations],
            "next_cursor": page.next_cursor,
        }
    )


def get_conversation(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")  # every authenticated call counts
    conversation, messages = call.app.chat.conversation_messages(
        user, call.path_id("conversation_id")
    )
    return json_response(
        {**conversation_json(conversation), "messages": [message_json(m) for m in messages]}
    )


def delete_conversation(call: Call[App]) -> Response:
    user = call.user()
    call.app.quota.admit(user, "api")  # every authenticated call counts
    # Erases the conversation with its feedback, Idempotency-Key records and cached answers.
    call.app.chat.delete_conversation(user, call.path_id("conversation_id"))
    return Response(status=204, headers={"Cache-Control": "no-store"})


ROUTES = (
    route("GET", "/health", health),
    route("GET", "/ready", ready),
    route("POST", "/v1/chat", post_chat),
    route("GET", "/v1/conversations", list_conversations),
    route("GET", "/v1/conversations/{conversation_id}", get_conversation),
    route("DELETE", "/v1/conversations/{conversation_id}", delete_conversation),
    route(
        "POST",
        "/v1/conversations/{conversation_id}/messages/{message_id}/feedback",
        feedback_api.post_feedback,
    ),
    route("GET", "/v1/me/export", me_api.export_me),
    route("DELETE", "/v1/me", me_api.delete_me),
    route("GET", "/v1/me/profile", profile_api.get_profile),
    route("PUT", "/v1/me/profile", profile_api.put_profile),
    route(
        "POST", "/v1/me/profile/suggestions/{suggestion_id}/accept", profile_api.accept_suggestion
    ),
    route("DELETE", "/v1/me/profile/suggestions/{suggestion_id}", profile_api.dismiss_suggestion),
)


def handle(request: Request) -> Response:
    return dispatch(ROUTES, request, get_app)
