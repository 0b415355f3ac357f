"""The typed bundle a storage backend gives the composition root.

`ion.adapters.sqlite.backend(settings)` and `ion.adapters.firestore.backend(settings)` each
return one; `ion.bootstrap` picks which one once and never asks again which backend it is.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ion.adapters.backup_format import Manifest
from ion.ports import (
    BackupTarget,
    ConversationDatabase,
    EventTransport,
    LearningAndBackupStore,
    ProfileStore,
    QuotaStore,
    StoreAccess,
)


@dataclass(frozen=True)
class StorageBackend:
    """One backend's stores, its event transport and its backup tools."""

    name: str  # "embedded" or "gcp": shown by /ready and the CLI
    conversations: ConversationDatabase
    # Feedback, routing statistics, dedupe marks, disagreements and the backup catalog.
    records: LearningAndBackupStore
    quota: QuotaStore
    # Learner profiles and the mentor's pending suggestions.
    profiles: ProfileStore
    # How a request uses these stores best: shared commits, calls made at once.
    access: StoreAccess
    # Built on demand: the workers (event consumers, backups) publish nothing.
    open_event_transport: Callable[[], EventTransport]
    # `ion serve` on a laptop: create what the emulators lack (what was done, for the log).
    prepare_emulators: Callable[[], list[str]]
    # The backup this backend makes natively (ION_BACKUP_MODE=auto): its mode and target,
    # given the directory local backups go to.
    native_backup_mode: str
    native_backup_target: Callable[[Path], BackupTarget]
    # The portable logical backup (`ion backup export|restore`), signed with a key.
    export: Callable[[Path, bytes], Manifest]
    restore: Callable[[Path, bytes, bool], Manifest]
