"""The learner profile: what a learner tells the mentor about themselves, across
conversations, and the updates the mentor proposes from what they say.

A profile is small and validated (every field has a size limit). The mentor never changes
it silently: `propose_updates` reads a learner message and returns suggestions (a level,
a technology of their stack, a goal) that the learner accepts or dismisses. The profile
shapes prompts (`prompt_note`): the level sets the depth of explanations.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ion.domain.models import Language

__all__ = [
    "LearnerProfile",
    "ProfileSuggestion",
    "SuggestionField",
    "apply_suggestion",
    "open_suggestions",
    "prompt_note",
    "propose_updates",
]

Level = Literal["beginner", "intermediate", "advanced"]
SuggestionField = Literal["level", "stack", "goals"]
MAX_GOALS, MAX_STACK, MAX_NOTES_CHARS = 5, 20, 1000
MAX_SUGGESTIONS = 10


def _clean_items(items: list[str], *, max_chars: int, what: str) -> list[str]:
    cleaned: list[str] = []
    for item in items:
        text = " ".join(item.split())
        if not text:
            raise ValueError(f"{what}: empty entries are not allowed")
        if len(text) > max_chars:
            raise ValueError(f"{what}: entries are at most {max_chars} characters")
        if text.casefold() not in (c.casefold() for c in cleaned):
            cleaned.append(text)
    return cleaned


class LearnerProfile(BaseModel):
    """What the learner keeps about themselves (GET/PUT /v1/me/profile)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    goals: list[str] = Field(default_factory=list, max_length=MAX_GOALS)
    level: Level | None = None
    stack: list[str] = Field(default_factory=list, max_length=MAX_STACK)
    preferred_language: Language | None = None
    notes: str = Field(default="", max_length=MAX_NOTES_CHARS)

    @field_validator("goals")
    @classmethod
    def _goals(cls, v: list[str]) -> list[str]:
        return _clean_items(v, max_chars=200, what="goals")

    @field_validator("stack")
    @classmethod
    def _stack(cls, v: list[str]) -> list[str]:
        return _clean_items(v, max_chars=40, what="stack")

    @property
    def empty(self) -> bool:
        return self == LearnerProfile()


class ProfileSuggestion(BaseModel):
    """A profile update the mentor proposes; the learner accepts or dismisses it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    field: SuggestionField
    value: str = Field(min_length=1, max_length=200)
    conversation_id: str
    created_at: datetime


def apply_suggestion(profile: LearnerProfile, suggestion: ProfileSuggestion) -> LearnerProfile:
    """The profile with the suggestion accepted (a list keeps its size limit)."""
    if suggestion.field == "level":
        return profile.model_copy(update={"level": suggestion.value})
    current = list(getattr(profile, suggestion.field))
    limit = MAX_GOALS if suggestion.field == "goals" else MAX_STACK
    updated = [*current, suggestion.value][-limit:]
    return LearnerProfile.model_validate({**profile.model_dump(), suggestion.field: updated})


# What a learner says that is worth proposing (first person only: "I'm a beginner").
_LEVEL_CUES: tuple[tuple[re.Pattern[str], Level], ...] = (
    (
        re.compile(
            r"(?i)\bi(?:'m| am) (?:a |an |still a )?(?:total |complete )?(?:beginner|newbie|novice)\b|저는 (?:완전 )?(?:초보|입문자)|코딩 초보|개발 초보"
        ),
        "beginner",
    ),
    (
        re.compile(
            r"(?i)\bi(?:'m| am) (?:a |an )?(?:junior|intermediate)\b|주니어 개발자(?:예요|입니다|인데)|저는 주니어"
        ),
        "intermediate",
    ),
    (
        re.compile(
            r"(?i)\bi(?:'m| am) (?:a |an )?(?:senior|experienced|lead)\b|시니어 개발자(?:예요|입니다|인데)|저는 시니어"
        ),
        "advanced",
    ),
)
_STACK_CUE = re.compile(
    r"(?i)\bi(?:'m| am)? ?(?:use|using|learning|work with|working with|code in|coding in|write)"
    r" (?P<tech>python|java(?:script)?|typescript|react|vue|angular|flutter|kotlin|swift|go|"
    r"rust|c\+\+|c#|ruby|php|django|flask|spring|node(?:\.js)?|next\.js|sql|docker|kubernetes)\b"
)
_GOAL_CUE = re.compile(
    r"(?i)\bmy goal is (?:to )?(?P<goal>[^.!?\n]{5,120})|목표는 (?P<goal_ko>[^.!?\n]{3,80}?)(?:이에요|예요|입니다|이다|야)"
)


def propose_updates(
    text: str, profile: LearnerProfile, pending: list[ProfileSuggestion]
) -> list[tuple[SuggestionField, str]]:
    """The (field, value) updates a learner message supports that the profile and the
    pending suggestions do not already hold."""
    found: list[tuple[SuggestionField, str]] = []
    for pattern, level in _LEVEL_CUES:
        if pattern.search(text):
            found.append(("level", level))
            break
    for match in _STACK_CUE.finditer(text):
        found.append(("stack", match.group("tech")))
    goal = _GOAL_CUE.search(text)
    if goal is not None:
        found.append(("goals", " ".join((goal.group("goal") or goal.group("goal_ko")).split())))
    known = {(s.field, s.value.casefold()) for s in pending}
    held = _held(profile)
    fresh: list[tuple[SuggestionField, str]] = []
    for field_name, value in found:
        key = (field_name, value.casefold())
        if key not in known and key not in held and (field_name, value) not in fresh:
            fresh.append((field_name, value))
    return fresh


def _held(profile: LearnerProfile) -> set[tuple[str, str]]:
    held: set[tuple[str, str]] = {("level", profile.level or "")}
    held |= {("stack", s.casefold()) for s in profile.stack}
    held |= {("goals", g.casefold()) for g in profile.goals}
    return held


def open_suggestions(
    profile: LearnerProfile, suggestions: list[ProfileSuggestion]
) -> list[ProfileSuggestion]:
    """The suggestions the profile does not already hold (the learner may have typed it)."""
    held = _held(profile)
    return [s for s in suggestions if (s.field, s.value.casefold()) not in held]


_NOTE: dict[Language, str] = {
    "en": "\n\nAbout the learner (their own profile): {facts}.",
    "ko": "\n\n학습자 정보 (학습자가 직접 적은 프로필): {facts}.",
}
_DEPTH: dict[Level, dict[Language, str]] = {
    "beginner": {
        "en": "Explain for a beginner: plain words, one idea at a time, define any jargon",
        "ko": "초보자 눈높이로 설명하세요: 쉬운 말로, 한 번에 하나씩, 전문 용어는 풀어서",
    },
    "intermediate": {
        "en": "Explain for an intermediate developer: skip the basics, show the trade-offs",
        "ko": "중급 개발자 눈높이로 설명하세요: 기초는 건너뛰고 트레이드오프를 보여 주세요",
    },
    "advanced": {
        "en": "Explain for an experienced developer: be concise and precise, go deep",
        "ko": "숙련된 개발자 눈높이로 설명하세요: 간결하고 정확하게, 깊이 있게",
    },
}


def prompt_note(profile: LearnerProfile | None, language: Language) -> str:
    """What the prompt says about the learner ('' for no profile)."""
    if profile is None or profile.empty:
        return ""
    facts: list[str] = []
    if profile.level is not None:
        facts.append(_DEPTH[profile.level][language])
    if profile.stack:
        facts.append(("stack: " if language == "en" else "기술 스택: ") + ", ".join(profile.stack))
    if profile.goals:
        facts.append(("goals: " if language == "en" else "목표: ") + "; ".join(profile.goals))
    if profile.notes:
        facts.append(("notes: " if language == "en" else "메모: ") + profile.notes)
    return _NOTE[language].format(facts="; ".join(facts))
