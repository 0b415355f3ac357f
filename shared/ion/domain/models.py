"""Domain models shared by every layer (pydantic v2, no I/O)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class Tone(StrEnum):
    FRUSTRATED = "frustrated"
    ANXIOUS = "anxious"
    CURIOUS = "curious"
    ANALYTICAL = "analytical"
    CALM = "calm"
    URGENT = "urgent"
    CONFUSED = "confused"
    PLAYFUL = "playful"
    COLLABORATIVE = "collaborative"


class Pace(StrEnum):
    BURST = "burst"
    FLOWING = "flowing"
    CONTEMPLATIVE = "contemplative"
    MEDIUM = "medium"


class Intent(StrEnum):
    INQUIRY = "inquiry"
    STATEMENT = "statement"
    EXPRESSIVE = "expressive"
    SEEKING_ADVICE = "seeking_advice"
    PLANNING = "planning"
    LEARNING = "learning"


Language = Literal["ko", "en"]
Role = Literal["user", "assistant"]
MessageStatus = Literal["complete", "unanswered", "incomplete", "blocked"]
#: How a turn was answered: one persona, two (primary + a short part by a second), or a
#: clarifying question with quick replies (ion.domain.orchestration).
TurnMode = Literal["single", "duo", "clarify"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ResonanceKey(_Frozen):
    """The tone-pace-intent reading of one learner message."""

    tone: Tone
    pace: Pace
    intent: Intent

    def as_string(self) -> str:
        return f"{self.tone.value}-{self.pace.value}-{self.intent.value}"


class ResonanceAnalysis(_Frozen):
    """A resonance key plus the evidence that produced it (explainability)."""

    key: ResonanceKey
    language: Language
    emotion_intensity: float = Field(ge=0.0, le=1.0)
    evidence: tuple[str, ...] = ()


class RoutingTraits(_Frozen):
    """Data that lets the generic router score a persona; lives in the persona catalog.

    `keywords` maps cue terms (Hangul = substring stem, Latin = word-start prefix, trailing
    `$` = whole word) to additive weights; `patterns` maps regular expressions to weights;
    `feature_affinity` weights numeric text features (see `ion.domain.resonance.FEATURE_NAMES`).
    """

    keywords: dict[str, float] = Field(default_factory=dict)
    patterns: dict[str, float] = Field(default_factory=dict)
    tone_affinity: dict[Tone, float] = Field(default_factory=dict)
    intent_affinity: dict[Intent, float] = Field(default_factory=dict)
    feature_affinity: dict[str, float] = Field(default_factory=dict)
    prior: float = 0.0
    cue_label: str = ""


class Persona(_Frozen):
    id: str = Field(pattern=r"^[a-z][a-z0-9_]{1,31}$")
    name: str
    name_ko: str
    role: str
    style: str
    system_prompt: dict[Language, str]
    temperature: float = Field(default=0.7, ge=0.0, le=2.0)
    traits: RoutingTraits = Field(default_factory=RoutingTraits)


class RoutingDecision(_Frozen):
    primary: str
    secondary: str | None
    confidence: float = Field(ge=0.0, le=1.0)
    scores: dict[str, float]
    reason: str
    # True when the LLM routing judge chose primary/secondary (the local confidence was
    # below ION_ROUTING_JUDGE_THRESHOLD); `confidence` and `scores` stay the local ones.
    judged: bool = False


class CrisisResource(_Frozen):
    """One place to get help now: a name and a phone number and/or a URL."""

    name: str = Field(min_length=1, max_length=120)
    phone: str | None = Field(None, min_length=1, max_length=40)
    url: str | None = Field(None, pattern=r"^https://\S+$", max_length=300)

    def line(self) -> str:
        contact = " · ".join(x for x in (self.phone, self.url) if x)
        return f"- {self.name}: {contact}"


class Safety(_Frozen):
    """What the API says about a message's crisis check (`resources` empty when calm)."""

    crisis: bool = False
    resources: tuple[CrisisResource, ...] = ()


class Usage(_Frozen):
    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)


class Message(_Frozen):
    id: str
    conversation_id: str
    role: Role
    text: str
    created_at: datetime
    persona: str | None = None
    routing: RoutingDecision | None = None
    resonance_key: ResonanceKey | None = None
    model: str | None = None
    usage: Usage | None = None
    latency_ms: int | None = None
    finish_reason: str | None = None
    status: MessageStatus = "complete"
    # An answer given under the crisis policy (safe prompt or template, resources included).
    crisis: bool = False
    # Assistant messages: how the turn was answered, the personas that shaped it (primary
    # first; for a clarifying question, the ones its quick replies stand for) and the
    # quick replies offered.
    mode: TurnMode = "single"
    personas: tuple[str, ...] = ()
    quick_replies: tuple[str, ...] = ()


class Conversation(_Frozen):
    id: str
    user_id: str
    created_at: datetime
    updated_at: datetime
    title: str = ""
    current_persona: str | None = None
    message_count: int = Field(default=0, ge=0)


class ChatReply(_Frozen):
    """What the chat service returns for one answered learner message."""

    conversation_id: str
    message_id: str
    user_message_id: str
    reply: str
    persona: Persona
    routing: RoutingDecision
    resonance_key: ResonanceKey
    model: str
    usage: Usage
    latency_ms: int
    finish_reason: str | None = None
    cached: bool = False
    safety: Safety = Field(default_factory=Safety)
    mode: TurnMode = "single"
    personas: tuple[str, ...] = ()
    quick_replies: tuple[str, ...] = ()


# --- what a language model is asked and answers ---------------------------------------


class LlmTurn(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    text: str


class LlmRequest(BaseModel):
    """Everything a language model needs for one persona answer."""

    model_config = ConfigDict(frozen=True)

    persona_id: str
    system_prompt: str
    history: list[LlmTurn] = Field(default_factory=list)
    message: str
    language: Language = "en"
    temperature: float = 0.7
    max_output_tokens: int = 1024
    # A duo answer: the persona whose short part follows, introduced by `duo_marker`.
    duo_persona_id: str | None = None
    duo_marker: str | None = None


class LlmResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None


class LlmChunk(BaseModel):
    """One piece of a streamed answer; the last chunk carries `final`."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    final: LlmResponse | None = None
