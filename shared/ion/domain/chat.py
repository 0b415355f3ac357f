"""Chat orchestration: load → analyse → route → prompt → (cache | LLM) → persist → publish.

Two behaviours worth knowing:
- **Retry completes an unanswered message.** When the LLM could not answer, the learner's
  message is stored `unanswered`. If the learner sends the same text again to the same
  conversation while that message is still the last one, the new turn answers THAT
  message (the answer is appended and the message flipped to `complete` in one atomic
  store write) instead of storing a duplicate.
- **First-turn response cache.** A turn with no prior history (a new conversation, or the
  retry of a conversation's only, unanswered message) may be answered from the
  ResponseCache: exact match on the normalised message + persona (and the language and
  resonance key that shape its prompt) + model + PROMPT_VERSION. A cached answer is
  stored as a normal assistant message (model = the model that produced it) with usage
  0/0, since no LLM call was made; replies and events say `cached: true`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
import unicodedata
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta

from ion import events
from ion.domain.personas import PersonaCatalog
from ion.domain.prompts import PROMPT_VERSION, build_request
from ion.domain.routing import MessageRouter
from ion.errors import LlmError, NotFound
from ion.models import (
    ChatReply,
    Conversation,
    Language,
    Message,
    MessageStatus,
    Persona,
    ResonanceKey,
    RoutingDecision,
    Usage,
)
from ion.ports import (
    CachedAnswer,
    Clock,
    ConversationPage,
    ConversationStore,
    EventPublisher,
    LanguageModel,
    LlmChunk,
    LlmRequest,
    LlmResponse,
    ResponseCache,
)

log = logging.getLogger(__name__)

TITLE_CHARS = 80


# Only answers that ended normally are worth replaying to someone else.
_CACHEABLE_FINISH = frozenset({"STOP"})


def new_id() -> str:
    return uuid.uuid4().hex


def normalise_for_cache(text: str) -> str:
    """NFC, casefold, whitespace runs collapsed to one space, stripped."""
    folded = unicodedata.normalize("NFC", unicodedata.normalize("NFC", text).casefold())
    return " ".join(folded.split())


def response_cache_key(
    *,
    message: str,
    persona_id: str,
    model: str,
    language: Language,
    resonance_key: ResonanceKey,
) -> str:
    """sha256 hex of everything that shapes a first-turn answer (see the module docstring)."""
    material = json.dumps(
        [
            PROMPT_VERSION,
            model,
            persona_id,
            language,
            resonance_key.as_string(),
            normalise_for_cache(message),
        ],
        ensure_ascii=False,
        separators=(",", ":"),
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class PreparedTurn:
    """Everything decided before the LLM is called (what a stream's `meta` event shows)."""

    user_id: str
    conversation: Conversation
    is_new: bool
    user_message: Message
    assistant_message_id: str
    persona: Persona
    routing: RoutingDecision
    resonance_key: ResonanceKey
    request: LlmRequest
    # The stored `unanswered` user message this turn answers (a retry), if any.
    retry_of: Message | None = None
    # Response cache: the key when this turn may use the cache, and the hit if any.
    cache_key: str | None = None
    cached: CachedAnswer | None = None


class ChatService:
    def __init__(
        self,
        *,
        store: ConversationStore,
        llm: LanguageModel,
        router: MessageRouter,
        catalog: PersonaCatalog,
        events: EventPublisher,
        clock: Clock,
        history_window: int = 12,
        max_output_tokens: int = 1024,
        id_factory: Callable[[], str] = new_id,
        cache: ResponseCache | None = None,
        cache_ttl_s: int = 0,
        model_id: str | None = None,
    ) -> None:
        self._store = store
        self._llm = llm
        self._router = router
        self._catalog = catalog
        self._events = events
        self._clock = clock
        self._history_window = history_window
        self._max_output_tokens = max_output_tokens
        self._new_id = id_factory
        self._cache = cache if cache_ttl_s > 0 else None
        self._cache_ttl_s = cache_ttl_s
        # The configured primary model: part of the cache key, and only its answers are
        # cached (a fallback model's answer is not replayed for the primary's key).
        self._model_id = model_id or llm.name

    # --- conversations -------------------------------------------------------------

    def owned_conversation(self, user_id: str, conversation_id: str) -> Conversation:
        """The conversation if it belongs to `user_id`; otherwise NotFound (never 403: no leak)."""
        conversation = self._store.get_conversation(conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFound(f"conversation {conversation_id} not found")
        return conversation

    def conversation_messages(
        self, user_id: str, conversation_id: str
    ) -> tuple[Conversation, list[Message]]:
        conversation = self.owned_conversation(user_id, conversation_id)
        return conversation, self._store.list_messages(conversation_id)

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        return self._store.list_conversations(user_id, limit=limit, cursor=cursor)

    def delete_conversation(self, user_id: str, conversation_id: str) -> None:
        self.owned_conversation(user_id, conversation_id)
        self._store.delete_conversation(conversation_id)

    # --- a chat turn -----------------------------------------------------------------

    def prepare(self, user_id: str, text: str, conversation_id: str | None = None) -> PreparedTurn:
        now = self._clock.now()
        retry_of: Message | None = None
        if conversation_id is not None:
            conversation = self.owned_conversation(user_id, conversation_id)
            history = self._store.recent_messages(conversation_id, max(self._history_window, 1))
            is_new = False
            last = history[-1] if history else None
            if (
                last is not None
                and last.role == "user"
                and last.status == "unanswered"
                and last.text == text
            ):
                retry_of = last
                history = history[:-1]
        else:
            conversation = Conversation(
                id=self._new_id(),
                user_id=user_id,
                created_at=now,
                updated_at=now,
                title=" ".join(text.split())[:TITLE_CHARS],
            )
            history = []
            is_new = True

        routed = self._router.route(
            text,
            history=[m.text for m in history if m.role == "user"],
            current_persona=conversation.current_persona,
        )
        persona = self._catalog.require(routed.decision.primary)
        key = routed.analysis.key
        if retry_of is not None:
            user_message = retry_of.model_copy(
                update={"persona": persona.id, "routing": routed.decision, "resonance_key": key}
            )
        else:
            user_message = Message(
                id=self._new_id(),
                conversation_id=conversation.id,
                role="user",
                text=text,
                created_at=now,
                persona=persona.id,
                routing=routed.decision,
                resonance_key=key,
            )
        request = build_request(
            persona=persona,
            language=routed.analysis.language,
            resonance_key=key,
            history=history,
            message=text,
            history_window=self._history_window,
            max_output_tokens=self._max_output_tokens,
        )
        cache_key: str | None = None
        cached: CachedAnswer | None = None
        first_turn = is_new or (retry_of is not None and conversation.message_count == 1)
        if self._cache is not None and first_turn:
            cache_key = response_cache_key(
                message=text,
                persona_id=persona.id,
                model=self._model_id,
                language=routed.analysis.language,
                resonance_key=key,
            )
            try:
                cached = self._cache.get_cached_answer(cache_key, now)
            except Exception:
                # The cache is an optimisation: when it fails, ask the model.
                log.exception("response cache lookup failed")
        return PreparedTurn(
            user_id=user_id,
            conversation=conversation,
            is_new=is_new,
            user_message=user_message,
            assistant_message_id=self._new_id(),
            persona=persona,
            routing=routed.decision,
            resonance_key=key,
            request=request,
            retry_of=retry_of,
            cache_key=cache_key,
            cached=cached,
        )

    def send(self, user_id: str, text: str, conversation_id: str | None = None) -> ChatReply:
        """Answer one learner message; on LLM failure the message is kept as unanswered."""
        return self.answer(self.prepare(user_id, text, conversation_id))

    def answer(self, turn: PreparedTurn) -> ChatReply:
        """Answer a prepared turn (from the cache or the LLM) and persist it."""
        started = time.perf_counter()
        if turn.cached is not None:
            return self._finish(turn, _cached_response(turn.cached), _elapsed_ms(started))
        try:
            response = self._llm.generate(turn.request)
        except LlmError as exc:
            self._save_unanswered(turn, "blocked" if exc.code == "blocked" else "unanswered")
            raise
        reply = self._finish(turn, response, _elapsed_ms(started))
        self._remember(turn, response)
        return reply

    def stream(
        self, turn: PreparedTurn, on_reply: Callable[[ChatReply], None] | None = None
    ) -> Iterator[LlmChunk]:
        """Stream the answer; the turn is persisted when the stream ends, however it ends.

        When the consumer stops early (client gone) the text generated so far is stored,
        marked `incomplete`, so nothing the learner may have seen is lost. `on_reply` is
        called with the stored reply before the final chunk is yielded.
        """
        started = time.perf_counter()
        parts: list[str] = []
        finished = False
        source: Iterator[LlmChunk]
        if turn.cached is not None:
            response = _cached_response(turn.cached)
            source = iter([LlmChunk(text=response.text), LlmChunk(final=response)])
        else:
            source = self._llm.stream(turn.request)
        try:
            for chunk in source:
                if chunk.final is not None:
                    reply = self._finish(turn, chunk.final, _elapsed_ms(started))
                    finished = True
                    if turn.cached is None:
                        self._remember(turn, chunk.final)
                    if on_reply is not None:
                        on_reply(reply)
                    yield chunk
                    return
                parts.append(chunk.text)
                yield chunk
        except LlmError as exc:
            finished = True
            if parts:
                model = getattr(exc, "model", None) or self._model_id
                self._save_partial(turn, "".join(parts), _elapsed_ms(started), model)
            else:
                self._save_unanswered(turn, "blocked" if exc.code == "blocked" else "unanswered")
            raise
        finally:
            if not finished:
                if parts:
                    self._save_partial(turn, "".join(parts), _elapsed_ms(started), self._model_id)
                else:
                    self._save_unanswered(turn, "unanswered")

    def _remember(self, turn: PreparedTurn, response: LlmResponse) -> None:
        """Cache a first-turn answer from the primary model that ended normally."""
        if (
            self._cache is None
            or turn.cache_key is None
            or response.model != self._model_id
            or (
                response.finish_reason is not None
                and response.finish_reason not in _CACHEABLE_FINISH
            )
            or not response.text.strip()
        ):
            return
        now = self._clock.now()
        entry = CachedAnswer(
            text=response.text,
            model=response.model,
            finish_reason=response.finish_reason,
            created_at=now,
            expires_at=now + timedelta(seconds=self._cache_ttl_s),
        )
        try:
            self._cache.put_cached_answer(turn.cache_key, entry)
        except Exception:
            log.exception("storing a response cache entry failed")

    # --- persistence -----------------------------------------------------------------

    def _advance(self, turn: PreparedTurn, added: int) -> Conversation:
        return turn.conversation.model_copy(
            update={
                "updated_at": self._clock.now(),
                "current_persona": turn.persona.id,
                "message_count": turn.conversation.message_count + added,
            }
        )

    def _save(
        self, turn: PreparedTurn, user_status: MessageStatus, assistant: Message | None
    ) -> None:
        """One atomic write: the user message (new, or updated for a retry) + the answer."""
        user_message = turn.user_message.model_copy(update={"status": user_status})
        appended = [assistant] if assistant is not None else []
        if turn.retry_of is None:
            self._store.save_turn(self._advance(turn, 1 + len(appended)), [user_message, *appended])
            return
        if not appended and user_status == turn.retry_of.status:
            return  # a retry that failed the same way: the message is already stored so
        self._store.save_turn(self._advance(turn, len(appended)), appended, updated=[user_message])

    def _save_unanswered(self, turn: PreparedTurn, status: MessageStatus) -> None:
        self._save(turn, status, None)

    def _save_partial(self, turn: PreparedTurn, text: str, latency_ms: int, model: str) -> None:
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=text,
            created_at=self._clock.now(),
            persona=turn.persona.id,
            model=model,
            latency_ms=latency_ms,
            status="incomplete",
        )
        self._save(turn, "complete", assistant)

    def _finish(self, turn: PreparedTurn, response: LlmResponse, latency_ms: int) -> ChatReply:
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=response.text,
            created_at=self._clock.now(),
            persona=turn.persona.id,
            routing=turn.routing,
            resonance_key=turn.resonance_key,
            model=response.model,
            usage=response.usage,
            latency_ms=latency_ms,
            finish_reason=response.finish_reason,
        )
        self._save(turn, "complete", assistant)
        reply = ChatReply(
            conversation_id=turn.conversation.id,
            message_id=assistant.id,
            user_message_id=turn.user_message.id,
            reply=response.text,
            persona=turn.persona,
            routing=turn.routing,
            resonance_key=turn.resonance_key,
            model=response.model,
            usage=response.usage,
            latency_ms=latency_ms,
            finish_reason=response.finish_reason,
            cached=turn.cached is not None,
        )
        self._publish_turn(turn, reply)
        return reply

    def _publish_turn(self, turn: PreparedTurn, reply: ChatReply) -> None:
        envelope = events.chat_turn_completed(
            conversation_id=reply.conversation_id,
            message_id=reply.message_id,
            user_id=turn.user_id,
            persona=reply.persona.id,
            resonance_key=reply.resonance_key,
            model=reply.model,
            usage=reply.usage,
            latency_ms=reply.latency_ms,
            cached=reply.cached,
            occurred_at=self._clock.now(),
        )
        try:
            self._events.publish(events.CHAT_TURN_COMPLETED, envelope)
        except Exception:
            # The reply is already stored; an event problem must never fail the learner's chat.
            log.exception("publishing %s failed", events.CHAT_TURN_COMPLETED)


def _cached_response(entry: CachedAnswer) -> LlmResponse:
    # No LLM call was made for this answer, so it consumed no tokens.
    return LlmResponse(
        text=entry.text, model=entry.model, usage=Usage(), finish_reason=entry.finish_reason
    )


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
