"""Records the ports exchange: plain, validated values, with no behaviour beyond their own
invariants. `ion.ports` (Protocols only) re-exports them, so adapters and services keep
importing them from there.
"""

from __future__ import annotations

import hashlib
from datetime import date, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from ion.domain.models import Conversation, Message, ResonanceKey
from ion.domain.profile import LearnerProfile, ProfileSuggestion

Rating = Literal["up", "down"]
BackupKind = Literal["firestore-export", "sqlite-snapshot", "logical"]
BackupStatus = Literal["running", "succeeded", "failed", "expired"]

__all__ = [
    "BackupKind",
    "BackupRecord",
    "BackupStatus",
    "CachedAnswer",
    "ConversationMemory",
    "ConversationPage",
    "CounterChange",
    "DailyCount",
    "Feedback",
    "IdempotencyRecord",
    "JudgeFailed",
    "JudgeVerdict",
    "LearnerRecord",
    "OutboxEntry",
    "Rating",
    "RoutingDisagreement",
    "RoutingStat",
    "StatsDelta",
    "TurnClaim",
    "TurnSnapshot",
    "text_hash",
]


class ConversationPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    conversations: list[Conversation]
    next_cursor: str | None = None


class TurnClaim(BaseModel):
    """The outcome of `ConversationStore.claim_turn`."""

    model_config = ConfigDict(frozen=True)

    # The conversation as read under the claim; None when absent or another user's.
    conversation: Conversation | None = None
    # The opaque lease token when the claim was taken (pass it to save_turn/release_turn).
    lease: str | None = None
    # When the live lease that refused this claim expires.
    busy_until: datetime | None = None
    # The counters' values after the claim's `counters` changes (in their order).
    counters: tuple[int, ...] = ()
    # With `expected`: the conversation changed since that snapshot (nothing written).
    changed: bool = False


class CounterChange(BaseModel):
    """An amount added to one shared counter (`QuotaStore`), e.g. a rate-limit window."""

    model_config = ConfigDict(frozen=True)

    key: str
    amount: int
    expires_at: datetime


class ConversationMemory(BaseModel):
    """The rolling summary of what a conversation said before its history window."""

    model_config = ConfigDict(frozen=True)

    summary: str
    # How many of the conversation's first messages the summary covers.
    through: int = Field(ge=0)
    updated_at: datetime


class TurnSnapshot(BaseModel):
    """What a turn reads before it claims its conversation (`ConversationStore.read_turn`)."""

    model_config = ConfigDict(frozen=True)

    # None when the conversation does not exist or is another user's.
    conversation: Conversation | None = None
    # Its last messages, oldest first (none while another turn holds it).
    history: list[Message] = Field(default_factory=list)
    memory: ConversationMemory | None = None
    # When the live lease of another turn expires (that turn is still running).
    busy_until: datetime | None = None
    # Opaque: `claim_turn(expected=version)` takes the lease only while it is unchanged.
    version: str | None = None


class LearnerRecord(BaseModel):
    """What is kept about one learner across conversations: their profile and the
    mentor's pending suggestions for it."""

    model_config = ConfigDict(frozen=True)

    profile: LearnerProfile = Field(default_factory=LearnerProfile)
    suggestions: list[ProfileSuggestion] = Field(default_factory=list)
    updated_at: datetime | None = None


class OutboxEntry(BaseModel):
    """A domain event that could not be published yet; kept durably until it is."""

    model_config = ConfigDict(frozen=True)

    id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None


class CachedAnswer(BaseModel):
    """A first-turn answer kept for identical first messages (see ResponseCache)."""

    model_config = ConfigDict(frozen=True)

    text: str
    model: str
    finish_reason: str | None = None
    created_at: datetime
    expires_at: datetime
    # The conversation whose first turn produced the answer: erased with it.
    conversation_id: str | None = None


class IdempotencyRecord(BaseModel):
    """What is remembered about one (user, Idempotency-Key) pair."""

    model_config = ConfigDict(frozen=True)

    user_id: str
    key: str
    request_hash: str
    state: Literal["pending", "done"]
    created_at: datetime
    expires_at: datetime
    locked_until: datetime  # a pending claim older than this was abandoned (crash)
    response: str | None = None  # the stored reply (JSON text) once done
    conversation_id: str | None = None  # the reply's conversation once done (erasure)


class Feedback(BaseModel):
    """A learner's rating of one assistant message (one per message; re-rating replaces it)."""

    model_config = ConfigDict(frozen=True)

    conversation_id: str
    message_id: str
    user_id: str
    rating: Rating
    comment: str | None = None
    persona: str
    resonance_key: ResonanceKey | None = None
    created_at: datetime
    updated_at: datetime


class RoutingStat(BaseModel):
    """Counters for one persona on messages of one resonance key."""

    model_config = ConfigDict(frozen=True)

    persona: str
    resonance_key: ResonanceKey
    turns: int = 0
    ups: int = 0
    downs: int = 0


class StatsDelta(BaseModel):
    """Signed changes to one (persona, resonance key) counter set."""

    model_config = ConfigDict(frozen=True)

    persona: str
    resonance_key: ResonanceKey
    turns: int = 0
    ups: int = 0
    downs: int = 0


class DailyCount(BaseModel):
    """One named counter of one UTC day, for the operator charts: `turns.<persona>`,
    `ups.<persona>`, `downs.<persona>` (net rating changes that day) and `crises` (counts
    only: nothing else about a crisis is kept here)."""

    model_config = ConfigDict(frozen=True)

    day: date
    name: str = Field(pattern=r"^[a-z]+(\.[a-z0-9_-]{1,64})?$")
    count: int = 0


class BackupRecord(BaseModel):
    """One entry of the backup catalog."""

    model_config = ConfigDict(frozen=True)

    id: str
    kind: BackupKind
    status: BackupStatus
    started_at: datetime
    finished_at: datetime | None = None
    location: str
    collections: list[str] = Field(default_factory=list)
    operation: str | None = None
    error: str | None = None
    trigger_id: str | None = None


class JudgeVerdict(BaseModel):
    """What the routing judge decided for one message (ids are catalog persona ids)."""

    model_config = ConfigDict(frozen=True)

    primary: str
    secondary: str | None = None
    main_need: str = Field(min_length=1, max_length=200)


class JudgeFailed(Exception):
    """The judge gave no usable verdict; `reason` is short and holds no message text
    (`timeout`, `http 500`, `invalid output`, `unknown persona id`, `safety block`, ...)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def text_hash(text: str) -> str:
    """sha256 hex of a learner message's text: finds the derived copies of a text to erase."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


class RoutingDisagreement(BaseModel):
    """A message where the judge overruled the local router: a candidate for new labelled
    data. Holds the learner's text (operators review it); no user or conversation id, but
    `text_hash` lets deleting a conversation erase the copies of its messages."""

    model_config = ConfigDict(frozen=True)

    @property
    def text_hash(self) -> str:
        return text_hash(self.message)

    message_hash: str = Field(pattern=r"^[0-9a-f]{64}$")  # sha256 of message + context
    message: str
    local_persona: str
    judge_persona: str
    judge_secondary: str | None = None
    confidence: float = Field(ge=0.0, le=1.0)  # the local router's
    main_need: str
    created_at: datetime
    expires_at: datetime
