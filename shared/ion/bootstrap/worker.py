"""The `Worker` of the Pub/Sub-triggered functions (persona_events, backup) and the
scheduled backup it runs: storage only, no LLM, secrets or token verification."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ion.adapters.backend import StorageBackend
from ion.adapters.backup_format import LogicalExportTarget
from ion.adapters.clock import SystemClock
from ion.adapters.secrets import resolve_backup_key
from ion.bootstrap.backends import build_secrets, require_extra, storage_backend
from ion.errors import ConfigurationError
from ion.ports import BackupTarget, Clock, LearningAndBackupStore
from ion.services.backup import BackupRunner
from ion.settings import Settings


@dataclass
class Worker:
    """What the Pub/Sub-triggered functions (persona_events, backup) need: storage only.

    Built without the LLM, secrets or token verification, so those functions start fast
    and need no JWT secret or model configuration.
    """

    settings: Settings
    backend: StorageBackend
    clock: Clock

    @property
    def records(self) -> LearningAndBackupStore:
        return self.backend.records


def build_worker(settings: Settings | None = None) -> Worker:
    settings = settings or Settings()
    return Worker(settings, storage_backend(settings), SystemClock())


# Which backend makes each native backup (ION_BACKUP_MODE); "logical" works on both.
NATIVE_BACKUP_BACKENDS = {"firestore-export": "gcp", "sqlite-snapshot": "embedded"}


def build_backup_runner(worker: Worker) -> BackupRunner:
    """The scheduled backup (the `backup` function, `ion backup run`), per ION_BACKUP_MODE."""
    settings, backend = worker.settings, worker.backend
    mode: str = settings.backup_mode
    if mode == "auto":
        mode = backend.native_backup_mode
    target: BackupTarget
    if mode == "logical":
        key = resolve_backup_key(settings, build_secrets(settings))
        target = LogicalExportTarget(
            backup_directory(settings),
            lambda directory: backend.export(directory, key),
            settings.backup_retention_days,
        )
    else:
        if mode == "firestore-export":
            require_extra(
                "google.cloud.firestore_admin_v1", "gcp", "ION_BACKUP_MODE=firestore-export"
            )
        if mode != backend.native_backup_mode:
            raise ConfigurationError(
                f"ION_BACKUP_MODE={mode} needs ION_BACKEND={NATIVE_BACKUP_BACKENDS[mode]}"
            )
        target = backend.native_backup_target(backup_directory(settings))
    return BackupRunner(
        target=target,
        catalog=worker.records,
        dedupe=worker.records,
        clock=worker.clock,
        retention_days=settings.backup_retention_days,
    )


def backup_directory(settings: Settings) -> Path:
    return (settings.backup_dir or settings.data_dir / "backups").expanduser().resolve()


def backup_key(settings: Settings) -> bytes:
    """The key that signs and checks logical backups (`ion backup export|restore|verify`)."""
    return resolve_backup_key(settings, build_secrets(settings))
