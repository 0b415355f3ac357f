"""The scheduled backup run (the body of the `backup` function and `ion backup run`).

No Google SDK and no file system here: the run works through ports.

- a `BackupTarget` does the actual copy: a Firestore managed export
  (`ion.adapters.firestore.backup.ManagedExportTarget`), a consistent SQLite snapshot
  (`ion.adapters.sqlite.backup.SqliteSnapshotTarget`), or a logical NDJSON export to a
  directory (`ion.adapters.backup_format.LogicalExportTarget`);
- the `BackupCatalog` records each backup (id, time, collections, operation, status);
- `RoutingStatsStore.mark_processed` dedupes the trigger message, so a redelivered
  scheduler message does not start a second backup.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ion.domain.backups import backup_id
from ion.ports import BackupCatalog, BackupRecord, BackupTarget, Clock, RoutingStatsStore

log = logging.getLogger("ion.backup")

# A managed export takes minutes; one still running at the next daily run is stuck.
INCOMPLETE_AFTER = timedelta(hours=12)


@dataclass
class RunResult:
    started: BackupRecord | None = None
    refreshed: list[BackupRecord] = field(default_factory=list)
    pruned: list[str] = field(default_factory=list)
    skipped: bool = False

    def as_json(self) -> dict[str, Any]:
        return {
            "started": None if self.started is None else self.started.model_dump(mode="json"),
            "refreshed": [r.model_dump(mode="json") for r in self.refreshed],
            "pruned": self.pruned,
            "skipped": self.skipped,
        }


class BackupRunner:
    """One scheduled backup run: refresh running exports, start a backup, apply retention."""

    def __init__(
        self,
        *,
        target: BackupTarget,
        catalog: BackupCatalog,
        dedupe: RoutingStatsStore,
        clock: Clock,
        retention_days: int,
    ) -> None:
        self._target = target
        self._catalog = catalog
        self._dedupe = dedupe
        self._clock = clock
        self._retention = timedelta(days=retention_days)

    def run(self, trigger_id: str | None = None) -> RunResult:
        """Raises on failures worth a retry (the function then answers 500 and Pub/Sub
        redelivers); a backup the target reports as failed is recorded, not raised."""
        result = RunResult()
        mark = None if trigger_id is None else f"backup-trigger-{trigger_id}"
        if mark is not None and self._dedupe.is_processed(mark):
            log.info("backup: trigger %s was handled already; skipping", trigger_id)
            result.skipped = True
            return result

        for record in self._catalog.running_backups():
            if record.kind != self._target.kind:
                continue
            now = self._clock.now()
            updated = self._target.refresh(record, now)
            if updated != record:
                self._catalog.put_backup(updated)
                result.refreshed.append(updated)
                # "backup <id> is now succeeded" feeds the backup_succeeded log metric,
                # whose absence for 26 h alerts (terraform/backup.tf).
                log.log(
                    _level(updated),
                    "backup %s is now %s%s",
                    updated.id,
                    updated.status,
                    _detail(updated),
                )
            elif now - record.started_at > INCOMPLETE_AFTER:
                log.error(
                    "backup %s is incomplete: still running %d h after it started",
                    record.id,
                    (now - record.started_at) // timedelta(hours=1),
                )

        now = self._clock.now()
        record = self._target.start(backup_id(now), now)
        record = record.model_copy(update={"trigger_id": trigger_id})
        self._catalog.put_backup(record)
        result.started = record
        log.log(
            _level(record),
            "backup %s (%s): %s at %s%s",
            record.id,
            record.kind,
            record.status,
            record.location,
            _detail(record),
        )

        result.pruned = self._target.prune(self._clock.now())
        self._expire_catalog(self._clock.now(), set(result.pruned))
        if mark is not None:
            self._dedupe.mark_processed(mark, processed_at=self._clock.now())
        return result

    def _expire_catalog(self, now: datetime, pruned: set[str]) -> None:
        """Catalog entries past the retention (deleted here, or by the bucket's lifecycle
        rule) are marked `expired` so the catalog never lists a backup that is gone."""
        cutoff = now - self._retention
        for record in self._catalog.list_backups(limit=1000):
            if record.status == "succeeded" and (
                record.location in pruned or record.started_at < cutoff
            ):
                self._catalog.put_backup(record.model_copy(update={"status": "expired"}))


def _level(record: BackupRecord) -> int:
    """ERROR for a failed backup (the backup_failures log metric and its alert count the
    backup function's ERROR lines, terraform/monitoring.tf), INFO otherwise."""
    return logging.ERROR if record.status == "failed" else logging.INFO


def _detail(record: BackupRecord) -> str:
    return f": {record.error}" if record.status == "failed" and record.error else ""
