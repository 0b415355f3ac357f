"""Feedback, routing statistics, consumed-event dedupe and the backup catalog on SQLite.

Lives in the same file as `SqliteStore` (pass `SqliteStore.database`, or its path) but owns
its tables (defined in migrations.py). Connections, WAL, busy timeout and `BEGIN IMMEDIATE`
writes come from `SqliteDatabase` (database.py).
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Sequence
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import Any

from ion.adapters.sqlite.database import SqliteDatabase, as_database
from ion.adapters.sqlite.database import from_timestamp as _dt
from ion.adapters.sqlite.database import to_timestamp as _ts
from ion.domain.models import ResonanceKey
from ion.ports import (
    BackupRecord,
    DailyCount,
    Feedback,
    RoutingDisagreement,
    RoutingStat,
    StatsDelta,
    text_hash,
)

#: Expired rows removed per write that prunes (keeps a table bounded, cheaply).
_PRUNE_BATCH = 50
#: Expired dedupe rows are looked for at every tenth applied event, ten batches at once:
#: the table stays as bounded, and nine events in ten skip the statement.
_DEDUPE_PRUNE_EVERY = 10

_UPSERT_STATS = (
    "INSERT INTO routing_stats (persona, tone, pace, intent, turns, ups, downs, updated_at) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
    "ON CONFLICT (persona, tone, pace, intent) DO UPDATE SET "
    "turns = turns + excluded.turns, ups = ups + excluded.ups, "
    "downs = downs + excluded.downs, updated_at = excluded.updated_at"
)
_FEEDBACK_COLUMNS = (
    "conversation_id, message_id, user_id, rating, comment, persona, resonance_key, "
    "created_at, updated_at"
)
_DISAGREEMENT_COLUMNS = (
    "message_hash, message, local_persona, judge_persona, judge_secondary, confidence, "
    "main_need, created_at, expires_at, text_hash"
)
_BACKUP_COLUMNS = (
    "id, kind, status, started_at, finished_at, location, collections, operation, error, trigger_id"
)


class SqliteLearningAndBackupStore:
    """`FeedbackStore`, `RoutingStatsStore`, `BackupCatalog` and `DisagreementStore` on the
    app's SQLite file."""

    def __init__(
        self,
        database: SqliteDatabase | Path | str,
        *,
        busy_timeout_ms: int = 10_000,
        dedupe_days: int = 30,
    ) -> None:
        self._db = as_database(database, busy_timeout_ms)
        self._dedupe = timedelta(days=dedupe_days)
        self._marks_lock = threading.Lock()
        self._marks = 0  # events applied by this instance (when to prune their marks)

    @property
    def path(self) -> Path:
        return self._db.path

    def close(self) -> None:
        self._db.close()

    # --- FeedbackStore ---------------------------------------------------------------

    def put_feedback(self, feedback: Feedback) -> Feedback | None:
        f = feedback
        with self._db.write() as conn:
            row = conn.execute(
                f"SELECT {_FEEDBACK_COLUMNS} FROM feedback "  # noqa: S608 - constant columns
                "WHERE conversation_id = ? AND message_id = ?",
                (f.conversation_id, f.message_id),
            ).fetchone()
            previous = None if row is None else _feedback(row)
            created_at = f.created_at if previous is None else previous.created_at
            conn.execute(
                f"INSERT OR REPLACE INTO feedback ({_FEEDBACK_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    f.conversation_id,
                    f.message_id,
                    f.user_id,
                    f.rating,
                    f.comment,
                    f.persona,
                    None if f.resonance_key is None else f.resonance_key.model_dump_json(),
                    _ts(created_at),
                    _ts(f.updated_at),
                ),
            )
        return previous

    def get_feedback(self, conversation_id: str, message_id: str) -> Feedback | None:
        rows = self._db.read(
            f"SELECT {_FEEDBACK_COLUMNS} FROM feedback "  # noqa: S608
            "WHERE conversation_id = ? AND message_id = ?",
            (conversation_id, message_id),
        )
        return _feedback(rows[0]) if rows else None

    def delete_feedback_for_conversation(self, conversation_id: str) -> int:
        with self._db.write() as conn:
            cursor = conn.execute(
                "DELETE FROM feedback WHERE conversation_id = ?", (conversation_id,)
            )
            return cursor.rowcount

    # --- RoutingStatsStore -----------------------------------------------------------

    def apply_event_once(
        self,
        event_id: str,
        deltas: Sequence[StatsDelta],
        *,
        processed_at: datetime,
        daily: Sequence[DailyCount] = (),
    ) -> bool:
        with self._db.write() as conn:
            if not self._mark(conn, event_id, processed_at):
                return False
            now = _ts(processed_at)
            conn.executemany(
                _UPSERT_STATS,
                [
                    (
                        d.persona,
                        d.resonance_key.tone.value,
                        d.resonance_key.pace.value,
                        d.resonance_key.intent.value,
                        d.turns,
                        d.ups,
                        d.downs,
                        now,
                    )
                    for d in deltas
                ],
            )
            conn.executemany(
                "INSERT INTO daily_counts (day, name, count) VALUES (?, ?, ?) "
                "ON CONFLICT (day, name) DO UPDATE SET count = count + excluded.count",
                [(c.day.isoformat(), c.name, c.count) for c in daily],
            )
            return True

    def daily_counts(self, first: date, last: date) -> list[DailyCount]:
        rows = self._db.read(
            "SELECT day, name, count FROM daily_counts WHERE day >= ? AND day <= ? "
            "ORDER BY day, name",
            (first.isoformat(), last.isoformat()),
        )
        return [DailyCount(day=date.fromisoformat(r[0]), name=r[1], count=r[2]) for r in rows]

    def routing_stats(self) -> list[RoutingStat]:
        rows = self._db.read(
            "SELECT persona, tone, pace, intent, turns, ups, downs FROM routing_stats "
            "ORDER BY persona, tone, pace, intent"
        )
        return [
            RoutingStat(
                persona=r[0],
                resonance_key=ResonanceKey.model_validate(
                    {"tone": r[1], "pace": r[2], "intent": r[3]}
                ),
                turns=r[4],
                ups=r[5],
                downs=r[6],
            )
            for r in rows
        ]

    def is_processed(self, event_id: str) -> bool:
        return bool(self._db.read("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,)))

    def mark_processed(self, event_id: str, *, processed_at: datetime) -> bool:
        with self._db.write() as conn:
            return self._mark(conn, event_id, processed_at)

    def _mark(self, conn: sqlite3.Connection, event_id: str, processed_at: datetime) -> bool:
        cursor = conn.execute(
            "INSERT OR IGNORE INTO processed_events (event_id, processed_at, expires_at) "
            "VALUES (?, ?, ?)",
            (event_id, _ts(processed_at), _ts(processed_at + self._dedupe)),
        )
        if cursor.rowcount == 0:
            return False
        with self._marks_lock:
            self._marks += 1
            prune = self._marks % _DEDUPE_PRUNE_EVERY == 1
        if prune:
            conn.execute(
                "DELETE FROM processed_events WHERE rowid IN (SELECT rowid FROM processed_events "
                "WHERE expires_at < ? LIMIT ?)",
                (_ts(processed_at), _PRUNE_BATCH * _DEDUPE_PRUNE_EVERY),
            )
        return True

    # --- BackupCatalog ---------------------------------------------------------------

    def put_backup(self, record: BackupRecord) -> None:
        r = record
        with self._db.write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO backups ({_BACKUP_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    r.id,
                    r.kind,
                    r.status,
                    _ts(r.started_at),
                    None if r.finished_at is None else _ts(r.finished_at),
                    r.location,
                    json.dumps(r.collections),
                    r.operation,
                    r.error,
                    r.trigger_id,
                ),
            )

    def list_backups(self, limit: int = 100) -> list[BackupRecord]:
        rows = self._db.read(
            f"SELECT {_BACKUP_COLUMNS} FROM backups "  # noqa: S608
            "ORDER BY started_at DESC, id DESC LIMIT ?",
            (max(limit, 0),),
        )
        return [_backup(r) for r in rows]

    def running_backups(self) -> list[BackupRecord]:
        rows = self._db.read(
            f"SELECT {_BACKUP_COLUMNS} FROM backups "  # noqa: S608
            "WHERE status = 'running' ORDER BY started_at, id"
        )
        return [_backup(r) for r in rows]

    # --- DisagreementStore -----------------------------------------------------------

    def put_disagreement(self, disagreement: RoutingDisagreement) -> None:
        d = disagreement
        with self._db.write() as conn:
            conn.execute(
                f"INSERT OR REPLACE INTO routing_disagreements ({_DISAGREEMENT_COLUMNS}) "  # noqa: S608
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    d.message_hash,
                    d.message,
                    d.local_persona,
                    d.judge_persona,
                    d.judge_secondary,
                    d.confidence,
                    d.main_need,
                    _ts(d.created_at),
                    _ts(d.expires_at),
                    d.text_hash,
                ),
            )
            # Retention: expired rows go as new ones arrive (a bounded batch per write).
            conn.execute(
                "DELETE FROM routing_disagreements WHERE rowid IN (SELECT rowid FROM"
                " routing_disagreements WHERE expires_at <= ? LIMIT ?)",
                (_ts(d.created_at), _PRUNE_BATCH),
            )

    def delete_disagreements_for_texts(self, texts: Sequence[str]) -> int:
        hashes = sorted({text_hash(t) for t in texts})
        if not hashes:
            return 0
        with self._db.write() as conn:
            return sum(
                conn.execute("DELETE FROM routing_disagreements WHERE text_hash = ?", (h,)).rowcount
                for h in hashes
            )

    def list_disagreements(
        self,
        *,
        limit: int,
        now: datetime,
        after: tuple[datetime, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[RoutingDisagreement]:
        # Bounds compare as text: the timestamps are written in one fixed ISO format.
        # "~" sorts after every hex digit, so with no `after` nothing is excluded.
        upper, upper_hash = ("9999", "~") if after is None else (_ts(after[0]), after[1])
        lower = "" if since is None else _ts(since)
        end = "9999" if until is None else _ts(until)
        rows = self._db.read(
            f"SELECT {_DISAGREEMENT_COLUMNS} FROM routing_disagreements "  # noqa: S608
            "WHERE expires_at > ? AND created_at >= ? AND created_at < ?"
            " AND (created_at < ? OR (created_at = ? AND message_hash < ?))"
            " ORDER BY created_at DESC, message_hash DESC LIMIT ?",
            (_ts(now), lower, end, upper, upper, upper_hash, max(limit, 0)),
        )
        return [_disagreement(r) for r in rows]


def _feedback(row: tuple[Any, ...]) -> Feedback:
    return Feedback(
        conversation_id=row[0],
        message_id=row[1],
        user_id=row[2],
        rating=row[3],
        comment=row[4],
        persona=row[5],
        resonance_key=None if row[6] is None else ResonanceKey.model_validate_json(row[6]),
        created_at=_dt(row[7]),
        updated_at=_dt(row[8]),
    )


def _backup(row: tuple[Any, ...]) -> BackupRecord:
    return BackupRecord(
        id=row[0],
        kind=row[1],
        status=row[2],
        started_at=_dt(row[3]),
        finished_at=None if row[4] is None else _dt(row[4]),
        location=row[5],
        collections=json.loads(row[6]),
        operation=row[7],
        error=row[8],
        trigger_id=row[9],
    )


def _disagreement(row: tuple[Any, ...]) -> RoutingDisagreement:
    return RoutingDisagreement(
        message_hash=row[0],
        message=row[1],
        local_persona=row[2],
        judge_persona=row[3],
        judge_secondary=row[4],
        confidence=row[5],
        main_need=row[6],
        created_at=_dt(row[7]),
        expires_at=_dt(row[8]),
    )
