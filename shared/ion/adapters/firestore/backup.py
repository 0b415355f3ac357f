"""Firestore backups: managed exports to Cloud Storage, and the logical NDJSON format.

The managed export goes through the `FirestoreAdmin` port; `GoogleFirestoreAdmin` is its
adapter over `google.cloud.firestore_admin_v1.FirestoreAdminClient` (imported lazily).

The logical export is generic: it enumerates the root collections (`client.collections()`)
and reads each one's whole subtree with one recursive query (so subcollections such as
conversations/*/messages come along without per-document listing calls). Each document is
written with its full path and its data in a tagged JSON encoding that round-trips every
Firestore type (timestamps with nanoseconds, bytes, references, geo points, vectors,
non-finite floats, maps whose keys start with `$`).
"""

from __future__ import annotations

import base64
import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from google.api_core.datetime_helpers import DatetimeWithNanoseconds
from google.cloud import firestore
from google.cloud.firestore_v1 import GeoPoint
from google.cloud.firestore_v1.vector import Vector

from ion.adapters.backup_format import (
    BackupInvalid,
    Manifest,
    StoreNotEmpty,
    read_records,
    verify_backup,
    write_backup,
)
from ion.adapters.firestore.records import BATCH_LIMIT
from ion.adapters.firestore.rpc import rpc_options, unavailable_errors
from ion.errors import ConfigurationError, DependencyUnavailable
from ion.ports import BackupKind, BackupRecord

log = logging.getLogger("ion.backup")

BACKEND = "firestore"

# --- managed export --------------------------------------------------------------------


@dataclass(frozen=True)
class OperationState:
    done: bool
    error: str | None = None


class FirestoreAdmin(Protocol):
    """The two Firestore Admin calls a scheduled backup needs."""

    def export_documents(
        self, *, database: str, output_uri_prefix: str, collection_ids: Sequence[str]
    ) -> str:
        """Start a managed export; the long-running operation's name."""
        ...

    def operation_state(self, name: str) -> OperationState: ...


class GoogleFirestoreAdmin:
    """`FirestoreAdmin` over the official client (gRPC with ADC by default)."""

    def __init__(self, client: Any | None = None, *, timeout_s: float = 30.0) -> None:
        self._client = client
        self._timeout_s = timeout_s

    @classmethod
    def for_endpoint(cls, endpoint: str) -> GoogleFirestoreAdmin:
        """REST transport to `endpoint` with anonymous credentials (fakes/tests only)."""
        from google.api_core.client_options import ClientOptions
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.firestore_admin_v1 import FirestoreAdminClient

        client = FirestoreAdminClient(
            transport="rest",
            client_options=ClientOptions(api_endpoint=endpoint),
            credentials=AnonymousCredentials(),  # type: ignore[no-untyped-call]
        )
        return cls(client)

    def _admin(self) -> Any:
        if self._client is None:
            from google.cloud.firestore_admin_v1 import FirestoreAdminClient

            self._client = FirestoreAdminClient()
        return self._client

    def export_documents(
        self, *, database: str, output_uri_prefix: str, collection_ids: Sequence[str]
    ) -> str:
        from google.cloud.firestore_admin_v1 import ExportDocumentsRequest

        request = ExportDocumentsRequest(
            name=database,
            collection_ids=list(collection_ids),
            output_uri_prefix=output_uri_prefix,
        )
        with unavailable_errors():
            operation = self._admin().export_documents(request=request, timeout=self._timeout_s)
        return str(operation.operation.name)

    def operation_state(self, name: str) -> OperationState:
        from google.longrunning import operations_pb2

        with unavailable_errors():
            operation = self._admin().get_operation(
                request=operations_pb2.GetOperationRequest(name=name), timeout=self._timeout_s
            )
        if not operation.done:
            return OperationState(done=False)
        if operation.HasField("error") and operation.error.code != 0:
            return OperationState(
                done=True, error=f"code {operation.error.code}: {operation.error.message}"
            )
        return OperationState(done=True)


class ManagedExportTarget:
    """The gcp backend's scheduled backup: a managed export of every collection to
    `gs://<bucket>/<prefix>/<UTC timestamp>`; a later run records how it ended.

    `collection_ids` is empty (= all collections and subcollections, including ones added
    later); the catalog lists the root collections that existed when the export started.
    """

    kind: BackupKind = "firestore-export"

    def __init__(
        self,
        admin: FirestoreAdmin,
        *,
        project: str,
        database: str,
        bucket: str,
        prefix: str,
        list_collections: Callable[[], list[str]],
    ) -> None:
        if not bucket:
            raise ConfigurationError("Firestore managed exports need ION_BACKUP_BUCKET")
        self._admin = admin
        self._database = f"projects/{project}/databases/{database}"
        bucket = bucket.removeprefix("gs://").strip("/")
        prefix = prefix.strip("/")
        self._base = f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"
        self._list_collections = list_collections

    @property
    def database(self) -> str:
        return self._database

    def output_uri(self, backup_id: str) -> str:
        return f"{self._base}/{backup_id}"

    def start(self, backup_id: str, started_at: datetime) -> BackupRecord:
        uri = self.output_uri(backup_id)
        collections = self._list_collections()
        operation = self._admin.export_documents(
            database=self._database, output_uri_prefix=uri, collection_ids=[]
        )
        return BackupRecord(
            id=backup_id,
            kind=self.kind,
            status="running",
            started_at=started_at,
            location=uri,
            collections=collections,
            operation=operation,
        )

    def refresh(self, record: BackupRecord, now: datetime) -> BackupRecord:
        if record.operation is None:
            return record.model_copy(
                update={"status": "failed", "finished_at": now, "error": "no operation recorded"}
            )
        state = self._admin.operation_state(record.operation)
        if not state.done:
            return record
        if state.error is not None:
            return record.model_copy(
                update={"status": "failed", "finished_at": now, "error": state.error}
            )
        return record.model_copy(update={"status": "succeeded", "finished_at": now})

    def prune(self, now: datetime) -> list[str]:
        return []  # the bucket's lifecycle rule deletes old exports


def root_collections(client: firestore.Client, timeout_s: float = 30.0) -> list[str]:
    with unavailable_errors():
        return sorted(c.id for c in client.collections(timeout=timeout_s))


# --- value encoding --------------------------------------------------------------------

_TAGS = frozenset({"$timestamp", "$bytes", "$ref", "$geopoint", "$vector", "$float", "$map"})


def encode_value(value: Any) -> Any:
    """A JSON-ready form of a Firestore value that `decode_value` turns back into it."""
    if value is None or isinstance(value, bool | str | int):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else {"$float": repr(value)}
    if isinstance(value, DatetimeWithNanoseconds):
        return {"$timestamp": value.rfc3339()}  # type: ignore[no-untyped-call]
    if isinstance(value, datetime):
        moment = value if value.tzinfo else value.replace(tzinfo=UTC)
        return {"$timestamp": moment.astimezone(UTC).isoformat(timespec="microseconds")}
    if isinstance(value, bytes):
        return {"$bytes": base64.b64encode(value).decode("ascii")}
    if isinstance(value, GeoPoint):
        return {"$geopoint": [value.latitude, value.longitude]}
    if isinstance(value, Vector):
        return {"$vector": [float(x) for x in value]}
    if isinstance(value, firestore.DocumentReference):
        return {"$ref": value.path}
    if isinstance(value, list | tuple):
        return [encode_value(v) for v in value]
    if isinstance(value, dict):
        encoded = {str(k): encode_value(v) for k, v in value.items()}
        if any(str(k).startswith("$") for k in value):
            return {"$map": encoded}
        return encoded
    raise TypeError(f"unsupported Firestore value type {type(value).__name__}: not exported")


def decode_value(value: Any, client: firestore.Client) -> Any:
    if isinstance(value, list):
        return [decode_value(v, client) for v in value]
    if not isinstance(value, dict):
        return value
    if len(value) == 1:
        ((tag, inner),) = value.items()
        if tag in _TAGS:
            if tag == "$timestamp":
                return DatetimeWithNanoseconds.from_rfc3339(_rfc3339(inner))  # type: ignore[no-untyped-call]
            if tag == "$bytes":
                return base64.b64decode(inner)
            if tag == "$ref":
                return client.document(inner)
            if tag == "$geopoint":
                return GeoPoint(inner[0], inner[1])
            if tag == "$vector":
                return Vector(inner)
            if tag == "$float":
                return float(inner)
            return {k: decode_value(v, client) for k, v in inner.items()}
    return {k: decode_value(v, client) for k, v in value.items()}


def _rfc3339(text: str) -> str:
    # Plain datetimes were written with isoformat ("+00:00"); from_rfc3339 wants "Z".
    return text.replace("+00:00", "Z")


def collection_shape(path: str) -> str:
    """`conversations/c1/messages/00000001` -> `conversations.messages` (ids dropped)."""
    parts = path.split("/")
    return ".".join(parts[0::2])


# --- logical export / restore --------------------------------------------------------------


def export_firestore(
    client: firestore.Client, directory: Path, *, key: bytes, timeout_s: float = 60.0
) -> Manifest:
    """Every document of every collection (recursively) as `{"path", "data"}` NDJSON, with
    a manifest signed with `key`."""
    collections: dict[str, list[dict[str, Any]]] = {}
    rpc = rpc_options(timeout_s)
    with unavailable_errors():
        for root in client.collections(timeout=timeout_s):
            for snap in root.recursive().stream(**rpc):
                path = snap.reference.path
                collections.setdefault(collection_shape(path), []).append(
                    {"path": path, "data": encode_value(snap.to_dict() or {})}
                )
    for records in collections.values():
        records.sort(key=lambda r: str(r["path"]))
    return write_backup(directory, BACKEND, collections, key=key)


def firestore_document_counts(client: firestore.Client) -> dict[str, int]:
    counts: dict[str, int] = {}
    with unavailable_errors():
        for root in client.collections():
            for snap in root.recursive().select([]).stream():
                shape = collection_shape(snap.reference.path)
                counts[shape] = counts.get(shape, 0) + 1
    return counts


def wipe_firestore(client: firestore.Client) -> None:
    with unavailable_errors():
        for root in list(client.collections()):
            client.recursive_delete(root)


def restore_firestore(
    client: firestore.Client,
    directory: Path,
    *,
    key: bytes,
    force: bool = False,
    timeout_s: float = 60.0,
) -> Manifest:
    """Write every document of a logical backup back (batched, ≤ 500 writes per commit).

    The manifest's signature is checked with `key` first, and every record must lie in the
    collection its file stands for (a record cannot write elsewhere in the database).

    Refuses (StoreNotEmpty) when the database holds any document, unless `force`, which
    first deletes everything. Firestore has no multi-batch transaction: an interrupted
    restore leaves part of the data; run it again with --force.
    """
    manifest = verify_backup(directory, key=key)
    if manifest.backend != BACKEND:
        raise BackupInvalid(f"{directory} is a {manifest.backend} backup, not {BACKEND}")
    with unavailable_errors():
        occupied = [c.id for c in client.collections(timeout=timeout_s)]
    if occupied and not force:
        raise StoreNotEmpty(
            f"the Firestore database is not empty (collections {', '.join(sorted(occupied))}); "
            "restore into an empty database, or pass --force to replace its contents"
        )
    if occupied:
        wipe_firestore(client)
    rpc = rpc_options(timeout_s)
    batch = client.batch()
    pending = 0
    try:
        with unavailable_errors():
            for entry in manifest.files:
                for record in read_records(directory, entry):
                    path = record["path"]
                    if not isinstance(path, str) or collection_shape(path) != entry.collection:
                        raise BackupInvalid(
                            f"{directory}: {entry.name} holds {path!r}, which is not in "
                            f"{entry.collection!r}"
                        )
                    batch.set(client.document(path), decode_value(record["data"], client))
                    pending += 1
                    if pending == BATCH_LIMIT:
                        batch.commit(**rpc)
                        batch, pending = client.batch(), 0
            if pending:
                batch.commit(**rpc)
    except BackupInvalid:
        raise
    except (KeyError, TypeError, ValueError) as exc:
        raise BackupInvalid(f"{directory}: bad record: {exc}") from exc
    except DependencyUnavailable:
        log.error("restore interrupted; run it again with --force")
        raise
    log.info("restored %s into Firestore: %s", directory, manifest.counts)
    return manifest
