"""The portable logical backup format and the local backup files.

Logical backup format (`ion backup export|restore|verify`, docs/operations.md): a
directory with one NDJSON file per table (SQLite) or per collection path shape (Firestore,
e.g. `conversations.messages.ndjson` for conversations/*/messages), and `manifest.json`
listing every file with its record count and sha256, signed with HMAC-SHA256 under the
backup key (`ION_BACKUP_HMAC_KEY`), so a changed manifest (or file) is never restored.

Backups hold learners' conversations: directories are created 0700 and files 0600,
whatever the umask.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import re
import shutil
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from ion.domain.backups import expired_names
from ion.ports import BackupKind, BackupRecord

log = logging.getLogger("ion.backup")

MANIFEST = "manifest.json"
FORMAT = "ion-logical-backup"
FORMAT_VERSION = 1

# The manifest's signature fields (not part of what is signed).
SIGNATURE = "hmac_sha256"
KEY_ID = "hmac_key_id"


def unique_name(directory: Path, base: str, suffix: str = "") -> str:
    """`base` (+suffix), or `base-N` when a backup of the same second exists already."""
    name, n = base, 1
    while (directory / f"{name}{suffix}").exists():
        name = f"{base}-{n}"
        n += 1
    return name


def prune_directory(directory: Path, now: datetime, retention_days: int) -> list[str]:
    """Delete local backups (snapshot files, logical export dirs) past the retention."""
    if not directory.is_dir():
        return []
    removed = []
    for name in expired_names((p.name for p in directory.iterdir()), now, retention_days):
        path = directory / name
        if path.is_dir():
            shutil.rmtree(path)
        else:
            path.unlink(missing_ok=True)
        removed.append(str(path))
        log.info("backup retention: deleted %s", path)
    return removed


# --- private files ---------------------------------------------------------------------


def private_directory(path: Path) -> Path:
    """`path` as an owner-only (0700) directory, created if missing (parents too)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # the umask cannot widen it, but an existing dir may be wider
    return path


def private_file(path: Path) -> int:
    """A new owner-only (0600) file opened for writing (fails if it exists): the fd."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.fchmod(fd, 0o600)
    return fd


class LogicalExportTarget:
    """A logical NDJSON export into `<directory>/<id>/` (any backend; dev, e2e, drills)."""

    kind: BackupKind = "logical"

    def __init__(
        self,
        directory: Path,
        export: Callable[[Path], Manifest],
        retention_days: int,
    ) -> None:
        self._directory = directory
        self._export = export
        self._retention_days = retention_days

    def start(self, backup_id: str, started_at: datetime) -> BackupRecord:
        private_directory(self._directory)
        name = unique_name(self._directory, backup_id)
        partial = self._directory / f".{name}.partial"
        if partial.exists():
            shutil.rmtree(partial)
        manifest = self._export(partial)
        partial.rename(self._directory / name)  # appears complete or not at all
        return BackupRecord(
            id=name,
            kind=self.kind,
            status="succeeded",
            started_at=started_at,
            finished_at=datetime.now(UTC),
            location=str(self._directory / name),
            collections=sorted({f.collection for f in manifest.files}),
        )

    def refresh(self, record: BackupRecord, now: datetime) -> BackupRecord:
        return record

    def prune(self, now: datetime) -> list[str]:
        return prune_directory(self._directory, now, self._retention_days)


# --- the logical format -------------------------------------------------------------


class BackupInvalid(ValueError):
    """A logical backup directory that does not match its manifest."""


class StoreNotEmpty(ValueError):
    """Restore refused: the target already holds data (use --force to replace it)."""


class ExportTargetNotEmpty(ValueError):
    """Export refused: the directory exists and holds files."""


class FileEntry(BaseModel):
    model_config = ConfigDict(frozen=True)

    name: str
    collection: str
    count: int = Field(ge=0)
    sha256: str


class Manifest(BaseModel):
    model_config = ConfigDict(frozen=True)

    format: str = FORMAT
    version: int = FORMAT_VERSION
    backend: str
    created_at: datetime
    files: list[FileEntry]
    meta: dict[str, Any] = Field(default_factory=dict)

    @property
    def counts(self) -> dict[str, int]:
        return {f.collection: f.count for f in self.files}


def canonical_line(record: dict[str, Any]) -> bytes:
    return (
        json.dumps(
            record, ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
        )
        + "\n"
    ).encode("utf-8")


def file_name(collection: str) -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", collection)
    return f"{safe}.ndjson"


def write_backup(
    directory: Path,
    backend: str,
    collections: dict[str, list[dict[str, Any]]],
    *,
    key: bytes,
    meta: dict[str, Any] | None = None,
) -> Manifest:
    """Write one NDJSON file per collection (records as given) and the signed manifest.

    `directory` must not exist (its parent must), or be an empty directory: an export never
    mixes with other files. It is made 0700 and every file 0600."""
    if directory.is_dir() and any(directory.iterdir()):
        raise ExportTargetNotEmpty(
            f"{directory} is not empty: export into a new or empty directory"
        )
    if not directory.is_dir():
        directory.mkdir(mode=0o700)
    os.chmod(directory, 0o700)
    entries = []
    for collection in sorted(collections):
        name = file_name(collection)
        digest = hashlib.sha256()
        with os.fdopen(private_file(directory / name), "wb") as handle:
            for record in collections[collection]:
                line = canonical_line(record)
                digest.update(line)
                handle.write(line)
        entries.append(
            FileEntry(
                name=name,
                collection=collection,
                count=len(collections[collection]),
                sha256=digest.hexdigest(),
            )
        )
    manifest = Manifest(
        backend=backend, created_at=datetime.now(UTC), files=entries, meta=meta or {}
    )
    write_manifest(directory, manifest.model_dump(mode="json"), key=key)
    return manifest


def key_id(key: bytes) -> str:
    """A short fingerprint naming the key (not secret: the key has ≥ 256 bits)."""
    return hashlib.sha256(b"ion-backup-key-id\0" + key).hexdigest()[:12]


def manifest_signature(document: dict[str, Any], key: bytes) -> str:
    """HMAC-SHA256 over the canonical JSON of the manifest without its signature field."""
    body = {k: v for k, v in document.items() if k != SIGNATURE}
    return hmac.new(key, canonical_line(body), hashlib.sha256).hexdigest()


def write_manifest(directory: Path, document: dict[str, Any], *, key: bytes) -> None:
    """Sign `document` with `key` and write it as the directory's manifest.json (0600)."""
    signed = {k: v for k, v in document.items() if k != SIGNATURE}
    signed[KEY_ID] = key_id(key)
    signed[SIGNATURE] = manifest_signature(signed, key)
    path = directory / MANIFEST
    path.unlink(missing_ok=True)
    with os.fdopen(private_file(path), "w", encoding="utf-8") as handle:
        handle.write(json.dumps(signed, indent=2, ensure_ascii=False) + "\n")


def read_manifest(directory: Path, *, key: bytes) -> Manifest:
    """The manifest, once its HMAC checks out under `key` (BackupInvalid otherwise)."""
    path = directory / MANIFEST
    try:
        document = json.loads(path.read_bytes())
    except FileNotFoundError:
        raise BackupInvalid(f"{path} not found: not a logical backup directory") from None
    except ValueError as exc:
        raise BackupInvalid(f"{path} is not a valid manifest: {exc}") from exc
    if not isinstance(document, dict):
        raise BackupInvalid(f"{path} is not a valid manifest: not a JSON object")
    signature = document.get(SIGNATURE)
    if not isinstance(signature, str):
        raise BackupInvalid(
            f"{path} is not signed: it was not made by this release's `ion backup export`, "
            "or was altered; a backup is verified and restored only with a valid signature"
        )
    if document.get(KEY_ID) != key_id(key):
        raise BackupInvalid(
            f"{path} was signed with another backup key (id {document.get(KEY_ID)!r}, this "
            f"key is {key_id(key)!r}): set ION_BACKUP_HMAC_KEY to the key of the "
            "environment that made the backup"
        )
    if not hmac.compare_digest(signature, manifest_signature(document, key)):
        raise BackupInvalid(
            f"{path}: signature mismatch: the manifest was changed after the export"
        )
    try:
        manifest = Manifest.model_validate(document)
    except ValueError as exc:
        raise BackupInvalid(f"{path} is not a valid manifest: {exc}") from exc
    if manifest.format != FORMAT or manifest.version != FORMAT_VERSION:
        raise BackupInvalid(
            f"{path}: format {manifest.format!r} v{manifest.version} is not "
            f"{FORMAT!r} v{FORMAT_VERSION}"
        )
    for entry in manifest.files:
        # Names are derived from the collection, never a path: nothing outside the directory.
        if entry.name != file_name(entry.collection) or entry.name.startswith("."):
            raise BackupInvalid(f"{path}: file name {entry.name!r} does not fit its collection")
    return manifest


def verify_backup(directory: Path, *, key: bytes) -> Manifest:
    """Check the manifest's signature, then every file against it (sha256, record count,
    JSON lines, no strays)."""
    manifest = read_manifest(directory, key=key)
    problems = []
    listed = {f.name for f in manifest.files}
    strays = sorted(
        p.name for p in directory.iterdir() if p.name != MANIFEST and p.name not in listed
    )
    if strays:
        problems.append(f"files not in the manifest: {', '.join(strays)}")
    for entry in manifest.files:
        path = directory / entry.name
        if not path.is_file():
            problems.append(f"{entry.name}: missing")
            continue
        digest = hashlib.sha256()
        count = 0
        with path.open("rb") as handle:
            for number, line in enumerate(handle, 1):
                digest.update(line)
                count += 1
                try:
                    json.loads(line)
                except ValueError:
                    problems.append(f"{entry.name}:{number}: not JSON")
                    break
        if digest.hexdigest() != entry.sha256:
            problems.append(f"{entry.name}: sha256 mismatch")
        if count != entry.count:
            problems.append(f"{entry.name}: {count} records, manifest says {entry.count}")
    if problems:
        raise BackupInvalid(f"backup {directory} is damaged: " + "; ".join(problems))
    return manifest


def read_records(directory: Path, entry: FileEntry) -> Iterator[dict[str, Any]]:
    with (directory / entry.name).open("rb") as handle:
        for line in handle:
            record: dict[str, Any] = json.loads(line)
            yield record


def record_digest(record: dict[str, Any]) -> str:
    """The content hash of one exported record (what restore drills compare)."""
    return hashlib.sha256(canonical_line(record)).hexdigest()
