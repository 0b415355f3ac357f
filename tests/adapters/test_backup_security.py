"""Logical backups are private (0700/0600), signed (HMAC-SHA256) and restored only into the
schema the code defines; on SQLite and on the Firestore emulator."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import stat
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.backup_format import MANIFEST, BackupInvalid, verify_backup, write_manifest
from ion.domain.models import Conversation, Message
from ion.entrypoints.cli import main as cli
from tests.support.backup import BACKUP_KEY

T0 = datetime(2026, 3, 1, 9, 30, tzinfo=UTC)
TRIGGER = (
    "CREATE TRIGGER pwn AFTER INSERT ON messages BEGIN "
    "UPDATE messages SET text = 'pwned' WHERE rowid = NEW.rowid; END"
)


@pytest.fixture
def umask_022() -> Iterator[None]:
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def _populate(store: Any) -> None:
    for i in range(3):
        conversation = Conversation(
            id=f"c{i}", user_id="alice", created_at=T0, updated_at=T0, message_count=1
        )
        message = Message(
            id=f"m{i}", conversation_id=f"c{i}", role="user", text=f"hello {i}", created_at=T0
        )
        store.save_turn(conversation, [message])


def _modes(directory: Path) -> dict[str, str]:
    modes = {".": oct(stat.S_IMODE(directory.stat().st_mode))}
    modes.update({p.name: oct(stat.S_IMODE(p.stat().st_mode)) for p in directory.iterdir()})
    return modes


def _tamper(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    document = json.loads((directory / MANIFEST).read_text())
    change(document)
    (directory / MANIFEST).write_text(json.dumps(document))


def _resign(directory: Path, change: Callable[[dict[str, Any]], None]) -> None:
    """What only someone holding the key could do: change the manifest and sign it again."""
    document = json.loads((directory / MANIFEST).read_text())
    change(document)
    write_manifest(directory, document, key=BACKUP_KEY)


def _add_file(directory: Path, document: dict[str, Any], collection: str, line: bytes) -> None:
    name = f"{collection}.ndjson"
    (directory / name).write_bytes(line)
    entry = {
        "name": name,
        "collection": collection,
        "count": 1,
        "sha256": hashlib.sha256(line).hexdigest(),
    }
    document["files"].append(entry)


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> dict[str, Any]:
    """export(dir) and restore(dir, force) for a populated store of each backend."""
    if request.param == "sqlite":
        from ion.adapters.sqlite.backup import export_sqlite, restore_sqlite

        store = request.getfixturevalue("sqlite_store")
        _populate(store)
        store.close()
        path = store.path
        return {
            "name": "sqlite",
            "export": lambda d: export_sqlite(path, d, key=BACKUP_KEY),
            "restore": lambda d, key=BACKUP_KEY: restore_sqlite(
                tmp_path / "restored.sqlite3", d, key=key
            ),
        }
    from ion.adapters.firestore.backup import export_firestore, restore_firestore

    store = request.getfixturevalue("firestore_store")
    _populate(store)
    client = store.client
    return {
        "name": "firestore",
        "client": client,
        "export": lambda d: export_firestore(client, d, key=BACKUP_KEY),
        "restore": lambda d, key=BACKUP_KEY: restore_firestore(client, d, key=key, force=True),
    }


# --- private files ----------------------------------------------------------------------


def test_export_is_owner_only_whatever_the_umask(
    backend: dict[str, Any], tmp_path: Path, umask_022: None
) -> None:
    out = tmp_path / "export"
    backend["export"](out)
    modes = _modes(out)
    assert modes.pop(".") == "0o700"
    assert MANIFEST in modes and len(modes) >= 3
    assert set(modes.values()) == {"0o600"}


def test_scheduled_snapshots_and_logical_runs_are_owner_only(
    sqlite_store: Any, tmp_path: Path, umask_022: None
) -> None:
    from ion.adapters.backup_format import LogicalExportTarget
    from ion.adapters.sqlite.backup import SqliteSnapshotTarget, export_sqlite

    _populate(sqlite_store)
    snapshots = tmp_path / "snapshots"
    record = SqliteSnapshotTarget(sqlite_store.path, snapshots, 14).start("20260301T093000Z", T0)
    assert _modes(snapshots) == {".": "0o700", "20260301T093000Z.sqlite3": "0o600"}
    assert record.location == str(snapshots / "20260301T093000Z.sqlite3")

    logical = tmp_path / "logical"
    target = LogicalExportTarget(
        logical, lambda d: export_sqlite(sqlite_store.path, d, key=BACKUP_KEY), 14
    )
    target.start("20260301T093000Z", T0)
    assert _modes(logical) == {".": "0o700", "20260301T093000Z": "0o700"}
    assert set(_modes(logical / "20260301T093000Z").values()) == {"0o700", "0o600"}


def test_cli_export_refuses_a_non_empty_folder_and_uses_an_empty_one(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    monkeypatch.setenv("ION_BACKUP_HMAC_KEY", BACKUP_KEY.decode())
    data = str(clean_env / "data")
    store = SqliteStore(clean_env / "data" / "ion.sqlite3")
    _populate(store)
    store.close()
    busy = clean_env / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine")
    assert cli.main(["--data-dir", data, "backup", "export", str(busy)]) == 2
    err = capsys.readouterr().err
    assert err == f"ion: {busy} is not empty: export into a new or empty directory\n"
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]

    empty = clean_env / "empty"
    empty.mkdir(mode=0o755)
    assert cli.main(["--data-dir", data, "backup", "export", str(empty)]) == 0
    assert json.loads(capsys.readouterr().out)["directory"] == str(empty)
    assert _modes(empty)["."] == "0o700"
    assert verify_backup(empty, key=BACKUP_KEY).backend == "sqlite"


# --- signed manifests -------------------------------------------------------------------


def test_a_changed_unsigned_or_foreign_manifest_is_refused(
    backend: dict[str, Any], tmp_path: Path
) -> None:
    out = tmp_path / "export"
    backend["export"](out)
    assert verify_backup(out, key=BACKUP_KEY).backend == backend["name"]

    other_key = b"another-backup-key-" + b"o" * 32
    with pytest.raises(BackupInvalid, match="signed with another backup key"):
        verify_backup(out, key=other_key)
    with pytest.raises(BackupInvalid, match="signed with another backup key"):
        backend["restore"](out, other_key)

    _tamper(out, lambda doc: doc["meta"].update(schema=[{"type": "index", "sql": TRIGGER}]))
    with pytest.raises(BackupInvalid, match="signature mismatch"):
        verify_backup(out, key=BACKUP_KEY)
    with pytest.raises(BackupInvalid, match="signature mismatch"):
        backend["restore"](out)

    _tamper(out, lambda doc: doc.pop("hmac_sha256"))
    with pytest.raises(BackupInvalid, match="is not signed"):
        verify_backup(out, key=BACKUP_KEY)


def test_cli_verify_reports_a_tampered_manifest_in_one_line(
    clean_env: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    monkeypatch.setenv("ION_BACKUP_HMAC_KEY", BACKUP_KEY.decode())
    data = clean_env / "data"
    store = SqliteStore(data / "ion.sqlite3")
    _populate(store)
    store.close()
    out = clean_env / "export"
    assert cli.main(["--data-dir", str(data), "backup", "export", str(out)]) == 0
    capsys.readouterr()
    _tamper(out, lambda doc: doc["files"][0].update(count=99))
    assert cli.main(["--data-dir", str(data), "backup", "verify", str(out)]) == 2
    err = capsys.readouterr().err
    assert (
        err
        == f"ion: {out / MANIFEST}: signature mismatch: the manifest was changed after the export\n"
    )


# --- restore creates only the code's schema ----------------------------------------------


def test_restore_never_runs_sql_from_the_manifest(sqlite_store: Any, tmp_path: Path) -> None:
    from ion.adapters.sqlite.backup import export_sqlite, restore_sqlite
    from ion.adapters.sqlite.conversations import SqliteStore

    _populate(sqlite_store)
    out = tmp_path / "export"
    export_sqlite(sqlite_store.path, out, key=BACKUP_KEY)
    # Even a validly signed manifest carrying SQL (as older releases wrote, or as someone
    # holding the key could write) never has it executed.
    schema = [{"type": "index", "name": "pwn", "tbl_name": "messages", "sql": TRIGGER}]
    _resign(out, lambda doc: doc["meta"].update(schema=schema))
    target = tmp_path / "fresh" / "ion.sqlite3"
    restore_sqlite(target, out, key=BACKUP_KEY)

    conn = sqlite3.connect(target)
    try:
        triggers = conn.execute("SELECT name FROM sqlite_master WHERE type = 'trigger'")
        assert triggers.fetchall() == []
    finally:
        conn.close()
    restored = SqliteStore(target)
    try:
        assert [m.text for m in restored.list_messages("c1")] == ["hello 1"]
    finally:
        restored.close()


def test_restore_refuses_tables_and_columns_the_schema_lacks(
    sqlite_store: Any, tmp_path: Path
) -> None:
    from ion.adapters.sqlite.backup import export_sqlite, restore_sqlite

    _populate(sqlite_store)
    out = tmp_path / "export"
    export_sqlite(sqlite_store.path, out, key=BACKUP_KEY)
    _resign(out, lambda doc: _add_file(out, doc, "evil", b'{"x": 1}\n'))
    with pytest.raises(BackupInvalid, match="table 'evil' is not part of this release's schema"):
        restore_sqlite(tmp_path / "a" / "ion.sqlite3", out, key=BACKUP_KEY)

    second = tmp_path / "second"
    export_sqlite(sqlite_store.path, second, key=BACKUP_KEY)
    line = b'{"id": "x", "user_id": "u", "created_at": "t", "updated_at": "t", "evil": 1}\n'

    def add_row(doc: dict[str, Any]) -> None:
        entry = next(f for f in doc["files"] if f["collection"] == "conversations")
        content = (second / entry["name"]).read_bytes() + line
        (second / entry["name"]).write_bytes(content)
        entry.update(count=entry["count"] + 1, sha256=hashlib.sha256(content).hexdigest())

    _resign(second, add_row)
    with pytest.raises(BackupInvalid, match="no column 'evil'"):
        restore_sqlite(tmp_path / "b" / "ion.sqlite3", second, key=BACKUP_KEY)


@pytest.mark.emulator
def test_firestore_restore_keeps_records_in_their_collection(
    firestore_store: Any, tmp_path: Path
) -> None:
    from ion.adapters.firestore.backup import export_firestore, restore_firestore

    _populate(firestore_store)
    client = firestore_store.client
    out = tmp_path / "export"
    export_firestore(client, out, key=BACKUP_KEY)
    line = b'{"data": {"role": "admin"}, "path": "conversations/c0/messages/../../../admins/eve"}\n'

    def smuggle(doc: dict[str, Any]) -> None:
        entry = next(f for f in doc["files"] if f["collection"] == "conversations.messages")
        content = (out / entry["name"]).read_bytes() + line
        (out / entry["name"]).write_bytes(content)
        entry.update(count=entry["count"] + 1, sha256=hashlib.sha256(content).hexdigest())

    _resign(out, smuggle)
    with pytest.raises(BackupInvalid, match=r"which is not in 'conversations\.messages'"):
        restore_firestore(client, out, key=BACKUP_KEY, force=True)
    assert "admins" not in {c.id for c in client.collections()}
