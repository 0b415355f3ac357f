"""Recording a chat turn once it is answered: the atomic store write with the settlement of
its token reservation and its profile suggestions (made at once), then the
`chat.turn.completed` event, the first-turn cache entry and the conversation summary; on
SQLite all in one transaction (`StoreAccess`). A failed or cut-off answer is stored too
(`unanswered`, `incomplete`), so nothing the learner sent or saw is lost.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta

from ion.domain import events
from ion.domain.models import ChatReply, Conversation, LlmResponse, Message, MessageStatus
from ion.ports import (
    CachedAnswer,
    Clock,
    ConversationStore,
    EventPublisher,
    ResponseCache,
    StoreAccess,
)
from ion.services.memory import MemoryService
from ion.services.profile import ProfileService
from ion.services.response_cache import CACHEABLE_FINISH
from ion.services.store_access import each
from ion.services.turn_preparation import TICK, PreparedTurn

log = logging.getLogger(__name__)


class TurnRecorder:
    """Stores, caches and publishes answered turns (see the module docstring)."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        events: EventPublisher,
        clock: Clock,
        cache: ResponseCache | None,
        cache_ttl_s: int,
        model_id: str,
        memory: MemoryService | None,
        profiles: ProfileService | None,
        access: StoreAccess,
    ) -> None:
        self._store = store
        self._access = access
        self._events = events
        self._clock = clock
        # Only when the cache is on (ION_CACHE_TTL_S > 0).
        self._cache = cache
        self._cache_ttl_s = cache_ttl_s
        self._model_id = model_id
        self._memory = memory
        self._profiles = profiles

    def remember(self, turn: PreparedTurn, response: LlmResponse) -> None:
        """Cache a first-turn answer from the primary model that ended normally."""
        if (
            self._cache is None
            or turn.cache_key is None
            or response.model != self._model_id
            or (
                response.finish_reason is not None
                and response.finish_reason not in CACHEABLE_FINISH
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
            conversation_id=turn.conversation.id,
        )
        try:
            self._cache.put_cached_answer(turn.cache_key, entry)
        except Exception:
            log.exception("storing a response cache entry failed")

    def _after(self, turn: PreparedTurn) -> datetime:
        """Now, but never before the turn's user message (clocks of instances differ)."""
        return max(self._clock.now(), turn.user_message.created_at + TICK)

    def _advance(self, turn: PreparedTurn, added: int) -> Conversation:
        return turn.conversation.model_copy(
            update={
                "updated_at": self._after(turn),
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
        lease = turn.hold.lease
        if turn.retry_of is None:
            self._store.save_turn(
                self._advance(turn, 1 + len(appended)), [user_message, *appended], lease=lease
            )
        elif not appended and user_status == turn.retry_of.status:
            return  # a retry that failed the same way: the message is already stored so
        else:
            self._store.save_turn(
                self._advance(turn, len(appended)), appended, updated=[user_message], lease=lease
            )
        turn.hold.saved()

    def save_unanswered(self, turn: PreparedTurn, status: MessageStatus) -> None:
        """Keep the learner's message (`status`: no answer) and give the turn's token
        reservation back (no tokens were spent), at once; one transaction on SQLite."""
        with self._access.together():
            self._access.at_once(
                turn.hold.release_reservation, lambda: self._save(turn, status, None)
            )

    def save_partial(self, turn: PreparedTurn, text: str, latency_ms: int, model: str) -> None:
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=text,
            created_at=self._after(turn),
            persona=turn.persona.id,
            model=model,
            latency_ms=latency_ms,
            status="incomplete",
            mode=turn.plan.mode,
            personas=turn.plan.personas,
        )
        self._save(turn, "complete", assistant)

    def finish(
        self,
        turn: PreparedTurn,
        response: LlmResponse,
        latency_ms: int,
        *,
        cacheable: bool = False,
        on_reply: Callable[[ChatReply], None] | None = None,
    ) -> ChatReply:
        """Record an answered turn: its save, the settlement of its token reservation to
        `response.usage` (also when the save fails: the tokens were spent) and the profile
        suggestions its message supports, made at once; then its event; then its cache
        entry (`cacheable`: the model's answer to a first turn) and the caller's `on_reply`
        (an Idempotency-Key's reply), made at once, only once the turn is saved; then its
        summary. With SQLite all of that is one transaction."""
        assistant = Message(
            id=turn.assistant_message_id,
            conversation_id=turn.conversation.id,
            role="assistant",
            text=response.text,
            created_at=self._after(turn),
            persona=turn.persona.id,
            routing=turn.routing,
            resonance_key=turn.resonance_key,
            model=response.model,
            usage=response.usage,
            latency_ms=latency_ms,
            finish_reason=response.finish_reason,
            crisis=turn.crisis,
            mode=turn.plan.mode,
            personas=turn.plan.personas,
            quick_replies=turn.plan.quick_replies,
        )
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
            safety=turn.safety,
            mode=turn.plan.mode,
            personas=turn.plan.personas,
            quick_replies=turn.plan.quick_replies,
        )
        proposes = self._profiles is not None and not turn.crisis and turn.plan.mode != "clarify"
        with self._access.together():
            self._access.at_once(
                lambda: self._save(turn, "complete", assistant),
                lambda: turn.hold.settle(response.usage),
                lambda: self._propose(turn) if proposes else None,
            )
            self._publish_turn(turn, reply)
            each(
                self._access,
                [
                    *([lambda: self.remember(turn, response)] if cacheable else []),
                    *([lambda: on_reply(reply)] if on_reply is not None else []),
                ],
            )
            if self._memory is not None:
                added = 1 if turn.retry_of is not None else 2
                self._memory.after_turn(
                    turn.conversation.id,
                    turn.conversation.message_count + added,
                    turn.request.language,
                    turn.memory,
                )
        return reply

    def _propose(self, turn: PreparedTurn) -> None:
        if self._profiles is not None:
            self._profiles.propose(
                turn.user_id, turn.user_message.text, turn.conversation.id, turn.profile
            )

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
