"""In-memory fakes of the ports, for domain tests (fakes, not mocks)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from ion.domain.models import Conversation, Message
from ion.ports import ConversationPage, TurnClaim


class InMemoryStore:
    def __init__(self) -> None:
        self.conversations: dict[str, Conversation] = {}
        self.messages: dict[str, list[Message]] = {}
        self.saves = 0
        self.leases: dict[str, str] = {}

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        return self.conversations.get(conversation_id)

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        return self.messages.get(conversation_id, [])[-limit:]

    def list_messages(self, conversation_id: str) -> list[Message]:
        return list(self.messages.get(conversation_id, []))

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        mine = sorted(
            (c for c in self.conversations.values() if c.user_id == user_id),
            key=lambda c: (c.updated_at, c.id),
            reverse=True,
        )
        start = int(cursor) if cursor else 0
        page = mine[start : start + limit]
        more = start + limit < len(mine)
        return ConversationPage(
            conversations=page, next_cursor=str(start + limit) if more else None
        )

    def save_turn(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        updated: Sequence[Message] = (),
        *,
        lease: str | None = None,
    ) -> None:
        assert not updated, "the in-memory fake does not update kept messages"
        if lease is not None:
            assert self.leases.pop(conversation.id, None) == lease, "turn saved without its lease"
        self.saves += 1
        self.conversations[conversation.id] = conversation
        self.messages.setdefault(conversation.id, []).extend(messages)
        assert len(self.messages[conversation.id]) == conversation.message_count

    def claim_turn(
        self, conversation_id: str, user_id: str, *, now: datetime, until: datetime
    ) -> TurnClaim:
        conversation = self.conversations.get(conversation_id)
        if conversation is None or conversation.user_id != user_id:
            return TurnClaim()
        if conversation_id in self.leases:
            return TurnClaim(conversation=conversation, busy_until=until)
        self.leases[conversation_id] = lease = f"lease-{len(self.leases)}-{now.isoformat()}"
        return TurnClaim(conversation=conversation, lease=lease)

    def release_turn(self, conversation_id: str, lease: str) -> None:
        if self.leases.get(conversation_id) == lease:
            del self.leases[conversation_id]

    def delete_conversation(self, conversation_id: str) -> bool:
        self.messages.pop(conversation_id, None)
        return self.conversations.pop(conversation_id, None) is not None

    def ping(self) -> None:
        return None


class TickingClock:
    """Each call is one second later: ordering in tests never depends on the wall clock."""

    def __init__(self, start: datetime | None = None) -> None:
        self.current = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        self.current += timedelta(seconds=1)
        return self.current


class RecordingPublisher:
    def __init__(self) -> None:
        self.events: list[tuple[str, dict[str, Any]]] = []

    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        self.events.append((event_type, payload))
