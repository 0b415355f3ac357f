"""Scheduled backups (SQLite snapshots, Firestore managed exports against a fake Admin API),
retention, the backup function, and the `ion backup` commands."""

from __future__ import annotations

import base64
import json
import sqlite3
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.backup_format import verify_backup
from ion.adapters.firestore.backup import GoogleFirestoreAdmin, ManagedExportTarget
from ion.adapters.sqlite.backup import SqliteSnapshotTarget
from ion.bootstrap import set_worker
from ion.domain.backups import backup_id, backup_time, expired_names
from ion.domain.models import Conversation, Message
from ion.entrypoints.cli import main as cli
from ion.services.backup import BackupRunner
from tests.conftest import LearningBackend
from tests.fakes.clock import ManualClock
from tests.fakes.firestore_admin import FakeFirestoreAdmin
from tests.support.app import function_app
from tests.support.backup import BACKUP_KEY

T0 = datetime(2026, 3, 1, 9, 30, 0, tzinfo=UTC)


def _add_conversations(store: Any, n: int) -> None:
    for i in range(n):
        conversation = Conversation(
            id=f"c{i}", user_id="alice", created_at=T0, updated_at=T0, message_count=1
        )
        message = Message(
            id=f"m{i}", conversation_id=f"c{i}", role="user", text="hi", created_at=T0
        )
        store.save_turn(conversation, [message])


# --- naming and retention ---------------------------------------------------------------


def test_backup_names_and_retention_selection() -> None:
    assert backup_id(T0) == "20260301T093000Z"
    assert backup_time("20260301T093000Z.sqlite3") == T0
    assert backup_time("20260301T093000Z-2") == T0
    assert backup_time("notes.txt") is None
    names = ["20260214T000000Z.sqlite3", "20260215T100000Z", "20260301T000000Z", "keep.me"]
    assert expired_names(names, T0, 14) == ["20260214T000000Z.sqlite3"]


# --- SQLite snapshots -------------------------------------------------------------------


def test_sqlite_snapshot_run_catalog_retention_and_trigger_dedupe(
    sqlite_learning: LearningBackend, tmp_path: Path
) -> None:
    _add_conversations(sqlite_learning.store, 3)
    directory = tmp_path / "backups"
    directory.mkdir()
    (directory / "20260101T000000Z.sqlite3").write_bytes(b"old snapshot")
    (directory / "notes.txt").write_text("not a backup: never deleted")
    clock = ManualClock(T0)
    runner = BackupRunner(
        target=SqliteSnapshotTarget(sqlite_learning.store.path, directory, retention_days=14),
        catalog=sqlite_learning.learning,
        dedupe=sqlite_learning.learning,
        clock=clock,
        retention_days=14,
    )

    result = runner.run("msg-1")
    assert result.started is not None and result.started.status == "succeeded"
    snapshot = directory / "20260301T093000Z.sqlite3"
    assert result.started.location == str(snapshot)
    assert "conversations" in result.started.collections
    with sqlite3.connect(snapshot) as conn:
        assert conn.execute("SELECT COUNT(*) FROM conversations").fetchone() == (3,)
        assert conn.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    assert sorted(p.name for p in directory.iterdir()) == ["20260301T093000Z.sqlite3", "notes.txt"]
    assert result.pruned == [str(directory / "20260101T000000Z.sqlite3")]
    assert [r.id for r in sqlite_learning.learning.list_backups()] == ["20260301T093000Z"]

    # The same trigger delivered again starts nothing.
    assert runner.run("msg-1").skipped is True
    assert len(sqlite_learning.learning.list_backups()) == 1

    # 15 days later the first snapshot is deleted and its catalog entry marked expired.
    clock.current = T0 + timedelta(days=15)
    later = runner.run("msg-2")
    assert later.pruned == [str(snapshot)]
    statuses = {r.id: r.status for r in sqlite_learning.learning.list_backups()}
    assert statuses == {"20260301T093000Z": "expired", "20260316T093000Z": "succeeded"}


# --- Firestore managed exports (official client, fake Admin REST API) -------------------


@pytest.fixture
def fake_admin() -> Iterator[FakeFirestoreAdmin]:
    with FakeFirestoreAdmin() as fake:
        yield fake


def test_managed_export_is_started_then_recorded_when_done(
    sqlite_learning: LearningBackend, fake_admin: FakeFirestoreAdmin
) -> None:
    target = ManagedExportTarget(
        GoogleFirestoreAdmin.for_endpoint(fake_admin.endpoint),
        project="ion-prod",
        database="(default)",
        bucket="gs://ion-backups/",
        prefix="/firestore/",
        list_collections=lambda: ["conversations", "feedback"],
    )
    clock = ManualClock(T0)
    runner = BackupRunner(
        target=target,
        catalog=sqlite_learning.learning,
        dedupe=sqlite_learning.learning,
        clock=clock,
        retention_days=14,
    )
    first = runner.run("m1").started
    assert first is not None
    assert fake_admin.exports == [
        {
            "database": "projects/ion-prod/databases/(default)",
            "body": {"outputUriPrefix": "gs://ion-backups/firestore/20260301T093000Z"},
        }
    ]
    assert first.status == "running"
    assert first.location == "gs://ion-backups/firestore/20260301T093000Z"
    assert first.collections == ["conversations", "feedback"]
    assert first.operation == "projects/ion-prod/databases/(default)/operations/export-1"

    clock.advance(timedelta(days=1))
    second = runner.run("m2")  # export 1 still running: stays running
    assert second.refreshed == []
    fake_admin.finish(first.operation)
    assert second.started is not None and second.started.operation is not None
    fake_admin.finish(
        second.started.operation, error=(7, "The caller lacks storage.objects.create")
    )

    clock.advance(timedelta(days=1))
    third = runner.run("m3")
    assert {r.id: r.status for r in third.refreshed} == {
        "20260301T093000Z": "succeeded",
        "20260302T093000Z": "failed",
    }
    failed = next(r for r in third.refreshed if r.status == "failed")
    assert failed.error == "code 7: The caller lacks storage.objects.create"
    assert [r.id for r in sqlite_learning.learning.running_backups()] == ["20260303T093000Z"]


# --- the backup function (functions-framework, raw Pub/Sub push body) -------------------


def test_backup_function_takes_a_scheduler_push(
    monkeypatch: pytest.MonkeyPatch, clean_env: Path
) -> None:
    data_dir = clean_env / "data"
    monkeypatch.setenv("ION_DATA_DIR", str(data_dir))
    monkeypatch.setenv("ION_BACKUP_DIR", str(clean_env / "snapshots"))
    set_worker(None)
    try:
        app = function_app("backup", signature_type="cloudevent")
        push = {
            "message": {"data": base64.b64encode(b"{}").decode(), "messageId": "sched-1"},
            "subscription": "projects/p/subscriptions/ion-backup",
        }
        client = app.test_client()
        assert client.post("/", json=push).status_code == 200
        assert client.post("/", json=push).status_code == 200  # redelivered: skipped
    finally:
        set_worker(None)
    snapshots = [p.name for p in (clean_env / "snapshots").iterdir()]
    assert len(snapshots) == 1 and snapshots[0].endswith(".sqlite3")


# --- ion backup export / verify / restore (embedded) --------------------------------


def test_cli_export_verify_restore_refuses_non_empty(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    # One key for the source and the fresh data dir below (a generated key is per data dir).
    monkeypatch.setenv("ION_BACKUP_HMAC_KEY", BACKUP_KEY.decode())

    data = clean_env / "data"
    store = SqliteStore(data / "ion.sqlite3")
    _add_conversations(store, 5)
    store.close()
    out = clean_env / "export"
    assert cli.main(["--data-dir", str(data), "backup", "export", str(out)]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["conversations"] == 5 and counts["messages"] == 5
    assert cli.main(["backup", "verify", str(out)]) == 0
    capsys.readouterr()

    assert cli.main(["--data-dir", str(data), "backup", "restore", str(out)]) == 2
    assert "not empty" in capsys.readouterr().err
    assert cli.main(["--data-dir", str(data), "backup", "restore", str(out), "--force"]) == 0
    capsys.readouterr()

    fresh = clean_env / "fresh"
    assert cli.main(["--data-dir", str(fresh), "backup", "restore", str(out)]) == 0
    restored = SqliteStore(fresh / "ion.sqlite3")
    assert len(restored.list_messages("c3")) == 1
    restored.close()

    (out / "messages.ndjson").write_text('{"tampered": true}\n')
    assert cli.main(["backup", "verify", str(out)]) == 2
    assert "sha256 mismatch" in capsys.readouterr().err
    with pytest.raises(ValueError, match="damaged"):
        verify_backup(out, key=BACKUP_KEY)


def test_restore_into_a_fresh_data_dir_brings_back_every_store(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The restore creates the whole schema of the file (one migration list), so the tables
    of every store fit: learner profiles included, not only the conversation store's."""
    from ion.adapters.sqlite.conversations import SqliteStore
    from ion.adapters.sqlite.profiles import SqliteProfileStore
    from ion.domain.profile import LearnerProfile

    monkeypatch.setenv("ION_BACKUP_HMAC_KEY", BACKUP_KEY.decode())
    data = clean_env / "data"
    store = SqliteStore(data / "ion.sqlite3")
    _add_conversations(store, 2)
    profile = LearnerProfile(goals=["learn SQL"], notes="evenings only")
    SqliteProfileStore(store.database).put_profile(
        "alice", profile, updated_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    store.close()
    out = clean_env / "export"
    assert cli.main(["--data-dir", str(data), "backup", "export", str(out)]) == 0
    counts = json.loads(capsys.readouterr().out)["counts"]
    assert counts["learner_profiles"] == 1

    fresh = clean_env / "fresh"
    assert cli.main(["--data-dir", str(fresh), "backup", "restore", str(out)]) == 0
    restored = SqliteStore(fresh / "ion.sqlite3")
    record = SqliteProfileStore(restored.database).get_learner("alice")
    assert record is not None and record.profile == profile
    assert len(restored.list_messages("c1")) == 1
    restored.close()
