"""The `chat` function's HTTP API: chat and conversations."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from flask import Request, Response, stream_with_context
from pydantic import BaseModel, ConfigDict, StrictBool, StrictStr

from ion.domain.chat import PreparedTurn
from ion.errors import IonError, ValidationFailed
from ion.http.api import ID_PATTERN, Call, clean_text, dispatch, json_response, route
from ion.http.health import health, ready
from ion.models import ChatReply, Conversation, Message


class ChatBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    message: StrictStr
    conversation_id: StrictStr | None = None
    stream: StrictBool = False


def post_chat(call: Call) -> Response:
    user = call.user()
    body = call.json_body(ChatBody)
    text = clean_text(
        body.message, field_name="message", max_chars=call.app.settings.max_message_chars
    )
    if body.conversation_id is not None and not ID_PATTERN.match(body.conversation_id):
        raise ValidationFailed("conversation_id: must match ^[A-Za-z0-9_-]{1,64}$")
    chat = call.app.chat
    wants_stream = body.stream or "text/event-stream" in call.request.headers.get("Accept", "")
    if wants_stream:
        turn = chat.prepare(user, text, body.conversation_id)
        return _sse_response(call, turn)
    reply = chat.send(user, text, body.conversation_id)
    return json_response(reply_json(reply))


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
    }


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _sse_response(call: Call, turn: PreparedTurn) -> Response:
    chat = call.app.chat
    request_id = call.request_id

    def events() -> Iterator[str]:
        yield _sse(
            "meta",
            {
                "conversation_id": turn.conversation.id,
                "message_id": turn.assistant_message_id,
                "user_message_id": turn.user_message.id,
                "persona": {"id": turn.persona.id, "name": turn.persona.name},
                "routing": turn.routing.model_dump(mode="json"),
                "resonance_key": turn.resonance_key.model_dump(mode="json"),
                "request_id": request_id,
            },
        )
        try:
            for chunk in chat.stream(turn):
                if chunk.final is not None:
                    yield _sse(
                        "done",
                        {
                            "model": chunk.final.model,
                            "usage": chunk.final.usage.model_dump(mode="json"),
                            "finish_reason": chunk.final.finish_reason,
                            "cached": False,
                        },
                    )
                elif chunk.text:
                    yield _sse("delta", {"text": chunk.text})
        except IonError as exc:
            # Headers are gone already: the failure travels as an `error` event.
            yield _sse(
                "error",
                {"error": {"code": exc.code, "message": exc.message}, "request_id": request_id},
            )

    response = Response(stream_with_context(events()), mimetype="text/event-stream")
    response.headers["Cache-Control"] = "no-store"
    response.headers["X-Accel-Buffering"] = "no"
    return response


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
    }


def list_conversations(call: Call) -> Response:
    user = call.user()
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


def get_conversation(call: Call) -> Response:
    user = call.user()
    conversation, messages = call.app.chat.conversation_messages(
        user, call.path_id("conversation_id")
    )
    return json_response(
        {**conversation_json(conversation), "messages": [message_json(m) for m in messages]}
    )


def delete_conversation(call: Call) -> Response:
    user = call.user()
    call.app.chat.delete_conversation(user, call.path_id("conversation_id"))
    return Response(status=204, headers={"Cache-Control": "no-store"})


ROUTES = (
    route("GET", "/health", health),
    route("GET", "/ready", ready),
    route("POST", "/v1/chat", post_chat),
    route("GET", "/v1/conversations", list_conversations),
    route("GET", "/v1/conversations/{conversation_id}", get_conversation),
    route("DELETE", "/v1/conversations/{conversation_id}", delete_conversation),
)


def handle(request: Request) -> Response:
    return dispatch(ROUTES, request)
