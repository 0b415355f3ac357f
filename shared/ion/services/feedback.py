"""Learners' feedback on assistant messages: validate, store, publish `feedback.recorded`."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from ion.domain import events
from ion.domain.models import Message, ResonanceKey
from ion.errors import NotFound
from ion.ports import Clock, ConversationStore, EventPublisher, Feedback, FeedbackStore, Rating

log = logging.getLogger(__name__)

MAX_COMMENT_CHARS = 1000


@dataclass(frozen=True)
class FeedbackResult:
    feedback: Feedback
    created: bool  # False when it replaced an earlier rating of the same message


class FeedbackService:
    def __init__(
        self,
        *,
        store: ConversationStore,
        feedback: FeedbackStore,
        events: EventPublisher,
        clock: Clock,
    ) -> None:
        self._store = store
        self._feedback = feedback
        self._events = events
        self._clock = clock

    def rate(
        self,
        user_id: str,
        conversation_id: str,
        message_id: str,
        rating: Rating,
        comment: str | None = None,
    ) -> FeedbackResult:
        """Record `rating` of an assistant message in the caller's conversation.

        NotFound (404) when the conversation is not the caller's, or the message is not an
        assistant message of it. Rating the same message again replaces the earlier rating
        (and comment); `feedback.recorded` is published only when the rating changed.
        """
        conversation = self._store.get_conversation(conversation_id)
        if conversation is None or conversation.user_id != user_id:
            raise NotFound(f"conversation {conversation_id} not found")
        messages = self._store.list_messages(conversation_id)
        index = next((i for i, m in enumerate(messages) if m.id == message_id), None)
        if index is None or messages[index].role != "assistant":
            raise NotFound(f"assistant message {message_id} not found in {conversation_id}")
        message = messages[index]
        key = _resonance_key(messages, index)
        now = self._clock.now()
        feedback = Feedback(
            conversation_id=conversation_id,
            message_id=message_id,
            user_id=user_id,
            rating=rating,
            comment=comment,
            persona=message.persona or conversation.current_persona or "",
            resonance_key=key,
            created_at=now,
            updated_at=now,
        )
        previous = self._feedback.put_feedback(feedback)
        if previous is not None:
            feedback = feedback.model_copy(update={"created_at": previous.created_at})
        if previous is None or previous.rating != rating:
            self._publish(feedback, None if previous is None else previous.rating)
        return FeedbackResult(feedback=feedback, created=previous is None)

    def _publish(self, feedback: Feedback, previous_rating: Rating | None) -> None:
        if feedback.resonance_key is None or not feedback.persona:
            log.warning(
                "feedback on %s has no persona/resonance key; no event", feedback.message_id
            )
            return
        envelope = events.feedback_recorded(
            conversation_id=feedback.conversation_id,
            message_id=feedback.message_id,
            user_id=feedback.user_id,
            persona=feedback.persona,
            resonance_key=feedback.resonance_key,
            rating=feedback.rating,
            previous_rating=previous_rating,
            occurred_at=feedback.updated_at,
        )
        try:
            self._events.publish(events.FEEDBACK_RECORDED, envelope)
        except Exception:
            # The feedback is stored; an event problem must not fail the learner's request.
            log.exception("publishing %s failed", events.FEEDBACK_RECORDED)


def _resonance_key(messages: list[Message], index: int) -> ResonanceKey | None:
    """The key of the learner message the answer replied to (a partial answer has none)."""
    own = messages[index].resonance_key
    if own is not None:
        return own
    for message in reversed(messages[:index]):
        if message.role == "user":
            return message.resonance_key
    return None
