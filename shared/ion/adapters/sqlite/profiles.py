"""Learner profiles on SQLite: one row per user (profile and pending suggestions as JSON).

Lives in the same file as `SqliteStore` (pass `SqliteStore.database`); its table is defined
in migrations.py.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from ion.adapters.sqlite.database import SqliteDatabase, as_database
from ion.adapters.store_rules import to_utc
from ion.domain.profile import LearnerProfile, ProfileSuggestion
from ion.ports import LearnerRecord

_EMPTY = LearnerProfile().model_dump_json()


class SqliteProfileStore:
    """`ProfileStore` on a SQLite file."""

    def __init__(self, database: SqliteDatabase | Path | str) -> None:
        self._db = as_database(database, 10_000)

    def get_learner(self, user_id: str) -> LearnerRecord | None:
        row = self._db.read_one(
            "SELECT profile, suggestions, updated_at FROM learner_profiles WHERE user_id = ?",
            (user_id,),
        )
        if row is None:
            return None
        return LearnerRecord(
            profile=LearnerProfile.model_validate_json(row[0]),
            suggestions=[ProfileSuggestion.model_validate(s) for s in json.loads(row[1])],
            updated_at=None if row[2] is None else to_utc(datetime.fromisoformat(row[2])),
        )

    def put_profile(self, user_id: str, profile: LearnerProfile, *, updated_at: datetime) -> None:
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO learner_profiles (user_id, profile, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET profile = excluded.profile, "
                "updated_at = excluded.updated_at",
                (user_id, profile.model_dump_json(), to_utc(updated_at).isoformat()),
            )

    def put_suggestions(self, user_id: str, suggestions: Sequence[ProfileSuggestion]) -> None:
        payload = json.dumps([s.model_dump(mode="json") for s in suggestions], ensure_ascii=False)
        with self._db.write() as conn:
            conn.execute(
                "INSERT INTO learner_profiles (user_id, profile, suggestions) VALUES (?, ?, ?) "
                "ON CONFLICT (user_id) DO UPDATE SET suggestions = excluded.suggestions",
                (user_id, _EMPTY, payload),
            )

    def delete_learner(self, user_id: str) -> bool:
        with self._db.write() as conn:
            cursor = conn.execute("DELETE FROM learner_profiles WHERE user_id = ?", (user_id,))
            return cursor.rowcount > 0
