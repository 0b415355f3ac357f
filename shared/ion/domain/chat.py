"""Chat orchestration: load → analyse → route → prompt → LLM → persist → publish."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from ion import events
from ion.domain.personas import PersonaCatalog
from ion.domain.prompts import build_request
from ion.domain.routing import Router
from ion.errors import LlmError, NotFound
from ion.models import ChatReply, Conversation, Message, Persona, ResonanceKey, RoutingDecision
from ion.ports import (
    Clock,
    ConversationPage,
    ConversationStore,
    EventPublisher,
    LanguageModel,
    LlmChunk,
    LlmRequest,
    LlmResponse,
)

log = logging.getLogger(__name__)

TITLE_CHARS = 80


def new_id() -> str:
    return uuid.uuid4().hex


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


class ChatService:
    def __init__(
        self,
        *,
        store: ConversationStore,
        llm: LanguageModel,
        router: Router,
        catalog: PersonaCatalog,
        events: EventPublisher,
        clock: Clock,
        history_window: int = 12,
        max_output_tokens: int = 1024,
        id_factory: Callable[[], str] = new_id,
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
        if conversation_id is not None:
            conversation = self.owned_conversation(user_id, conversation_id)
            history = self._store.recent_messages(conversation_id, max(self._history_window, 1))
            is_new = False
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
        )

    def send(self, user_id: str, text: str, conversation_id: str | None = None) -> ChatReply:
        """Answer one learner message; on LLM failure the message is kept as unanswered."""
        turn = self.prepare(user_id, text, conversation_id)
        started = time.perf_counter()
        try:
            response = self._llm.generate(turn.request)
        except LlmError as exc:
            self._save_unanswered(turn, "blocked" if exc.code == "blocked" else "unanswered")
            raise
        return self._finish(turn, response, _elapsed_ms(started))

    def stream(self, turn: PreparedTurn) -> Iterator[LlmChunk]:
        """Stream the answer; the turn is persisted when the stream ends, however it ends.

        When the consumer stops early (client gone) the text generated so far is stored,
        marked `incomplete`, so nothing the learner may have seen is lost.
        """
        started = time.perf_counter()
        parts: list[str] = []
        finished = False
        try:
            for chunk in self._llm.stream(turn.request):
                if chunk.final is not None:
                    self._finish(turn, chunk.final, _elapsed_ms(started))
                    finished = True
                    yield chunk
                    return
                parts.append(chunk.text)
                yield chunk
        except LlmError as exc:
            finished = True
            if parts:
                self._save_partial(turn, "".join(parts), _elapsed_ms(started))
            else:
                self._save_unanswered(turn, "blocked" if exc.code == "blocked" else "unanswered")
            raise
        finally:
            if not finished:
                if parts:
                    self._save_partial(turn, "".join(parts), _elapsed_ms(started))
                else:
                    self._save_unanswered(turn, "unanswered")

    # --- persistence -----------------------------------------------------------------

    def _advance(self, turn: PreparedTurn, added: int) -> Conversation:
        return turn.conversation.model_copy(
            update={
                "updated_at": self._clock.now(),
                "current_persona": turn.persona.id,
                "message_count": turn.conversation.message_count + added,
            }
        )

    def _save_unanswered(self, turn: PreparedTurn, status: str) -> None:
        user_message = turn.user_message.model_copy(update={"status": status})
        self._store.save_turn(self._advance(turn, 1), [user_message])

    def _save_partial(self, turn: PreparedTurn, text: str, latency_ms: int) -> None:
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=text,
            created_at=self._clock.now(),
            persona=turn.persona.id,
            model=self._llm.name,
            latency_ms=latency_ms,
            status="incomplete",
        )
        self._store.save_turn(self._advance(turn, 2), [turn.user_message, assistant])

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
        self._store.save_turn(self._advance(turn, 2), [turn.user_message, assistant])
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


def _elapsed_ms(started: float) -> int:
    return int((time.perf_counter() - started) * 1000)
