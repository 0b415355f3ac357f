"""The learner's own data: everything stored about them, exported as JSON or erased.

Erasure (`DELETE /v1/me`) removes, per conversation, what deleting it removes (messages,
its summary, feedback, Idempotency-Key replies, cached answers, routing disagreements
holding its text), then what is kept per user: the profile with its suggestions, any other
Idempotency-Key record (pending ones too), the rate-limit and token-budget counters, and
events still waiting in the outbox that name the user or one of their conversations.
Routing statistics and the operators' daily counters are aggregate counts with no user id
in them: nothing there identifies the learner, so nothing is erased (the answer says so).
Both operations are idempotent: a second erasure erases nothing and says so.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ion.domain import events
from ion.domain.models import Conversation, Message
from ion.ports import (
    ConversationStore,
    FeedbackStore,
    IdempotencyStore,
    MemoryStore,
    OutboxStore,
    ProfileStore,
)
from ion.services.chat import ChatService
from ion.services.quota import QuotaGuard

STATISTICS_NOTE = (
    "routing statistics (per persona and resonance key) and the operators' daily counters"
    " (per persona and day) are aggregate counts; they hold no user id, so nothing in them"
    " identifies you"
)
_PAGE = 100
_OUTBOX_SCAN = 5000


class LearnerDataService:
    def __init__(
        self,
        *,
        chat: ChatService,
        store: ConversationStore,
        memory: MemoryStore,
        feedback: FeedbackStore,
        profiles: ProfileStore,
        idempotency: IdempotencyStore,
        outbox: OutboxStore,
        quota: QuotaGuard,
    ) -> None:
        self._chat = chat
        self._store = store
        self._memory = memory
        self._feedback = feedback
        self._profiles = profiles
        self._idempotency = idempotency
        self._outbox = outbox
        self._quota = quota

    def _conversations(self, user_id: str) -> list[Conversation]:
        found: list[Conversation] = []
        cursor: str | None = None
        while True:
            page = self._store.list_conversations(user_id, limit=_PAGE, cursor=cursor)
            found.extend(page.conversations)
            if page.next_cursor is None:
                return found
            cursor = page.next_cursor

    def export(self, user_id: str) -> dict[str, Any]:
        """Everything stored about the user, as JSON-ready data."""
        record = self._profiles.get_learner(user_id)
        conversations = []
        for conversation in self._conversations(user_id):
            messages = self._store.list_messages(conversation.id)
            memory = self._memory.get_memory(conversation.id)
            conversations.append(
                {
                    "conversation_id": conversation.id,
                    "title": conversation.title,
                    "created_at": conversation.created_at.isoformat(),
                    "updated_at": conversation.updated_at.isoformat(),
                    "current_persona": conversation.current_persona,
                    "summary": memory.summary if memory is not None else None,
                    "messages": [self._message(conversation.id, m) for m in messages],
                }
            )
        return {
            "user_id": user_id,
            "profile": record.profile.model_dump(mode="json") if record else None,
            "profile_suggestions": [s.model_dump(mode="json") for s in record.suggestions]
            if record
            else [],
            "conversations": conversations,
        }

    def _message(self, conversation_id: str, message: Message) -> dict[str, Any]:
        data = message.model_dump(mode="json", exclude={"conversation_id", "routing"})
        if message.role == "assistant":
            rating = self._feedback.get_feedback(conversation_id, message.id)
            data["feedback"] = (
                {
                    "rating": rating.rating,
                    "comment": rating.comment,
                    "created_at": rating.created_at.isoformat(),
                    "updated_at": rating.updated_at.isoformat(),
                }
                if rating is not None
                else None
            )
        return data

    def erase(self, user_id: str) -> dict[str, Any]:
        """Erase everything stored about the user; how many of each kind went."""
        erased: Counter[str] = Counter()
        conversation_ids: set[str] = set()
        for conversation in self._conversations(user_id):
            conversation_ids.add(conversation.id)
            erased["conversations"] += 1
            erased.update(self._chat.delete_conversation(user_id, conversation.id))
        erased["idempotency_records"] += self._idempotency.delete_idempotency_for_user(user_id)
        erased["profile"] += int(self._profiles.delete_learner(user_id))
        erased["quota_counters"] += self._quota.forget(user_id)
        erased["pending_events"] += self._forget_events(user_id, conversation_ids)
        kinds = (
            "conversations",
            "messages",
            "feedback",
            "idempotency_records",
            "cached_answers",
            "routing_disagreements",
            "profile",
            "quota_counters",
            "pending_events",
        )
        return {"erased": {kind: erased[kind] for kind in kinds}, "statistics": STATISTICS_NOTE}

    def _forget_events(self, user_id: str, conversation_ids: set[str]) -> int:
        """Events waiting in the outbox that name the user or one of their conversations."""
        user_hash = events.hash_user_id(user_id)
        removed = 0
        for entry in self._outbox.pending_outbox(_OUTBOX_SCAN):
            data = entry.payload.get("data", entry.payload)
            named = {str(v) for v in _values(data)}
            if user_hash in named or user_id in named or named & conversation_ids:
                self._outbox.remove_outbox(entry.id)
                removed += 1
        return removed


def _values(data: Any) -> list[Any]:
    if isinstance(data, dict):
        return [v for value in data.values() for v in _values(value)]
    if isinstance(data, list):
        return [v for value in data for v in _values(value)]
    return [data]
