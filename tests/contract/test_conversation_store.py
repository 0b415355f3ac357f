"""The storage contract, written once and run against every backend (`store` fixture).

Backend-specific checks (SQLite pragmas and multi-process use, Firestore layout and RPC
count) live in the sections at the end.
"""

from __future__ import annotations

import base64
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.store_rules import TurnConflict
from ion.domain.models import (
    Conversation,
    Intent,
    Message,
    Pace,
    ResonanceKey,
    RoutingDecision,
    Tone,
    Usage,
)
from ion.errors import BadRequest, DependencyUnavailable
from ion.ports import (
    CachedAnswer,
    ConversationStore,
    CounterChange,
    IdempotencyRecord,
    TurnClaim,
)

T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)


def conv(
    cid: str,
    *,
    user: str = "u1",
    count: int = 0,
    updated: datetime | None = None,
    title: str = "",
    persona: str | None = None,
) -> Conversation:
    return Conversation(
        id=cid,
        user_id=user,
        created_at=T0,
        updated_at=updated or T0,
        title=title,
        current_persona=persona,
        message_count=count,
    )


def msg(cid: str, n: int, *, text: str | None = None, mid: str | None = None) -> Message:
    return Message(
        id=mid or f"{cid}-m{n}",
        conversation_id=cid,
        role="user" if n % 2 == 0 else "assistant",
        text=f"message {n}" if text is None else text,
        created_at=T0 + timedelta(seconds=n),
    )


def save_history(store: Any, cid: str, total: int, *, per_turn: int = 2, user: str = "u1") -> None:
    """Save `total` messages in turns of `per_turn`, as the chat service would."""
    for start in range(0, total, per_turn):
        batch = [msg(cid, n) for n in range(start, min(start + per_turn, total))]
        store.save_turn(conv(cid, user=user, count=start + len(batch)), batch)


# --- the protocols ----------------------------------------------------------------------


def test_implements_the_ports(store: Any) -> None:
    assert isinstance(store, ConversationStore)
    # OutboxStore is not runtime-checkable: check its methods one by one.
    for name in ("add_outbox", "pending_outbox", "remove_outbox", "record_outbox_failure"):
        assert callable(getattr(store, name)), name
    store.ping()


# --- conversations and messages ---------------------------------------------------------


def test_missing_conversation(store: Any) -> None:
    assert store.get_conversation("nope") is None
    assert store.list_messages("nope") == []
    assert store.recent_messages("nope", 5) == []


def test_save_turn_creates_conversation_and_messages(store: Any) -> None:
    c = conv("c1", count=2, title="첫 대화", persona="sage")
    messages = [msg("c1", 0), msg("c1", 1)]
    store.save_turn(c, messages)

    assert store.get_conversation("c1") == c
    assert store.list_messages("c1") == messages


def test_second_turn_appends_and_updates_summary(store: Any) -> None:
    store.save_turn(conv("c1", count=2), [msg("c1", 0), msg("c1", 1)])
    later = conv("c1", count=4, updated=T0 + timedelta(minutes=5), persona="coach", title="t")
    store.save_turn(later, [msg("c1", 2), msg("c1", 3)])

    assert store.get_conversation("c1") == later
    assert [m.id for m in store.list_messages("c1")] == [f"c1-m{n}" for n in range(4)]


def test_summary_only_turn(store: Any) -> None:
    store.save_turn(conv("c1", count=1), [msg("c1", 0)])
    renamed = conv("c1", count=1, title="renamed", updated=T0 + timedelta(hours=1))
    store.save_turn(renamed, [])
    assert store.get_conversation("c1") == renamed
    assert len(store.list_messages("c1")) == 1


def test_recent_messages_order_and_limit(store: Any) -> None:
    save_history(store, "c1", 10)
    ids = [f"c1-m{n}" for n in range(10)]

    assert [m.id for m in store.recent_messages("c1", 3)] == ids[-3:]
    assert [m.id for m in store.recent_messages("c1", 1)] == ids[-1:]
    assert [m.id for m in store.recent_messages("c1", 100)] == ids
    assert store.recent_messages("c1", 0) == []
    assert [m.id for m in store.list_messages("c1")] == ids


def test_message_round_trip_all_fields(store: Any) -> None:
    routing = RoutingDecision(
        primary="sage",
        secondary="coach",
        confidence=0.8125,
        scores={"sage": 2.75, "coach": 1.5, "muse": 0.0},
        reason="keyword '불안' + tone anxious",
    )
    key = ResonanceKey(tone=Tone.ANXIOUS, pace=Pace.CONTEMPLATIVE, intent=Intent.SEEKING_ADVICE)
    text = '안녕하세요 👋🏽 مرحبا بالعالم שלום\u200f — «quotes» "json" \\ \n\ttabs\x00nul 𝔘𝔫𝔦'
    seoul = timezone(timedelta(hours=9))
    full = Message(
        id="m-full",
        conversation_id="c1",
        role="assistant",
        text=text,
        created_at=datetime(2026, 3, 1, 18, 30, 0, 654321, tzinfo=seoul),
        persona="sage",
        routing=routing,
        resonance_key=key,
        model="gemini-2.5-flash",
        usage=Usage(input_tokens=1234, output_tokens=56),
        latency_ms=987,
        finish_reason="STOP",
        status="incomplete",
    )
    bare = Message(
        id="m-bare",
        conversation_id="c1",
        role="user",
        text="",
        created_at=T0,
        status="unanswered",
    )
    blocked = bare.model_copy(update={"id": "m-blocked", "status": "blocked"})
    store.save_turn(conv("c1", count=3), [full, bare, blocked])

    stored = store.list_messages("c1")
    assert stored == [full, bare, blocked]
    # Read back as plain aware UTC datetimes (same instant as written).
    assert type(stored[0].created_at) is datetime
    assert stored[0].created_at.utcoffset() == timedelta(0)
    assert stored[0].created_at == full.created_at
    assert stored[0].routing == routing
    assert stored[0].resonance_key == key
    got = store.get_conversation("c1")
    assert type(got.updated_at) is datetime and got.updated_at.utcoffset() == timedelta(0)


def test_naive_datetimes_are_taken_as_utc(store: Any) -> None:
    naive = datetime(2026, 1, 2, 3, 4, 5, 6)
    c = Conversation(id="c1", user_id="u1", created_at=naive, updated_at=naive, message_count=1)
    m = Message(id="m", conversation_id="c1", role="user", text="x", created_at=naive)
    store.save_turn(c, [m])
    assert store.get_conversation("c1").created_at == naive.replace(tzinfo=UTC)
    assert store.list_messages("c1")[0].created_at == naive.replace(tzinfo=UTC)


def test_large_message(store: Any) -> None:
    big = ("가나다라마바사 ✨ long text " * 6000)[:110_000]  # > 100 KB of characters, ~200 KB UTF-8
    assert len(big.encode()) > 150_000
    store.save_turn(conv("c1", count=1), [msg("c1", 0, text=big)])
    assert store.list_messages("c1")[0].text == big


def test_many_messages_do_not_grow_one_document(store: Any) -> None:
    # 300 messages x 4 KB = 1.2 MB: more than a single Firestore document may hold.
    total, body = 300, "x" * 4000
    for start in range(0, total, 50):
        batch = [msg("c1", n, text=f"{n}:{body}") for n in range(start, start + 50)]
        store.save_turn(conv("c1", count=start + 50), batch)

    everything = store.list_messages("c1")
    assert [m.id for m in everything] == [f"c1-m{n}" for n in range(total)]
    assert store.get_conversation("c1").message_count == total
    assert [m.id for m in store.recent_messages("c1", 12)] == [
        f"c1-m{n}" for n in range(total - 12, total)
    ]


# --- listing a user's conversations -----------------------------------------------------


def _seed_conversations(store: Any) -> list[Conversation]:
    """25 conversations of u1 (some with identical updated_at), interleaved with u2's."""
    mine = []
    for i in range(25):
        # i // 2: pairs share updated_at, so the id tie-break is exercised across pages.
        c = conv(f"a{i:02d}", user="u1", count=1, updated=T0 + timedelta(seconds=i // 2))
        store.save_turn(c, [msg(c.id, 0)])
        mine.append(c)
        if i % 5 == 0:
            other = conv(f"b{i:02d}", user="u2", count=1, updated=T0 + timedelta(seconds=i))
            store.save_turn(other, [msg(other.id, 0)])
    return sorted(mine, key=lambda c: (c.updated_at, c.id), reverse=True)


def test_pagination_newest_first_without_gaps_or_dupes(store: Any) -> None:
    expected = _seed_conversations(store)

    seen: list[Conversation] = []
    cursor = None
    pages = 0
    while True:
        page = store.list_conversations("u1", limit=10, cursor=cursor)
        pages += 1
        assert len(page.conversations) <= 10
        seen += page.conversations
        cursor = page.next_cursor
        if cursor is None:
            break
        assert isinstance(cursor, str) and cursor
    assert pages == 3
    assert [c.id for c in seen] == [c.id for c in expected]
    assert seen == expected
    assert all(c.user_id == "u1" for c in seen)


def test_pagination_exact_fit_and_empty(store: Any) -> None:
    expected = _seed_conversations(store)
    page = store.list_conversations("u1", limit=25)
    assert page.conversations == expected and page.next_cursor is None
    first = store.list_conversations("u1", limit=24)
    assert first.next_cursor is not None
    last = store.list_conversations("u1", limit=24, cursor=first.next_cursor)
    assert last.conversations == expected[24:] and last.next_cursor is None
    assert store.list_conversations("nobody", limit=10).conversations == []
    assert [c.user_id for c in store.list_conversations("u2", limit=10).conversations] == ["u2"] * 5


def test_a_new_turn_moves_the_conversation_to_the_front(store: Any) -> None:
    _seed_conversations(store)
    bumped = conv("a00", user="u1", count=2, updated=T0 + timedelta(days=1))
    store.save_turn(bumped, [msg("a00", 1)])
    assert store.list_conversations("u1", limit=1).conversations == [bumped]


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!!",
        "",
        base64.urlsafe_b64encode(b"not json").decode(),
        base64.urlsafe_b64encode(b'{"a": 1}').decode(),
        base64.urlsafe_b64encode(json.dumps(["not a date", "a01"]).encode()).decode(),
        base64.urlsafe_b64encode(json.dumps(["2026-01-01T00:00:00", "a01"]).encode()).decode(),
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        base64.urlsafe_b64encode(json.dumps([T0.isoformat(), "x/y"]).encode()).decode(),
    ],
)
def test_invalid_cursor_is_a_bad_request(store: Any, cursor: str) -> None:
    with pytest.raises(BadRequest) as info:
        store.list_conversations("u1", limit=10, cursor=cursor)
    assert info.value.code == "bad_request"
    assert "cursor" in info.value.message


# --- deleting ---------------------------------------------------------------------------


def test_delete_conversation_removes_messages(store: Any) -> None:
    save_history(store, "c1", 6)
    save_history(store, "c2", 2)

    assert store.delete_conversation("c1") is True
    assert store.get_conversation("c1") is None
    assert store.list_messages("c1") == []
    assert store.recent_messages("c1", 10) == []
    assert [c.id for c in store.list_conversations("u1", limit=10).conversations] == ["c2"]
    assert len(store.list_messages("c2")) == 2  # other conversations untouched
    assert store.delete_conversation("c1") is False
    assert store.delete_conversation("never-existed") is False


def test_a_deleted_conversation_id_can_start_over(store: Any) -> None:
    save_history(store, "c1", 4)
    store.delete_conversation("c1")
    store.save_turn(conv("c1", count=2), [msg("c1", 10), msg("c1", 11)])
    assert [m.id for m in store.list_messages("c1")] == ["c1-m10", "c1-m11"]


# --- consistency of save_turn -----------------------------------------------------------


def test_concurrent_turn_on_the_same_seq_fails_instead_of_overwriting(store: Any) -> None:
    store.save_turn(conv("c1", count=2), [msg("c1", 0), msg("c1", 1)])
    # Two turns computed from the same message_count=2 snapshot.
    winner = conv("c1", count=4, title="A", updated=T0 + timedelta(minutes=1))
    loser = conv("c1", count=4, title="B", updated=T0 + timedelta(minutes=2))
    store.save_turn(winner, [msg("c1", 2, mid="a2"), msg("c1", 3, mid="a3")])

    with pytest.raises(TurnConflict) as info:
        store.save_turn(loser, [msg("c1", 2, mid="b2"), msg("c1", 3, mid="b3")])
    assert info.value.status == 409

    # Nothing of the losing turn landed, not even its summary (one atomic write).
    assert [m.id for m in store.list_messages("c1")] == ["c1-m0", "c1-m1", "a2", "a3"]
    assert store.get_conversation("c1") == winner


def test_partial_overlap_also_conflicts(store: Any) -> None:
    store.save_turn(conv("c1", count=3), [msg("c1", 0), msg("c1", 1), msg("c1", 2)])
    with pytest.raises(TurnConflict):
        store.save_turn(conv("c1", count=4), [msg("c1", 2, mid="x"), msg("c1", 3, mid="y")])
    assert [m.id for m in store.list_messages("c1")] == ["c1-m0", "c1-m1", "c1-m2"]
    assert store.get_conversation("c1").message_count == 3


def test_saving_the_same_turn_twice_is_idempotent(store: Any) -> None:
    turn = (conv("c1", count=2), [msg("c1", 0), msg("c1", 1)])
    store.save_turn(*turn)
    store.save_turn(*turn)  # e.g. a retried request whose first attempt did land
    assert store.list_messages("c1") == turn[1]


def test_racing_threads_exactly_one_turn_wins(store: Any) -> None:
    store.save_turn(conv("c1", count=1), [msg("c1", 0)])
    racers = 4
    barrier = threading.Barrier(racers)
    outcomes: dict[int, str] = {}

    def race(k: int) -> None:
        barrier.wait()
        try:
            store.save_turn(
                conv("c1", count=3, title=f"t{k}"),
                [
                    msg("c1", 1, mid=f"r{k}-1"),
                    msg("c1", 2, mid=f"r{k}-2"),
                ],
            )
            outcomes[k] = "ok"
        except TurnConflict:
            outcomes[k] = "conflict"

    threads = [threading.Thread(target=race, args=(k,)) for k in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes.values()) == ["conflict"] * (racers - 1) + ["ok"]
    (winner,) = [k for k, v in outcomes.items() if v == "ok"]
    assert [m.id for m in store.list_messages("c1")] == ["c1-m0", f"r{winner}-1", f"r{winner}-2"]
    assert store.get_conversation("c1").title == f"t{winner}"


def test_threads_writing_different_conversations(store: Any) -> None:
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            save_history(store, f"t{k}", 6)
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert errors == []
    page = store.list_conversations("u1", limit=100)
    assert sorted(c.id for c in page.conversations) == [f"t{k}" for k in range(8)]
    assert all(len(store.list_messages(f"t{k}")) == 6 for k in range(8))


@pytest.mark.parametrize(
    ("count", "messages", "needle"),
    [
        (1, [msg("c1", 0), msg("c1", 1)], "message_count"),
        (2, [msg("c1", 0), msg("other", 1)], "belongs to conversation"),
    ],
)
def test_inconsistent_turn_is_rejected(
    store: Any, count: int, messages: Sequence[Message], needle: str
) -> None:
    with pytest.raises(ValueError, match=needle):
        store.save_turn(conv("c1", count=count), messages)
    assert store.get_conversation("c1") is None


@pytest.mark.parametrize("bad_id", ["", "a/b", "c1/messages/00000000", ".", "..", "__x__"])
def test_ids_that_could_address_another_document(store: Any, bad_id: str) -> None:
    save_history(store, "c1", 2)
    assert store.get_conversation(bad_id) is None
    assert store.list_messages(bad_id) == []
    assert store.recent_messages(bad_id, 5) == []
    assert store.delete_conversation(bad_id) is False
    with pytest.raises(ValueError, match="valid conversation id"):
        store.save_turn(conv(bad_id, count=0), [])
    assert len(store.list_messages("c1")) == 2


def test_list_conversations_rejects_a_non_positive_limit(store: Any) -> None:
    with pytest.raises(ValueError):
        store.list_conversations("u1", limit=0)


# --- updating a kept message in the same write as the answer (a retried turn) ------------


def test_save_turn_updates_a_kept_message_atomically(store: Any) -> None:
    kept = msg("c1", 0).model_copy(update={"status": "unanswered"})
    store.save_turn(conv("c1", count=1), [kept])

    answered = kept.model_copy(update={"status": "complete", "persona": "elro"})
    answer = msg("c1", 1)
    later = conv("c1", count=2, updated=T0 + timedelta(minutes=1), persona="elro")
    store.save_turn(later, [answer], updated=[answered])

    assert store.list_messages("c1") == [answered, answer]
    assert store.get_conversation("c1") == later
    store.save_turn(later, [answer], updated=[answered])  # the same turn again: a no-op
    assert store.list_messages("c1") == [answered, answer]


def test_updating_a_missing_message_writes_nothing(store: Any) -> None:
    store.save_turn(conv("c1", count=1), [msg("c1", 0)])
    ghost = msg("c1", 7, mid="never-stored")
    with pytest.raises(ValueError, match="does not exist"):
        store.save_turn(conv("c1", count=2, title="changed"), [msg("c1", 1)], updated=[ghost])
    assert store.get_conversation("c1") == conv("c1", count=1)
    assert [m.id for m in store.list_messages("c1")] == ["c1-m0"]


def test_updated_messages_must_belong_to_the_conversation(store: Any) -> None:
    store.save_turn(conv("c1", count=1), [msg("c1", 0)])
    store.save_turn(conv("c2", count=1), [msg("c2", 0)])
    with pytest.raises(ValueError, match="belongs to conversation"):
        store.save_turn(conv("c1", count=1), [], updated=[msg("c2", 0)])
    assert store.list_messages("c2") == [msg("c2", 0)]


# --- the turn lease: one turn at a time per conversation ----------------------------------

LEASE_S = timedelta(minutes=2)


def test_claim_turn_returns_the_conversation_and_a_lease(store: Any) -> None:
    save_history(store, "c1", 2)
    got = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    assert got.conversation == conv("c1", count=2)
    assert got.lease and got.busy_until is None
    # Reading the conversation is unchanged by the lease.
    assert store.get_conversation("c1") == conv("c1", count=2)


def test_claim_turn_never_claims_a_missing_or_foreign_conversation(store: Any) -> None:
    save_history(store, "c1", 2, user="u1")
    assert store.claim_turn("nope", "u1", now=T0, until=T0 + LEASE_S) == TurnClaim()
    assert store.claim_turn("c1", "mallory", now=T0, until=T0 + LEASE_S) == TurnClaim()
    assert store.claim_turn("a/b", "u1", now=T0, until=T0 + LEASE_S) == TurnClaim()
    # The foreign attempt left the owner's conversation free.
    assert store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S).lease


def test_a_live_lease_refuses_other_claims_until_released(store: Any) -> None:
    save_history(store, "c1", 2)
    first = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    busy = store.claim_turn("c1", "u1", now=T0 + timedelta(seconds=5), until=T0 + 2 * LEASE_S)
    assert (busy.lease, busy.busy_until) == (None, T0 + LEASE_S)
    assert busy.conversation == conv("c1", count=2)
    store.release_turn("c1", first.lease)
    store.release_turn("c1", first.lease)  # idempotent
    again = store.claim_turn("c1", "u1", now=T0 + timedelta(seconds=6), until=T0 + LEASE_S)
    assert again.lease and again.lease != first.lease


def test_save_turn_with_the_lease_releases_it_in_the_same_write(store: Any) -> None:
    save_history(store, "c1", 2)
    held = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    turn = (conv("c1", count=4, title="next"), [msg("c1", 2), msg("c1", 3)])
    store.save_turn(*turn, lease=held.lease)
    store.save_turn(*turn, lease=held.lease)  # the same turn again (a retry): a no-op
    assert store.get_conversation("c1") == conv("c1", count=4, title="next")
    assert [m.id for m in store.list_messages("c1")] == [f"c1-m{n}" for n in range(4)]
    assert store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S).lease


def test_an_expired_lease_is_taken_over_and_its_holder_cannot_write(store: Any) -> None:
    """A crashed holder's lease frees itself; should the holder wake up, its turn is refused."""
    save_history(store, "c1", 2)
    crashed = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    later = T0 + LEASE_S + timedelta(seconds=1)
    taker = store.claim_turn("c1", "u1", now=later, until=later + LEASE_S)
    assert taker.lease and taker.lease != crashed.lease
    with pytest.raises(TurnConflict):
        store.save_turn(
            conv("c1", count=4, title="stale"), [msg("c1", 2), msg("c1", 3)], lease=crashed.lease
        )
    store.release_turn("c1", crashed.lease)  # not its lease any more: changes nothing
    assert store.claim_turn("c1", "u1", now=later, until=later + LEASE_S).lease is None
    store.save_turn(
        conv("c1", count=4, title="fresh"), [msg("c1", 2), msg("c1", 3)], lease=taker.lease
    )
    assert store.get_conversation("c1").title == "fresh"


def test_a_turn_on_a_conversation_deleted_meanwhile_is_refused(store: Any) -> None:
    save_history(store, "c1", 2)
    held = store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S)
    store.delete_conversation("c1")
    with pytest.raises(TurnConflict):
        store.save_turn(conv("c1", count=4), [msg("c1", 2), msg("c1", 3)], lease=held.lease)
    assert store.get_conversation("c1") is None
    assert store.list_messages("c1") == []
    store.release_turn("c1", held.lease)


def race_claims(racers: int, claim: Callable[[], TurnClaim]) -> list[TurnClaim]:
    """`claim()` from `racers` threads released at the same moment; every outcome."""
    barrier = threading.Barrier(racers)
    results: list[TurnClaim] = []
    lock = threading.Lock()

    def race() -> None:
        barrier.wait()
        got = claim()
        with lock:
            results.append(got)

    threads = [threading.Thread(target=race) for _ in range(racers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == racers
    return results


def test_racing_claims_exactly_one_wins(store: Any) -> None:
    save_history(store, "c1", 2)
    racers = 8
    results = race_claims(racers, lambda: store.claim_turn("c1", "u1", now=T0, until=T0 + LEASE_S))
    assert sum(1 for r in results if r.lease is not None) == 1
    assert sorted(str(r.busy_until) for r in results if r.lease is None) == [str(T0 + LEASE_S)] * (
        racers - 1
    )


# --- response cache ---------------------------------------------------------------------

KEY = "a" * 64  # a sha256 hex digest in real use


def cached(
    text: str = "answer",
    *,
    ttl_s: int = 60,
    at: datetime = T0,
    conversation_id: str | None = "c1",
) -> CachedAnswer:
    return CachedAnswer(
        text=text,
        model="gemini-2.5-flash",
        finish_reason="STOP",
        created_at=at,
        expires_at=at + timedelta(seconds=ttl_s),
        conversation_id=conversation_id,
    )


def test_cache_miss_then_hit(store: Any) -> None:
    assert store.get_cached_answer(KEY, T0) is None
    entry = cached("데코레이터는 함수를 감쌉니다 😀")
    store.put_cached_answer(KEY, entry)
    assert store.get_cached_answer(KEY, T0 + timedelta(seconds=59)) == entry
    assert store.get_cached_answer("b" * 64, T0) is None


def test_cache_entry_expires(store: Any) -> None:
    store.put_cached_answer(KEY, cached(ttl_s=60))
    assert store.get_cached_answer(KEY, T0 + timedelta(seconds=60)) is None
    assert store.get_cached_answer(KEY, T0 + timedelta(days=2)) is None


def test_cache_put_replaces(store: Any) -> None:
    store.put_cached_answer(KEY, cached("old"))
    fresh = cached("new", at=T0 + timedelta(seconds=30))
    store.put_cached_answer(KEY, fresh)
    assert store.get_cached_answer(KEY, T0 + timedelta(seconds=31)) == fresh


def test_cached_answers_are_erased_with_their_conversation(store: Any) -> None:
    store.put_cached_answer("1" * 64, cached("live", conversation_id="c1"))
    store.put_cached_answer("2" * 64, cached("expired", ttl_s=1, conversation_id="c1"))
    store.put_cached_answer("3" * 64, cached("other", conversation_id="c2"))
    assert store.delete_cached_answers_for_conversation("c1") == 2
    assert store.delete_cached_answers_for_conversation("c1") == 0  # idempotent
    assert store.get_cached_answer("1" * 64, T0) is None
    assert store.get_cached_answer("3" * 64, T0) == cached("other", conversation_id="c2")


# --- idempotency keys -------------------------------------------------------------------


def claim(
    user: str = "u1",
    key: str = "key-1",
    body: str = "h1",
    *,
    at: datetime = T0,
    ttl_s: int = 86_400,
    lease_s: int = 150,
) -> IdempotencyRecord:
    return IdempotencyRecord(
        user_id=user,
        key=key,
        request_hash=body,
        state="pending",
        created_at=at,
        expires_at=at + timedelta(seconds=ttl_s),
        locked_until=at + timedelta(seconds=lease_s),
    )


def test_idempotency_claim_complete_replay(store: Any) -> None:
    first = claim()
    assert store.claim_idempotency(first, T0) is None  # claimed
    again = store.claim_idempotency(claim(at=T0 + timedelta(seconds=1)), T0 + timedelta(seconds=1))
    assert again == first  # still pending: the caller answers 409

    store.complete_idempotency("u1", "key-1", '{"reply": "hi"}', conversation_id="c1")
    done = store.claim_idempotency(claim(body="h2"), T0 + timedelta(hours=1))
    assert done is not None
    assert (done.state, done.response, done.request_hash, done.conversation_id) == (
        "done",
        '{"reply": "hi"}',
        "h1",
        "c1",
    )
    store.release_idempotency("u1", "key-1")  # a completed key is never released
    assert store.claim_idempotency(claim(), T0 + timedelta(hours=2)) == done


def test_idempotency_release_lets_a_retry_claim_again(store: Any) -> None:
    assert store.claim_idempotency(claim(), T0) is None
    store.release_idempotency("u1", "key-1")
    store.release_idempotency("u1", "key-1")  # idempotent
    retry = claim(at=T0 + timedelta(seconds=5))
    assert store.claim_idempotency(retry, T0 + timedelta(seconds=5)) is None
    assert store.claim_idempotency(claim(), T0 + timedelta(seconds=6)) == retry


def test_idempotency_racing_claims_exactly_one_wins(store: Any) -> None:
    barrier = threading.Barrier(4)
    results: list[IdempotencyRecord | None] = []
    lock = threading.Lock()

    def worker(i: int) -> None:
        record = claim(body=f"h{i}", at=T0 + timedelta(microseconds=i))
        barrier.wait()
        outcome = store.claim_idempotency(record, T0)
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    winners = [r for r in results if r is None]
    assert len(results) == 4 and len(winners) == 1
    (holder,) = {r.request_hash for r in results if r is not None}  # all saw the same winner
    assert holder.startswith("h")


def test_idempotency_keys_are_per_user_and_verbatim(store: Any) -> None:
    odd = "a/b/../__x__?#%20~"
    assert store.claim_idempotency(claim(key=odd), T0) is None
    assert store.claim_idempotency(claim(user="u2", key=odd), T0) is None
    assert store.claim_idempotency(claim(key=odd.upper()), T0) is None
    assert store.claim_idempotency(claim(key=odd), T0) == claim(key=odd)


def test_idempotency_expired_or_abandoned_claims_are_free(store: Any) -> None:
    assert store.claim_idempotency(claim(ttl_s=3600), T0) is None
    store.complete_idempotency("u1", "key-1", "{}", conversation_id="c1")
    later = T0 + timedelta(seconds=3600)
    assert store.claim_idempotency(claim(at=later), later) is None  # the done one expired

    # A pending claim past its lease was abandoned (the server died mid-request).
    assert store.claim_idempotency(claim(key="k2", lease_s=10), T0) is None
    after_lease = T0 + timedelta(seconds=10)
    assert store.claim_idempotency(claim(key="k2", at=after_lease), after_lease) is None
    # No-op for an unknown key.
    store.complete_idempotency("nobody", "missing", "{}", conversation_id="c1")


def test_idempotency_records_are_erased_with_their_conversation(store: Any) -> None:
    for user, key, cid in [("u1", "k1", "c1"), ("u1", "k2", "c1"), ("u1", "k3", "c2")]:
        assert store.claim_idempotency(claim(user=user, key=key), T0) is None
        store.complete_idempotency(
            user, key, f'{{"conversation_id": "{cid}"}}', conversation_id=cid
        )
    assert store.claim_idempotency(claim(key="pending"), T0) is None  # no conversation yet
    assert store.delete_idempotency_for_conversation("c1") == 2
    assert store.delete_idempotency_for_conversation("c1") == 0
    later = T0 + timedelta(seconds=1)
    assert store.claim_idempotency(claim(key="k1", at=later), later) is None  # gone: claimable
    kept = store.claim_idempotency(claim(key="k3", at=later), later)
    assert kept is not None and kept.conversation_id == "c2"
    assert store.claim_idempotency(claim(key="pending", at=later), later) == claim(key="pending")


def test_idempotency_renewed_lease_keeps_the_claim(store: Any) -> None:
    assert store.claim_idempotency(claim(lease_s=20), T0) is None
    store.renew_idempotency("u1", "key-1", T0 + timedelta(seconds=40))  # owner alive
    at_30 = T0 + timedelta(seconds=30)
    assert store.claim_idempotency(claim(body="h2", at=at_30), at_30) == claim(
        lease_s=40
    )  # still held: past the first lease, within the renewed one
    at_40 = T0 + timedelta(seconds=40)
    assert store.claim_idempotency(claim(at=at_40), at_40) is None  # not renewed again: free
    store.complete_idempotency("u1", "key-1", "{}", conversation_id="c1")
    store.renew_idempotency("u1", "key-1", at_40)  # a done claim keeps no lease
    store.renew_idempotency("u1", "unknown", at_40)  # no-op


# =========================================================================================
# SQLite specifics
# =========================================================================================


def test_sqlite_pragmas_and_schema_version(sqlite_store: Any) -> None:
    from ion.adapters.sqlite.migrations import SCHEMA_VERSION

    sqlite_store.ping()
    conn = sqlite_store._connection()
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert conn.execute("PRAGMA foreign_keys").fetchone()[0] == 1
    assert conn.execute("PRAGMA busy_timeout").fetchone()[0] > 0
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 1
    assert conn.execute("PRAGMA secure_delete").fetchone()[0] == 1


def test_sqlite_migration_3_attributes_stored_replies_and_drops_shared_cache(
    tmp_path: Path,
) -> None:
    import sqlite3

    from ion.adapters.sqlite.conversations import SqliteStore
    from ion.adapters.sqlite.migrations import MIGRATIONS

    path = tmp_path / "v2.sqlite3"
    conn = sqlite3.connect(path, isolation_level=None)
    for migration in MIGRATIONS[:2]:
        for statement in migration:
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 2")
    conn.execute(
        "INSERT INTO response_cache VALUES ('k', 'answer', 'm', 'STOP', ?, ?)",
        (T0.isoformat(), (T0 + timedelta(hours=1)).isoformat()),
    )
    for key, response in [("done", '{"conversation_id": "c9"}'), ("pending", None)]:
        conn.execute(
            "INSERT INTO idempotency_keys VALUES ('u1', ?, 'h', ?, ?, ?, ?, ?)",
            (
                key,
                "pending" if response is None else "done",
                T0.isoformat(),
                (T0 + timedelta(days=1)).isoformat(),
                T0.isoformat(),
                response,
            ),
        )
    conn.close()
    store = SqliteStore(path)
    try:
        store.ping()
        assert store._connection().execute("SELECT count(*) FROM response_cache").fetchone() == (0,)
        assert store.delete_idempotency_for_conversation("c9") == 1
        rows = store._connection().execute("SELECT idem_key FROM idempotency_keys").fetchall()
        assert rows == [("pending",)]
    finally:
        store.close()


def test_sqlite_foreign_key_cascade(sqlite_store: Any) -> None:
    save_history(sqlite_store, "c1", 4)
    conn = sqlite_store._connection()
    conn.execute("DELETE FROM conversations WHERE id = 'c1'")
    assert conn.execute("SELECT count(*) FROM messages").fetchone()[0] == 0


def test_sqlite_two_instances_share_one_file(tmp_path: Path) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    a, b = SqliteStore(tmp_path / "db.sqlite3"), SqliteStore(tmp_path / "db.sqlite3")
    try:
        save_history(a, "c1", 2)
        assert [m.id for m in b.list_messages("c1")] == ["c1-m0", "c1-m1"]
        with pytest.raises(TurnConflict):
            b.save_turn(conv("c1", count=2), [msg("c1", 0, mid="x"), msg("c1", 1, mid="y")])
    finally:
        a.close()
        b.close()


_WRITER = """
import sys
from datetime import UTC, datetime
from pathlib import Path
from ion.adapters.sqlite.conversations import SqliteStore
from ion.domain.models import Conversation, Message

store, worker = SqliteStore(Path(sys.argv[1])), sys.argv[2]
now = datetime.now(UTC)
for i in range(20):
    cid = f"{worker}-{i}"
    store.save_turn(
        Conversation(id=cid, user_id="u1", created_at=now, updated_at=now, message_count=2),
        [Message(id=f"{cid}-{n}", conversation_id=cid, role="user", text="hi", created_at=now)
         for n in range(2)],
    )
"""


def test_sqlite_several_processes_on_one_file(tmp_path: Path) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    path = tmp_path / "shared.sqlite3"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), f"p{k}"], stderr=subprocess.PIPE
        )
        for k in range(3)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err.decode()
    store = SqliteStore(path)
    try:
        assert len(store.list_conversations("u1", limit=100).conversations) == 60
    finally:
        store.close()


def test_sqlite_unusable_path_is_dependency_unavailable(tmp_path: Path) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    store = SqliteStore(blocker / "ion.sqlite3")  # parent is a file: cannot be created
    with pytest.raises(DependencyUnavailable):
        store.ping()


def test_sqlite_corrupt_file_is_dependency_unavailable(tmp_path: Path) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    path = tmp_path / "ion.sqlite3"
    path.write_bytes(b"this is not a sqlite database" * 100)
    with pytest.raises(DependencyUnavailable):
        SqliteStore(path).ping()


# =========================================================================================
# Firestore specifics (emulator)
# =========================================================================================


@pytest.mark.emulator
def test_firestore_layout_one_document_per_message(firestore_store: Any) -> None:
    save_history(firestore_store, "c1", 3, per_turn=3)
    client = firestore_store.client
    summary = client.collection("conversations").document("c1").get().to_dict()
    assert set(summary) == {
        "user_id",
        "created_at",
        "updated_at",
        "title",
        "current_persona",
        "message_count",
    }
    ids = [d.id for d in client.collection("conversations/c1/messages").list_documents()]
    assert sorted(ids) == ["00000000", "00000001", "00000002"]
    first = client.document("conversations/c1/messages/00000000").get().to_dict()
    assert first["seq"] == 0 and first["id"] == "c1-m0"


@pytest.mark.emulator
def test_firestore_chat_turn_costs_four_rpcs(
    firestore_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    save_history(firestore_store, "c1", 4)
    api = firestore_store.client._firestore_api
    calls: list[str] = []
    for name in ("batch_get_documents", "run_query", "commit", "begin_transaction"):
        original = getattr(api, name)

        def counted(*args: Any, _name: str = name, _orig: Any = original, **kw: Any) -> Any:
            calls.append(_name)
            return _orig(*args, **kw)

        monkeypatch.setattr(api, name, counted)

    # What the chat service does for one turn on an existing conversation: read it, claim
    # it as read (charging the request's counters in the same commit), save the turn.
    snapshot = firestore_store.read_turn("c1", "u1", now=T0, history=12)
    assert snapshot.conversation is not None and len(snapshot.history) == 4
    held = firestore_store.claim_turn(
        "c1",
        "u1",
        now=T0,
        until=T0 + LEASE_S,
        expected=snapshot.version,
        counters=[CounterChange(key="rate:chat:u1", amount=1, expires_at=T0 + LEASE_S)],
    )
    assert held.counters == (1,)
    firestore_store.save_turn(
        snapshot.conversation.model_copy(update={"message_count": 6}),
        [msg("c1", 4), msg("c1", 5)],
        lease=held.lease,
    )
    assert calls == ["batch_get_documents", "run_query", "commit", "commit"]


@pytest.mark.emulator
def test_firestore_delete_in_several_batches(
    firestore_store: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ion.adapters.firestore.conversations as fs

    monkeypatch.setattr(fs, "BATCH_LIMIT", 7)
    save_history(firestore_store, "c1", 23, per_turn=23)
    save_history(firestore_store, "c2", 14, per_turn=14)  # a multiple of the batch size
    assert firestore_store.delete_conversation("c1") is True
    assert firestore_store.delete_conversation("c2") is True
    client = firestore_store.client
    assert list(client.collection("conversations/c1/messages").list_documents()) == []
    assert list(client.collection("conversations").list_documents()) == []


@pytest.mark.emulator
def test_firestore_unreachable_is_dependency_unavailable(
    firestore_emulator: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.adapters.firestore.conversations import FirestoreStore
    from tests.support.emulators import free_port

    monkeypatch.setenv("FIRESTORE_EMULATOR_HOST", f"127.0.0.1:{free_port()}")
    store = FirestoreStore.from_settings("ion-test", "(default)", timeout_s=1.0)
    with pytest.raises(DependencyUnavailable):
        store.ping()


@pytest.mark.emulator
def test_firestore_ttl_fields_for_cache_and_idempotency(firestore_store: Any) -> None:
    firestore_store.put_cached_answer(KEY, cached())
    firestore_store.claim_idempotency(claim(key="k/1"), T0)
    client = firestore_store.client
    entry = client.document(f"response_cache/{KEY}").get().to_dict()
    assert entry["expires_at"] == T0 + timedelta(seconds=60)
    (doc,) = list(client.collection("idempotency_keys").stream())
    assert len(doc.id) == 64 and doc.to_dict()["key"] == "k/1"
    assert doc.to_dict()["expires_at"] == T0 + timedelta(days=1)
