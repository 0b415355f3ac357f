"""The SQLite backend (ION_BACKEND=embedded): everything in one database file.

`backend(settings)` is the only thing `ion.bootstrap` imports from here.
"""

from __future__ import annotations

from pathlib import Path

from ion.adapters.backend import StorageBackend
from ion.adapters.backup_format import Manifest
from ion.adapters.outbox import InProcessTransport
from ion.adapters.sqlite.backup import SqliteSnapshotTarget, export_sqlite, restore_sqlite
from ion.adapters.sqlite.conversations import SqliteStore
from ion.adapters.sqlite.profiles import SqliteProfileStore
from ion.adapters.sqlite.quota import SqliteQuotaStore
from ion.adapters.sqlite.records import SqliteLearningAndBackupStore
from ion.services.store_access import SerialAccess
from ion.settings import Settings


def backend(settings: Settings) -> StorageBackend:
    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    store = SqliteStore(settings.data_dir / "ion.sqlite3")
    path = store.path

    def restore(directory: Path, key: bytes, force: bool) -> Manifest:
        store.close()  # the restore replaces the file under the store's connections
        return restore_sqlite(path, directory, key=key, force=force)

    return StorageBackend(
        name="embedded",
        conversations=store,
        # One set of connections per file: the quota and records stores share the store's.
        records=SqliteLearningAndBackupStore(
            store.database, dedupe_days=settings.event_dedupe_days
        ),
        quota=SqliteQuotaStore(store.database),
        profiles=SqliteProfileStore(store.database),
        # Local calls, one after another; a step's writes share one transaction.
        access=SerialAccess(store.database.together),
        open_event_transport=InProcessTransport,
        prepare_emulators=list,
        native_backup_mode="sqlite-snapshot",
        native_backup_target=lambda directory: SqliteSnapshotTarget(
            path, directory, settings.backup_retention_days
        ),
        export=lambda directory, key: export_sqlite(path, directory, key=key),
        restore=restore,
    )
