"""The Firestore backend (ION_BACKEND=gcp), with Pub/Sub for events.

`backend(settings)` is the only thing `ion.bootstrap` imports from here; it needs the
`gcp` extra (google-cloud-firestore, -pubsub), which bootstrap checks before importing.
"""

from __future__ import annotations

import os
from pathlib import Path

from ion.adapters.backend import StorageBackend
from ion.adapters.backup_format import Manifest
from ion.adapters.firestore.backup import (
    GoogleFirestoreAdmin,
    ManagedExportTarget,
    export_firestore,
    restore_firestore,
    root_collections,
)
from ion.adapters.firestore.conversations import FirestoreStore
from ion.adapters.firestore.profiles import FirestoreProfileStore
from ion.adapters.firestore.quota import FirestoreQuotaStore
from ion.adapters.firestore.records import FirestoreLearningAndBackupStore
from ion.adapters.pubsub import PubSubTransport
from ion.errors import ConfigurationError
from ion.ports import BackupTarget, EventTransport
from ion.services.store_access import ConcurrentAccess
from ion.settings import Settings

# During a Pub/Sub outage an event goes to the outbox quickly instead of holding the
# learner's reply.
PUBLISH_TIMEOUT_S = 2.0


def backend(settings: Settings) -> StorageBackend:
    project = settings.gcp_project
    if not project:
        raise ConfigurationError("ION_BACKEND=gcp needs ION_GCP_PROJECT")
    # Round trips: a request's independent calls are made at the same time.
    access = ConcurrentAccess()
    store = FirestoreStore.from_settings(
        project=project,
        database=settings.firestore_database,
        timeout_s=settings.store_timeout_s,
        access=access,
    )
    client = store.client

    def event_transport() -> EventTransport:
        return PubSubTransport(project, settings.events_topic, timeout_s=PUBLISH_TIMEOUT_S)

    def prepare_emulators() -> list[str]:
        # On a laptop against the Pub/Sub emulator nothing else creates the topic (in
        # production Terraform owns it).
        if not os.environ.get("PUBSUB_EMULATOR_HOST"):
            return []
        topic = PubSubTransport(project, settings.events_topic)
        if topic.ensure_topic():
            return [f"created topic {topic.topic_path} on the Pub/Sub emulator"]
        return []

    def managed_export(directory: Path) -> BackupTarget:
        return ManagedExportTarget(
            GoogleFirestoreAdmin(),
            project=project,
            database=settings.firestore_database,
            bucket=settings.backup_bucket or "",
            prefix=settings.backup_prefix,
            list_collections=lambda: root_collections(client),
        )

    def restore(directory: Path, key: bytes, force: bool) -> Manifest:
        return restore_firestore(client, directory, key=key, force=force)

    return StorageBackend(
        name="gcp",
        conversations=store,
        records=FirestoreLearningAndBackupStore(client, dedupe_days=settings.event_dedupe_days),
        quota=FirestoreQuotaStore(client),
        profiles=FirestoreProfileStore(client, timeout_s=settings.store_timeout_s),
        access=access,
        open_event_transport=event_transport,
        prepare_emulators=prepare_emulators,
        native_backup_mode="firestore-export",
        native_backup_target=managed_export,
        export=lambda directory, key: export_firestore(client, directory, key=key),
        restore=restore,
    )
