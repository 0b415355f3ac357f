"""Ports: the small interfaces the domain needs from the outside world (Protocols only).

Adapters in `ion.adapters` implement them; the domain never imports an adapter. The records
they exchange live in `ion.domain.records` and are re-exported here.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from datetime import date, datetime
from typing import Any, Protocol, runtime_checkable

from ion.domain.models import (
    Conversation,
    LlmChunk,
    LlmRequest,
    LlmResponse,
    Message,
)
from ion.domain.profile import LearnerProfile, ProfileSuggestion
from ion.domain.records import (
    BackupKind,
    BackupRecord,
    BackupStatus,
    CachedAnswer,
    ConversationMemory,
    ConversationPage,
    CounterChange,
    DailyCount,
    Feedback,
    IdempotencyRecord,
    JudgeFailed,
    JudgeVerdict,
    LearnerRecord,
    OutboxEntry,
    Rating,
    RoutingDisagreement,
    RoutingStat,
    StatsDelta,
    TurnClaim,
    TurnSnapshot,
    text_hash,
)

__all__ = [
    "BackupCatalog",
    "BackupKind",
    "BackupRecord",
    "BackupStatus",
    "BackupTarget",
    "CachedAnswer",
    "Clock",
    "ConversationDatabase",
    "ConversationMemory",
    "ConversationPage",
    "ConversationStore",
    "CounterChange",
    "DailyCount",
    "DisagreementStore",
    "EventPublisher",
    "EventTransport",
    "Feedback",
    "FeedbackStore",
    "IdempotencyRecord",
    "IdempotencyStore",
    "JudgeFailed",
    "JudgeVerdict",
    "LanguageModel",
    "LearnerRecord",
    "LearningAndBackupStore",
    "MemoryStore",
    "OutboxEntry",
    "OutboxStore",
    "ProfileStore",
    "QuotaStore",
    "Rating",
    "ResponseCache",
    "RoutingDisagreement",
    "RoutingJudge",
    "RoutingStat",
    "RoutingStatsStore",
    "Secrets",
    "SentenceEmbedder",
    "StatsDelta",
    "StoreAccess",
    "TurnClaim",
    "TurnSnapshot",
    "text_hash",
]


@runtime_checkable
class ConversationStore(Protocol):
    """Durable conversations and their messages."""

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when it does not exist."""
        ...

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        """The last `limit` messages, oldest first."""
        ...

    def list_messages(self, conversation_id: str) -> list[Message]:
        """Every message of the conversation, oldest first."""
        ...

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        """The user's conversations, most recently updated first, cursor-paginated."""
        ...

    def save_turn(
        self,
        conversation: Conversation,
        messages: Sequence[Message],
        updated: Sequence[Message] = (),
        *,
        lease: str | None = None,
    ) -> None:
        """Atomically upsert `conversation` (its summary fields), append `messages` and
        overwrite the `updated` messages, which must already exist (matched by id within
        the conversation; `ValueError` when one does not). All or nothing.

        With `lease` (from `claim_turn`), the same write releases that turn lease, and the
        write fails with `TurnConflict` (nothing written) when the lease is no longer the
        conversation's (it expired and another turn claimed it, or the conversation was
        deleted meanwhile)."""
        ...

    def read_turn(
        self, conversation_id: str, user_id: str, *, now: datetime, history: int
    ) -> TurnSnapshot:
        """What a turn needs before its claim, writing nothing: the conversation (None when
        absent or another user's), whether another turn holds it (`busy_until`), else its
        last `history` messages and its summary, and the `version` to claim it with."""
        ...

    def claim_turn(
        self,
        conversation_id: str,
        user_id: str,
        *,
        now: datetime,
        until: datetime,
        expected: str | None = None,
        counters: Sequence[CounterChange] = (),
    ) -> TurnClaim:
        """Atomically take the conversation's turn lease (valid until `until`) unless a live
        one (`now` < its expiry) exists. Of concurrent claims exactly one wins. A
        conversation that does not exist or belongs to another user is never claimed
        (`conversation` None). A lease left by a crashed holder is free once expired.

        With `expected` (a `read_turn` version) the lease is taken only while the
        conversation is still as that snapshot read it (else `changed`, nothing written), so
        the snapshot's history is the claimed conversation's. The `counters` changes
        (`QuotaStore`) are made in the same write, only when the lease is taken; their new
        values are in `TurnClaim.counters`."""
        ...

    def release_turn(self, conversation_id: str, lease: str) -> None:
        """Release the turn lease if it is still `lease` (idempotent; never raises for a
        lease that expired, was taken over or whose conversation is gone)."""
        ...

    def delete_conversation(self, conversation_id: str) -> bool:
        """Erase the conversation and all its messages; False when it did not exist."""
        ...

    def ping(self) -> None:
        """Raise when the store is not usable (readiness)."""
        ...


class MemoryStore(Protocol):
    """A conversation's rolling summary, kept with the conversation and erased with it."""

    def get_memory(self, conversation_id: str) -> ConversationMemory | None:
        """The conversation's summary; None when there is none (or no conversation)."""
        ...

    def put_memory(self, conversation_id: str, memory: ConversationMemory) -> bool:
        """Replace the summary unless it already covers at least as many messages;
        False (nothing written) when the conversation does not exist."""
        ...


class ProfileStore(Protocol):
    """Learner profiles, one record per user."""

    def get_learner(self, user_id: str) -> LearnerRecord | None: ...

    def put_profile(self, user_id: str, profile: LearnerProfile, *, updated_at: datetime) -> None:
        """Replace the profile (the suggestions stay)."""
        ...

    def put_suggestions(self, user_id: str, suggestions: Sequence[ProfileSuggestion]) -> None:
        """Replace the pending suggestions (the profile stays)."""
        ...

    def delete_learner(self, user_id: str) -> bool:
        """Erase the record; False when there was none."""
        ...


class LanguageModel(Protocol):
    """A provider of persona answers (offline templates, Gemini, ...)."""

    @property
    def name(self) -> str: ...

    def generate(self, request: LlmRequest) -> LlmResponse: ...

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        """Yield text chunks as they arrive; the last chunk has `final` set."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """Whether the provider is configured and usable, with a short explanation."""
        ...


class Secrets(Protocol):
    def get(self, name: str) -> str:
        """The secret's value; raises SecretNotFound / SecretAccessDenied."""
        ...


class EventPublisher(Protocol):
    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        """Publish a domain event. Must not raise for transport failures it can absorb."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class OutboxStore(Protocol):
    def add_outbox(self, entry: OutboxEntry) -> None: ...

    def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        """Oldest first."""
        ...

    def remove_outbox(self, entry_id: str) -> None: ...

    def record_outbox_failure(self, entry_id: str, error: str) -> None:
        """Increment `attempts` and keep `last_error`."""
        ...


class ResponseCache(Protocol):
    """Exact-match answers for first turns, keyed by an opaque key (a sha256 hex digest
    that includes the user, so an entry is only ever served to the learner it came from)."""

    def get_cached_answer(self, key: str, now: datetime) -> CachedAnswer | None:
        """The live entry for `key`; None when absent or expired at `now`."""
        ...

    def put_cached_answer(self, key: str, answer: CachedAnswer) -> None:
        """Insert or replace the entry for `key` (it expires at `answer.expires_at`)."""
        ...

    def delete_cached_answers_for_conversation(self, conversation_id: str) -> int:
        """Erase every entry produced by the conversation (expired or not); how many."""
        ...


class IdempotencyStore(Protocol):
    def claim_idempotency(
        self, record: IdempotencyRecord, now: datetime
    ) -> IdempotencyRecord | None:
        """Atomically store `record` (state pending) unless a live record exists for its
        (user_id, key). Returns None when the claim was taken, else the existing record.
        Expired records, and pending ones past `locked_until`, count as absent."""
        ...

    def complete_idempotency(
        self, user_id: str, key: str, response: str, *, conversation_id: str
    ) -> None:
        """Mark the claim done with the reply to replay (JSON text) of `conversation_id`."""
        ...

    def delete_idempotency_for_conversation(self, conversation_id: str) -> int:
        """Erase every record whose reply belongs to the conversation; how many."""
        ...

    def delete_idempotency_for_user(self, user_id: str) -> int:
        """Erase every record of the user (pending ones too); how many."""
        ...

    def release_idempotency(self, user_id: str, key: str) -> None:
        """Forget a pending claim (the request failed; a retry may run again). Idempotent."""
        ...

    def renew_idempotency(self, user_id: str, key: str, locked_until: datetime) -> None:
        """Extend a pending claim's lease: its owner is still working on it. No-op when the
        claim is gone or done."""
        ...


class QuotaStore(Protocol):
    """Shared counters for rate limits and token budgets (atomic across instances).

    A key names one counter for one window (e.g. `rate:chat:<user hash>:<minute>`), so a
    window's counter is never reused; `expires_at` lets the backend delete it afterwards.
    """

    def increment(self, key: str, amount: int, *, expires_at: datetime) -> int:
        """Atomically add `amount` to the counter (absent = 0); return the new value.

        Concurrent increments from any number of threads and processes are serialised:
        each sees the value after its own addition, so `increment(key, 1) <= limit` admits
        exactly `limit` callers. A negative `amount` gives back part of an earlier
        increment (a token reservation settled or released).
        """
        ...

    def increment_many(self, changes: Sequence[CounterChange]) -> list[int]:
        """`increment` for each change, all in one atomic write; the new values in order."""
        ...

    def counter(self, key: str) -> int:
        """The counter's current value (0 when absent)."""
        ...

    def delete_counters_with_prefix(self, prefix: str) -> int:
        """Erase every counter whose key starts with `prefix` (all windows); how many."""
        ...


# --- feedback, learned routing, backups -----------------------------------------------


class FeedbackStore(Protocol):
    def put_feedback(self, feedback: Feedback) -> Feedback | None:
        """Atomically insert or replace the feedback on (conversation_id, message_id).

        Returns the feedback it replaced (None when it is the first). A replacement keeps
        the original `created_at`.
        """
        ...

    def get_feedback(self, conversation_id: str, message_id: str) -> Feedback | None: ...

    def delete_feedback_for_conversation(self, conversation_id: str) -> int:
        """Erase every feedback on the conversation; the number erased."""
        ...


class RoutingStatsStore(Protocol):
    def apply_event_once(
        self,
        event_id: str,
        deltas: Sequence[StatsDelta],
        *,
        processed_at: datetime,
        daily: Sequence[DailyCount] = (),
    ) -> bool:
        """Atomically record `event_id` as processed and apply `deltas` and the `daily`
        counter increments, unless it already was processed (then change nothing and
        return False). All or nothing."""
        ...

    def routing_stats(self) -> list[RoutingStat]:
        """Every counter set (a few hundred at most: personas × resonance keys)."""
        ...

    def daily_counts(self, first: date, last: date) -> list[DailyCount]:
        """The daily counters of the days `first`..`last` (inclusive), by day then name."""
        ...

    def is_processed(self, event_id: str) -> bool: ...

    def mark_processed(self, event_id: str, *, processed_at: datetime) -> bool:
        """Record `event_id` as processed; False when it already was."""
        ...


class BackupTarget(Protocol):
    kind: BackupKind

    def start(self, backup_id: str, started_at: datetime) -> BackupRecord:
        """Make (or start making) one backup; the record is `running` or final."""
        ...

    def refresh(self, record: BackupRecord, now: datetime) -> BackupRecord:
        """The record of a `running` backup brought up to date (same record if unchanged)."""
        ...

    def prune(self, now: datetime) -> list[str]:
        """Delete backups past the retention that this target manages; their locations."""
        ...


class BackupCatalog(Protocol):
    def put_backup(self, record: BackupRecord) -> None:
        """Insert or replace by id."""
        ...

    def list_backups(self, limit: int = 100) -> list[BackupRecord]:
        """Newest first."""
        ...

    def running_backups(self) -> list[BackupRecord]:
        """Entries whose status is `running` (exports still to be checked)."""
        ...


@runtime_checkable
class SentenceEmbedder(Protocol):
    """Multilingual sentence embeddings: one L2-normalised float32 row per text."""

    @property
    def name(self) -> str:
        """Model name and version (a head trained on one model is valid only for it)."""
        ...

    def embed(self, texts: Sequence[str]) -> Any:
        """A `(len(texts), dim)` numpy float32 array; never raises on odd text."""
        ...


# --- the LLM routing judge (docs/routing.md, "Judge") ---------------------------------


class RoutingJudge(Protocol):
    """A second opinion (an LLM) on which persona should answer an unsure message."""

    def judge(
        self, message: str, *, earlier_turns: Sequence[str], current_persona: str | None
    ) -> JudgeVerdict:
        """The verdict for `message` given the learner's `earlier_turns` (oldest first,
        already trimmed by the caller). One bounded attempt; raises `JudgeFailed`."""
        ...


class DisagreementStore(Protocol):
    def put_disagreement(self, disagreement: RoutingDisagreement) -> None:
        """Insert or replace by `message_hash` (the same message and context is one row)."""
        ...

    def delete_disagreements_for_texts(self, texts: Sequence[str]) -> int:
        """Erase the disagreements holding any of `texts` (a deleted conversation's
        messages); returns how many went. Identical text from someone else goes too: this
        is review data, and erasing too much is the safe side."""
        ...

    def list_disagreements(
        self,
        *,
        limit: int,
        now: datetime,
        after: tuple[datetime, str] | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[RoutingDisagreement]:
        """Newest first (`created_at` desc, then hash desc), at most `limit`, created at or
        after `since` and before `until` when given; with `after` = (created_at, message_hash) of the last row of a page,
        the rows that come after it in that order (the next page). Entries whose
        `expires_at` has passed at `now` are left out."""
        ...


class LearningAndBackupStore(
    FeedbackStore, RoutingStatsStore, BackupCatalog, DisagreementStore, Protocol
):
    """Everything kept beside the conversations: feedback, routing statistics with their
    event-dedupe marks, routing disagreements and the backup catalog. Each backend
    implements it in one adapter, in the same database as its conversations."""


class ConversationDatabase(
    ConversationStore, MemoryStore, ResponseCache, IdempotencyStore, OutboxStore, Protocol
):
    """What one backend's conversation store implements: the conversations with their
    cached answers, Idempotency-Key records and event outbox, so that erasing a
    conversation and writing a turn with its outbox entry stay in one database."""


class StoreAccess(Protocol):
    """How one backend's stores serve a request best: which writes share a commit, and
    whether independent calls are worth making at the same time."""

    def together(self) -> AbstractContextManager[None]:
        """The writes made inside (by this thread) are committed together where the backend
        can (SQLite: one transaction), each still all or nothing on its own: one that
        fails undoes only itself, and what succeeded is kept when an exception ends the
        block. Elsewhere each write is its own commit."""
        ...

    def at_once(self, *calls: Callable[[], Any]) -> list[Any]:
        """Every call's result, in order. Run at the same time where the backend gains from
        it (network round trips), one after another (on this thread) elsewhere. Every
        call runs to its end; then the first exception raised, if any, is raised."""
        ...


class EventTransport(Protocol):
    """Sends one event envelope somewhere; raises on any failure (no retries of its own)."""

    def send(self, event_type: str, envelope: dict[str, Any]) -> None: ...
