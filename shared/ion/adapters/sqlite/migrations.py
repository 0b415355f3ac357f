"""The schema of the embedded backend's one SQLite file, as ordered migrations.

One list for every table of the file (conversations, the event outbox, the response cache,
Idempotency-Key records, learning records, quota counters, learner profiles): entry N
upgrades the schema from version N-1 to N. `migrate` applies the pending ones in the
caller's transaction and records the version in PRAGMA user_version, which logical
backups carry (a restore refuses a backup from a newer schema). Append, never edit: a
database in the field holds every version up to its own.
"""

from __future__ import annotations

import sqlite3

# Each entry upgrades the schema by one version (PRAGMA user_version); append, never edit.
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: conversations, messages and the event outbox.
    (
        """
        CREATE TABLE conversations (
            id              TEXT PRIMARY KEY,
            user_id         TEXT NOT NULL,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL,
            title           TEXT NOT NULL DEFAULT '',
            current_persona TEXT,
            message_count   INTEGER NOT NULL DEFAULT 0 CHECK (message_count >= 0)
        )
        """,
        """
        CREATE INDEX conversations_by_user
            ON conversations (user_id, updated_at DESC, id DESC)
        """,
        """
        CREATE TABLE messages (
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            seq             INTEGER NOT NULL CHECK (seq >= 0),
            id              TEXT NOT NULL,
            role            TEXT NOT NULL,
            text            TEXT NOT NULL,
            created_at      TEXT NOT NULL,
            persona         TEXT,
            routing         TEXT,
            resonance_key   TEXT,
            model           TEXT,
            usage           TEXT,
            latency_ms      INTEGER,
            finish_reason   TEXT,
            status          TEXT NOT NULL,
            PRIMARY KEY (conversation_id, seq)
        )
        """,
        """
        CREATE TABLE outbox (
            id          TEXT PRIMARY KEY,
            event_type  TEXT NOT NULL,
            payload     TEXT NOT NULL,
            created_at  TEXT NOT NULL,
            attempts    INTEGER NOT NULL DEFAULT 0,
            last_error  TEXT
        )
        """,
        "CREATE INDEX outbox_by_age ON outbox (created_at, id)",
    ),
    (
        """
        CREATE TABLE response_cache (
            cache_key     TEXT PRIMARY KEY,
            text          TEXT NOT NULL,
            model         TEXT NOT NULL,
            finish_reason TEXT,
            created_at    TEXT NOT NULL,
            expires_at    TEXT NOT NULL
        )
        """,
        "CREATE INDEX response_cache_by_expiry ON response_cache (expires_at)",
        """
        CREATE TABLE idempotency_keys (
            user_id      TEXT NOT NULL,
            idem_key     TEXT NOT NULL,
            request_hash TEXT NOT NULL,
            state        TEXT NOT NULL CHECK (state IN ('pending', 'done')),
            created_at   TEXT NOT NULL,
            expires_at   TEXT NOT NULL,
            locked_until TEXT NOT NULL,
            response     TEXT,
            PRIMARY KEY (user_id, idem_key)
        )
        """,
        "CREATE INDEX idempotency_keys_by_expiry ON idempotency_keys (expires_at)",
    ),
    (
        # The turn lease: one turn at a time per conversation (claim_turn / save_turn).
        "ALTER TABLE conversations ADD COLUMN turn_lease TEXT",
        "ALTER TABLE conversations ADD COLUMN turn_lease_until TEXT",
    ),
    # Answers given under the crisis policy.
    ("ALTER TABLE messages ADD COLUMN crisis INTEGER NOT NULL DEFAULT 0",),
    (
        # Erasure: cached answers and Idempotency-Key replies name their conversation, so
        # deleting it deletes them. Old cache entries cannot be attributed (and were shared
        # across users): dropped. Old replies carry their conversation id in the JSON.
        "DELETE FROM response_cache",
        "ALTER TABLE response_cache ADD COLUMN conversation_id TEXT",
        "CREATE INDEX response_cache_by_conversation ON response_cache (conversation_id)",
        "ALTER TABLE idempotency_keys ADD COLUMN conversation_id TEXT",
        "UPDATE idempotency_keys SET conversation_id = json_extract(response, '$.conversation_id')"
        " WHERE response IS NOT NULL AND json_valid(response)",
        "CREATE INDEX idempotency_keys_by_conversation ON idempotency_keys (conversation_id)",
    ),
    # How an answer was given: {"mode", "personas", "quick_replies"} (NULL: a single answer).
    ("ALTER TABLE messages ADD COLUMN orchestration TEXT",),
    (
        # The rolling summary of the messages before the history window (JSON: summary,
        # through, updated_at); in the conversation's row, so it goes with it.
        "ALTER TABLE conversations ADD COLUMN memory TEXT",
    ),
    (
        # The learning, quota and profile stores' tables, made IF NOT EXISTS on first use
        # before this list held them: a database from then already has them.
        """
        CREATE TABLE IF NOT EXISTS feedback (
            conversation_id TEXT NOT NULL REFERENCES conversations (id) ON DELETE CASCADE,
            message_id      TEXT NOT NULL,
            user_id         TEXT NOT NULL,
            rating          TEXT NOT NULL CHECK (rating IN ('up', 'down')),
            comment         TEXT,
            persona         TEXT NOT NULL,
            resonance_key   TEXT,
            created_at      TEXT NOT NULL,
            updated_at      TEXT NOT NULL,
            PRIMARY KEY (conversation_id, message_id)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS routing_stats (
            persona     TEXT NOT NULL,
            tone        TEXT NOT NULL,
            pace        TEXT NOT NULL,
            intent      TEXT NOT NULL,
            turns       INTEGER NOT NULL DEFAULT 0,
            ups         INTEGER NOT NULL DEFAULT 0,
            downs       INTEGER NOT NULL DEFAULT 0,
            updated_at  TEXT NOT NULL,
            PRIMARY KEY (persona, tone, pace, intent)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS daily_counts (
            day   TEXT NOT NULL,
            name  TEXT NOT NULL,
            count INTEGER NOT NULL DEFAULT 0,
            PRIMARY KEY (day, name)
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS processed_events (
            event_id     TEXT PRIMARY KEY,
            processed_at TEXT NOT NULL,
            expires_at   TEXT NOT NULL
        )
        """,
        "CREATE INDEX IF NOT EXISTS processed_events_by_expiry ON processed_events (expires_at)",
        """
        CREATE TABLE IF NOT EXISTS backups (
            id          TEXT PRIMARY KEY,
            kind        TEXT NOT NULL,
            status      TEXT NOT NULL,
            started_at  TEXT NOT NULL,
            finished_at TEXT,
            location    TEXT NOT NULL,
            collections TEXT NOT NULL,
            operation   TEXT,
            error       TEXT,
            trigger_id  TEXT
        )
        """,
        "CREATE INDEX IF NOT EXISTS backups_by_start ON backups (started_at)",
        """
        CREATE TABLE IF NOT EXISTS routing_disagreements (
            message_hash    TEXT PRIMARY KEY,
            message         TEXT NOT NULL,
            local_persona   TEXT NOT NULL,
            judge_persona   TEXT NOT NULL,
            judge_secondary TEXT,
            confidence      REAL NOT NULL,
            main_need       TEXT NOT NULL,
            created_at      TEXT NOT NULL,
            expires_at      TEXT NOT NULL,
            text_hash       TEXT NOT NULL
        )
        """,
        "CREATE INDEX IF NOT EXISTS routing_disagreements_by_text ON routing_disagreements (text_hash)",
        "CREATE INDEX IF NOT EXISTS routing_disagreements_by_age"
        " ON routing_disagreements (created_at DESC, message_hash DESC)",
        "CREATE INDEX IF NOT EXISTS routing_disagreements_by_expiry"
        " ON routing_disagreements (expires_at)",
        """
        CREATE TABLE IF NOT EXISTS learner_profiles (
            user_id     TEXT PRIMARY KEY,
            profile     TEXT NOT NULL,
            suggestions TEXT NOT NULL DEFAULT '[]',
            updated_at  TEXT
        )
        """,
        """
        CREATE TABLE IF NOT EXISTS quota_counters (
            key TEXT PRIMARY KEY,
            value INTEGER NOT NULL,
            expires_at TEXT NOT NULL
        ) WITHOUT ROWID
        """,
        "CREATE INDEX IF NOT EXISTS quota_counters_expiry ON quota_counters (expires_at)",
    ),
)

SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection) -> None:
    """Apply the pending migrations; runs in the schema transaction (BEGIN IMMEDIATE), so
    another process that migrated meanwhile leaves nothing to do."""
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    for target in range(version + 1, SCHEMA_VERSION + 1):
        for statement in MIGRATIONS[target - 1]:
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {target}")
