"""One contract for the learning ports (FeedbackStore, RoutingStatsStore, BackupCatalog),
run against SQLite and the Firestore emulator."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from typing import Any

from ion.domain.models import Conversation, Intent, Message, Pace, ResonanceKey, Tone
from ion.ports import BackupRecord, Feedback, StatsDelta
from tests.conftest import LearningBackend

T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
KEY = ResonanceKey(tone=Tone.ANXIOUS, pace=Pace.FLOWING, intent=Intent.EXPRESSIVE)
OTHER_KEY = ResonanceKey(tone=Tone.CURIOUS, pace=Pace.MEDIUM, intent=Intent.INQUIRY)


def _conversation(backend: LearningBackend, cid: str = "c1") -> None:
    conversation = Conversation(
        id=cid, user_id="alice", created_at=T0, updated_at=T0, message_count=2
    )
    backend.store.save_turn(
        conversation,
        [
            Message(id="u1", conversation_id=cid, role="user", text="hi", created_at=T0),
            Message(id="a1", conversation_id=cid, role="assistant", text="hello", created_at=T0),
        ],
    )


def _feedback(rating: str = "up", *, at: datetime = T0, comment: str | None = None) -> Feedback:
    return Feedback(
        conversation_id="c1",
        message_id="a1",
        user_id="alice",
        rating=rating,
        comment=comment,
        persona="lua",
        resonance_key=KEY,
        created_at=at,
        updated_at=at,
    )


def test_feedback_put_get_and_replace_keeps_created_at(learning_backend: LearningBackend) -> None:
    _conversation(learning_backend)
    store = learning_backend.learning
    assert store.get_feedback("c1", "a1") is None
    first = _feedback("up", comment="좋아요 👍")
    assert store.put_feedback(first) is None
    assert store.get_feedback("c1", "a1") == first

    later = T0 + timedelta(minutes=5)
    previous = store.put_feedback(_feedback("down", at=later))
    assert previous == first
    stored = store.get_feedback("c1", "a1")
    assert stored == _feedback("down", at=later).model_copy(update={"created_at": T0})


def test_feedback_deleted_with_conversation_helper(learning_backend: LearningBackend) -> None:
    _conversation(learning_backend)
    store = learning_backend.learning
    store.put_feedback(_feedback())
    assert store.delete_feedback_for_conversation("c1") == 1
    assert store.get_feedback("c1", "a1") is None
    assert store.delete_feedback_for_conversation("c1") == 0


def test_apply_event_once_counts_once(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    turn = [StatsDelta(persona="lua", resonance_key=KEY, turns=1)]
    assert store.apply_event_once("e" * 32, turn, processed_at=T0) is True
    assert store.apply_event_once("e" * 32, turn, processed_at=T0) is False
    assert store.apply_event_once("f" * 32, turn, processed_at=T0) is True
    vote = [StatsDelta(persona="lua", resonance_key=KEY, ups=-1, downs=1)]
    assert store.apply_event_once("a" * 32, vote, processed_at=T0) is True
    other = [StatsDelta(persona="elro", resonance_key=OTHER_KEY, ups=1)]
    assert store.apply_event_once("b" * 32, other, processed_at=T0) is True

    stats = {(s.persona, s.resonance_key): (s.turns, s.ups, s.downs) for s in store.routing_stats()}
    assert stats == {("lua", KEY): (2, -1, 1), ("elro", OTHER_KEY): (0, 1, 0)}
    assert store.is_processed("e" * 32) is True
    assert store.is_processed("c" * 32) is False


def test_apply_event_once_is_atomic_under_concurrency(learning_backend: LearningBackend) -> None:
    """Eight threads deliver the same five events: each is counted exactly once."""
    store = learning_backend.learning
    delta = [StatsDelta(persona="riri", resonance_key=KEY, turns=1)]
    applied: list[bool] = []
    lock = threading.Lock()

    def deliver() -> None:
        for n in range(5):
            result = store.apply_event_once(f"{n:032x}", delta, processed_at=T0)
            with lock:
                applied.append(result)

    threads = [threading.Thread(target=deliver) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert applied.count(True) == 5
    assert [s.turns for s in store.routing_stats()] == [5]


def test_mark_processed(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    assert store.mark_processed("backup-msg-1", processed_at=T0) is True
    assert store.mark_processed("backup-msg-1", processed_at=T0) is False
    assert store.is_processed("backup-msg-1") is True


def test_backup_catalog(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    older = BackupRecord(
        id="20260301T000000Z",
        kind="firestore-export",
        status="running",
        started_at=T0,
        location="gs://b/p/20260301T000000Z",
        collections=["conversations", "feedback"],
        operation="projects/p/databases/(default)/operations/abc",
        trigger_id="m1",
    )
    newer = BackupRecord(
        id="20260302T000000Z",
        kind="sqlite-snapshot",
        status="succeeded",
        started_at=T0 + timedelta(days=1),
        finished_at=T0 + timedelta(days=1, seconds=2),
        location="/backups/20260302T000000Z.sqlite3",
    )
    store.put_backup(older)
    store.put_backup(newer)
    assert store.list_backups() == [newer, older]
    assert store.list_backups(limit=1) == [newer]
    assert store.running_backups() == [older]
    done = older.model_copy(update={"status": "failed", "error": "PERMISSION_DENIED"})
    store.put_backup(done)
    assert store.running_backups() == []
    assert store.list_backups()[1] == done


# --- routing disagreements (the LLM routing judge's review queue) -----------------------


def _disagreement(n: int, *, at: datetime = T0, days: int = 30, **extra: object) -> Any:
    from ion.ports import RoutingDisagreement

    values: dict[str, object] = {
        "message_hash": f"{n:064x}",
        "message": f"메시지 {n} 🙂 with 'quotes'",
        "local_persona": "elro",
        "judge_persona": "lua",
        "judge_secondary": None,
        "confidence": 0.423,
        "main_need": f"need {n}",
        "created_at": at,
        "expires_at": at + timedelta(days=days),
    }
    values.update(extra)
    return RoutingDisagreement.model_validate(values)


def test_disagreements_round_trip_newest_first(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    assert store.list_disagreements(limit=10, now=T0) == []
    rows = [_disagreement(n, at=T0 + timedelta(minutes=n)) for n in range(3)]
    rows[1] = rows[1].model_copy(update={"judge_secondary": "nana"})
    for row in rows:
        store.put_disagreement(row)
    assert store.list_disagreements(limit=10, now=T0) == rows[::-1]
    assert store.list_disagreements(limit=2, now=T0) == rows[:0:-1]
    assert store.list_disagreements(limit=0, now=T0) == []


def test_disagreement_same_hash_replaces(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    store.put_disagreement(_disagreement(1))
    later = _disagreement(1, at=T0 + timedelta(hours=1), judge_persona="riri")
    store.put_disagreement(later)
    assert store.list_disagreements(limit=10, now=T0) == [later]


def test_disagreements_ties_break_by_hash_desc(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    for n in (5, 7, 6):
        store.put_disagreement(_disagreement(n))
    found = store.list_disagreements(limit=10, now=T0)
    assert [d.message_hash for d in found] == [f"{n:064x}" for n in (7, 6, 5)]


def test_expired_disagreements_are_not_listed(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    short = _disagreement(1, days=1)
    long = _disagreement(2, days=30)
    store.put_disagreement(short)
    store.put_disagreement(long)
    assert store.list_disagreements(limit=10, now=T0 + timedelta(hours=23)) == [long, short]
    assert store.list_disagreements(limit=10, now=T0 + timedelta(days=1)) == [long]


def test_disagreements_are_erased_by_their_text(learning_backend: LearningBackend) -> None:
    store = learning_backend.learning
    kept = _disagreement(1, message="how do I split the sprint tasks?")
    erased = [
        _disagreement(2, message="my secret worry about the capstone"),
        # The same text in another context (another hash) is a copy too.
        _disagreement(3, message="my secret worry about the capstone"),
        _disagreement(4, message="and the second one?"),
    ]
    for row in [kept, *erased]:
        store.put_disagreement(row)
    texts = ["my secret worry about the capstone", "and the second one?", "never judged"]
    assert store.delete_disagreements_for_texts(texts) == 3
    assert store.list_disagreements(limit=10, now=T0) == [kept]
    assert store.delete_disagreements_for_texts(texts) == 0
    assert store.delete_disagreements_for_texts([]) == 0
