"""Restore drill, on SQLite and on the Firestore emulator: 1,000 conversations with messages,
feedback, routing statistics, an outbox entry and a catalog entry; export; wipe; restore;
prove every record identical (counts and per-record content hashes, plus reads through the
ports)."""

from __future__ import annotations

import hashlib
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.backup_format import Manifest, read_records, record_digest, verify_backup
from ion.domain.models import Conversation, Intent, Message, Pace, ResonanceKey, Tone, Usage
from ion.ports import BackupRecord, Feedback, OutboxEntry, StatsDelta
from tests.conftest import FIRESTORE_TEST_PROJECT, LearningBackend
from tests.support.backup import BACKUP_KEY
from tests.support.emulators import EmulatorProcess, http_status

CONVERSATIONS = 1000
T0 = datetime(2026, 3, 1, 9, 30, 0, 123456, tzinfo=UTC)
KEYS = [
    ResonanceKey(tone=tone, pace=pace, intent=Intent.INQUIRY)
    for tone in (Tone.ANXIOUS, Tone.CURIOUS, Tone.CALM)
    for pace in (Pace.BURST, Pace.FLOWING)
]
PERSONAS = ["lua", "elro", "riri", "nana"]


def _populate(backend: LearningBackend) -> None:
    store, learning = backend.store, backend.learning

    def one(i: int) -> None:
        cid = f"conv-{i:04d}"
        at = T0 + timedelta(seconds=i)
        key = KEYS[i % len(KEYS)]
        persona = PERSONAS[i % len(PERSONAS)]
        conversation = Conversation(
            id=cid,
            user_id=f"user-{i % 37}",
            created_at=at,
            updated_at=at,
            title=f"대화 {i} — résumé ✓",
            current_persona=persona,
            message_count=2,
        )
        messages = [
            Message(
                id=f"u-{i}",
                conversation_id=cid,
                role="user",
                text=f"질문 {i}: how do I fix this? 🤔",
                created_at=at,
                resonance_key=key,
            ),
            Message(
                id=f"a-{i}",
                conversation_id=cid,
                role="assistant",
                text=f"Answer {i}\nwith two lines",
                created_at=at + timedelta(microseconds=7),
                persona=persona,
                resonance_key=key,
                model="offline",
                usage=Usage(input_tokens=i, output_tokens=2 * i),
                latency_ms=i % 50,
            ),
        ]
        store.save_turn(conversation, messages)
        if i % 4 == 0:
            learning.put_feedback(
                Feedback(
                    conversation_id=cid,
                    message_id=f"a-{i}",
                    user_id=conversation.user_id,
                    rating="up" if i % 3 else "down",
                    comment=None if i % 8 else f"코멘트 {i}",
                    persona=persona,
                    resonance_key=key,
                    created_at=at,
                    updated_at=at,
                )
            )
        if i % 5 == 0:
            delta = StatsDelta(persona=persona, resonance_key=key, turns=1, ups=i % 2)
            learning.apply_event_once(f"{i:032x}", [delta], processed_at=at)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(CONVERSATIONS)))
    store.add_outbox(
        OutboxEntry(
            id="e" * 32,
            event_type="chat.turn.completed",
            payload={"nested": [1, 2.5, {"x": None}], "text": "ünïcode"},
            created_at=T0,
            attempts=2,
            last_error="timeout",
        )
    )
    learning.put_backup(
        BackupRecord(
            id="20260301T000000Z",
            kind="logical",
            status="succeeded",
            started_at=T0,
            finished_at=T0 + timedelta(seconds=3),
            location="/backups/20260301T000000Z",
            collections=["conversations"],
        )
    )


def _digests(directory: Path, manifest: Manifest) -> dict[str, Counter[str]]:
    return {
        entry.collection: Counter(record_digest(r) for r in read_records(directory, entry))
        for entry in manifest.files
    }


def _whole(digests: dict[str, Counter[str]]) -> str:
    """One content hash over every record of every collection."""
    h = hashlib.sha256()
    for collection in sorted(digests):
        for digest in sorted(digests[collection].elements()):
            h.update(f"{collection}:{digest}\n".encode())
    return h.hexdigest()


def _port_view(backend: LearningBackend) -> dict[str, Any]:
    """What the application reads back through its ports, for a sample of records."""
    store, learning = backend.store, backend.learning
    sample = [f"conv-{i:04d}" for i in (0, 1, 4, 500, 996, 999)]
    return {
        "conversations": [store.get_conversation(c) for c in sample],
        "messages": [store.list_messages(c) for c in sample],
        "listing": store.list_conversations("user-5", limit=100).conversations,
        "feedback": [learning.get_feedback(c, f"a-{c[-4:].lstrip('0') or '0'}") for c in sample],
        "stats": learning.routing_stats(),
        "outbox": store.pending_outbox(10),
        "backups": learning.list_backups(),
        "dedupe": [learning.is_processed(f"{i:032x}") for i in (0, 5, 995, 1)],
    }


def _drill(
    backend: LearningBackend,
    tmp_path: Path,
    export: Any,
    wipe: Any,
    restore: Any,
    counts: Any,
) -> None:
    _populate(backend)
    before_view = _port_view(backend)
    first = export(tmp_path / "a")
    assert verify_backup(tmp_path / "a", key=BACKUP_KEY) == first
    assert first.counts["conversations"] == CONVERSATIONS
    messages = next(c for c in first.counts if c.endswith("messages"))
    assert first.counts[messages] == 2 * CONVERSATIONS
    assert first.counts["feedback"] == CONVERSATIONS // 4
    assert first.counts["processed_events"] == CONVERSATIONS // 5
    before = _digests(tmp_path / "a", first)

    wipe()
    assert sum(counts().values()) == 0

    restored = restore(tmp_path / "a")
    assert restored.counts == first.counts
    nonzero = {k: v for k, v in counts().items() if v}
    assert nonzero == {k: v for k, v in first.counts.items() if v}

    second = export(tmp_path / "b")
    after = _digests(tmp_path / "b", second)
    assert second.counts == first.counts
    assert after == before  # every record, byte for byte in canonical form
    assert _whole(after) == _whole(before)
    assert _port_view(backend) == before_view


def test_restore_drill_sqlite(sqlite_learning: LearningBackend, tmp_path: Path) -> None:
    from ion.adapters.sqlite.backup import (
        ensure_app_schema,
        export_sqlite,
        restore_sqlite,
        sqlite_row_counts,
    )

    path = sqlite_learning.store.path
    ensure_app_schema(path)  # every table the app has (quota too), as in production

    def wipe() -> None:
        from ion.adapters.sqlite.conversations import SqliteStore
        from ion.adapters.sqlite.records import SqliteLearningAndBackupStore

        sqlite_learning.store.close()
        sqlite_learning.learning.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)
        # A new, empty database with the app's schema, as after losing the disk.
        sqlite_learning.store = SqliteStore(path)
        sqlite_learning.store.ping()
        sqlite_learning.learning = SqliteLearningAndBackupStore(path)

    _drill(
        sqlite_learning,
        tmp_path,
        export=lambda d: export_sqlite(path, d, key=BACKUP_KEY),
        wipe=wipe,
        restore=lambda d: restore_sqlite(path, d, key=BACKUP_KEY),
        counts=lambda: sqlite_row_counts(path),
    )


@pytest.mark.emulator
def test_restore_drill_firestore(
    firestore_learning: LearningBackend, firestore_emulator: EmulatorProcess, tmp_path: Path
) -> None:
    from ion.adapters.firestore.backup import (
        export_firestore,
        firestore_document_counts,
        restore_firestore,
    )

    client = firestore_learning.learning.client

    def firestore_reset_now() -> None:
        # The emulator's "delete everything" endpoint: the fastest way to lose the data.
        url = firestore_emulator.url(
            f"/emulator/v1/projects/{FIRESTORE_TEST_PROJECT}/databases/(default)/documents"
        )
        assert http_status("DELETE", url, timeout_s=10.0) == 200

    _drill(
        firestore_learning,
        tmp_path,
        export=lambda d: export_firestore(client, d, key=BACKUP_KEY),
        wipe=lambda: firestore_reset_now(),
        restore=lambda d: restore_firestore(client, d, key=BACKUP_KEY),
        counts=lambda: firestore_document_counts(client),
    )


def test_restore_refuses_a_non_empty_store_unless_forced(
    sqlite_learning: LearningBackend, tmp_path: Path
) -> None:
    from ion.adapters.backup_format import StoreNotEmpty
    from ion.adapters.sqlite.backup import export_sqlite, restore_sqlite, sqlite_row_counts

    path = sqlite_learning.store.path
    conversation = Conversation(id="only", user_id="u", created_at=T0, updated_at=T0)
    sqlite_learning.store.save_turn(conversation, [])
    export_sqlite(path, tmp_path / "one", key=BACKUP_KEY)
    other = conversation.model_copy(update={"id": "other"})
    sqlite_learning.store.save_turn(other, [])
    with pytest.raises(StoreNotEmpty):
        restore_sqlite(path, tmp_path / "one", key=BACKUP_KEY)
    restore_sqlite(path, tmp_path / "one", key=BACKUP_KEY, force=True)
    assert sqlite_row_counts(path)["conversations"] == 1
    assert sqlite_learning.store.get_conversation("other") is None
