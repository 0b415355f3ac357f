"""A turn is computed from what it read and claimed only while its conversation is still
as read: when another turn changed it in between, the turn reads it again (over the real
SQLite store; a store wrapper makes the other turn's write land at that moment)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest

from ion.adapters.sqlite.conversations import SqliteStore
from ion.adapters.sqlite.quota import SqliteQuotaStore
from ion.domain.models import Message
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.errors import TurnInProgress
from ion.ports import TurnClaim
from ion.services.chat import ChatService
from ion.services.quota import QuotaGuard, QuotaLimits
from tests.fakes.clock import ManualClock
from tests.fakes.events import RecordingPublisher
from tests.fakes.llm import RecordingLlm


class InterruptedStore(SqliteStore):
    """Before each of the next `times` claims of a read turn, another turn of the same
    conversation is saved (as a turn on another instance finishing at that moment)."""

    times = 0

    def claim_turn(self, conversation_id: str, user_id: str, **kwargs: Any) -> TurnClaim:
        if kwargs.get("expected") is not None and self.times > 0:
            self.times -= 1
            current = self.get_conversation(conversation_id)
            assert current is not None
            seq = current.message_count
            other = [
                Message(
                    id=f"other-{seq + n}",
                    conversation_id=conversation_id,
                    role="user" if n == 0 else "assistant",
                    text=f"another instance's message {seq + n}",
                    created_at=current.updated_at + timedelta(seconds=n + 1),
                )
                for n in range(2)
            ]
            done = current.model_copy(
                update={"message_count": seq + 2, "updated_at": other[-1].created_at}
            )
            self.save_turn(done, other)
        return super().claim_turn(conversation_id, user_id, **kwargs)


def service_on(store: SqliteStore, llm: RecordingLlm, clock: ManualClock) -> ChatService:
    catalog = load_catalog()
    return ChatService(
        store=store,
        llm=llm,
        router=Router(catalog),
        catalog=catalog,
        events=RecordingPublisher(),
        clock=clock,
        history_window=12,
    )


def test_a_turn_changed_before_its_claim_is_read_again_and_follows_the_other(
    tmp_path: Any,
) -> None:
    store = InterruptedStore(tmp_path / "ion.sqlite3")
    llm, clock = RecordingLlm(), ManualClock(tick=timedelta(seconds=1))
    service = service_on(store, llm, clock)
    cid = service.send("alice", "what is a hash map?").conversation_id
    store.times = 1
    reply = service.send("alice", "and a set?", cid)
    # Computed from the history as claimed: the other instance's turn included.
    assert [t.text for t in llm.requests[-1].history][-2:] == [
        "another instance's message 2",
        "another instance's message 3",
    ]
    ids = [m.id for m in store.list_messages(cid)]
    assert ids[2:4] == ["other-2", "other-3"]
    assert ids[4:] == [reply.user_message_id, reply.message_id]
    store.close()


def test_a_conversation_that_keeps_changing_is_a_409_after_three_reads(tmp_path: Any) -> None:
    store = InterruptedStore(tmp_path / "ion.sqlite3")
    llm, clock = RecordingLlm(), ManualClock(tick=timedelta(seconds=1))
    service = service_on(store, llm, clock)
    budget = QuotaGuard(SqliteQuotaStore(store.database), clock, QuotaLimits(api_per_minute=50))
    cid = service.send("alice", "what is a hash map?").conversation_id
    store.times = 3
    with pytest.raises(TurnInProgress) as refused:
        service.prepare("alice", "and a set?", cid, budget=budget, buckets=("api",))
    assert refused.value.retry_after_s == 2
    assert len(llm.requests) == 1  # no model call for the refused turn
    assert store.times == 0
    # The refused request counted once on the API limit, and nothing holds the lease.
    (api_window,) = [
        key
        for (key,) in store.database.read("SELECT key FROM quota_counters")
        if key.startswith("rate:api:")
    ]
    assert budget.store.counter(api_window) == 1
    service.send("alice", "and a set?", cid)
    assert len(llm.requests) == 2
    store.close()
