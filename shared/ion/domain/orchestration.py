"""How a turn is answered: by one persona, by two (a duo), or by a clarifying question.

The rule is data: the `orchestration` section of personas.yaml holds its thresholds, the
duo marker and instruction, and the clarifying question with one choice per persona.

- **duo**: the message divides into parts (sentences and clauses, `DuoRule.parts`) and,
  each part routed on its own, one part is the primary's and another part is a different
  persona's, both routed at least `duo.min_clause_confidence` sure. Two needs live in two
  parts of a message ("I'm panicking, the capstone is due Friday and I have no plan"); a
  second topic mentioned in passing is no part of its own. Measured on independent
  writers' labelled messages, this found far more real duos than summed keyword cues, with
  fewer false ones (docs/orchestration.md).
- **clarify**: only for the first learner message of a conversation, never right after a
  clarifying question, never when the routing judge gave a verdict, and only for a short
  message (≤ `clarify.max_tokens` words) that either says nothing but "I need help" (every
  word is one of `clarify.generic_words`: "help", "question", "음", "질문"...) or has no
  cue of any persona (strongest < `clarify.vague_cue`) and a routing confidence below
  `clarify.max_confidence`.
- a crisis turn is always single (the safe answer), whatever the rest says.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ion.domain.models import Language, RoutingDecision, TurnMode
from ion.domain.text import join_short_pieces

__all__ = [
    "ClarifyRule",
    "DuoRule",
    "Mode",
    "OrchestrationPolicy",
    "PartRouter",
    "TurnPlan",
    "chosen_reply",
    "plan_turn",
]

Mode = TurnMode
_LANGUAGES: tuple[Language, ...] = ("ko", "en")
_WORD = re.compile(r"\S+")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _both_languages(value: dict[str, str], what: str) -> dict[str, str]:
    missing = [lang for lang in _LANGUAGES if not value.get(lang, "").strip()]
    extra = sorted(set(value) - set(_LANGUAGES))
    if missing or extra:
        raise ValueError(f"{what} needs exactly the languages {list(_LANGUAGES)}")
    return value


class DuoRule(_Strict):
    min_clause_confidence: float = Field(ge=0.0, le=1.0)
    min_clause_chars: int = Field(ge=1)
    clause_words: tuple[str, ...] = ()
    # How the secondary's part starts ({name} = the persona's name in that language).
    marker: dict[str, str]
    # Appended to the primary's system prompt ({name}, {role}, {style}, {marker}).
    instruction: dict[str, str]

    @field_validator("marker", "instruction")
    @classmethod
    def _languages(cls, v: dict[str, str]) -> dict[str, str]:
        return _both_languages(v, "duo text")

    def parts(self, text: str) -> list[str]:
        """The message's parts: split at sentence ends, commas, Korean sentence endings and
        the connective -는데 ("우울한데 …"), and the clause words; a part shorter than
        `min_clause_chars` joins the next."""
        return join_short_pieces(_breaks(self.clause_words).split(text), self.min_clause_chars)


@lru_cache(maxsize=8)
def _breaks(clause_words: tuple[str, ...]) -> re.Pattern[str]:
    words = "|".join(re.escape(w) for w in clause_words)
    return re.compile(
        r"(?<=[.!?…])\s+|\s*[,;]\s+|(?<=[요다죠까])\s+|(?<=[는은한]데)\s+"
        + (rf"|\s+(?:{words})\s+" if words else ""),
        re.IGNORECASE,
    )


class ClarifyRule(_Strict):
    max_confidence: float = Field(ge=0.0, le=1.0)
    max_tokens: int = Field(ge=1, le=20)
    vague_cue: float = Field(ge=0.0)
    # Words that carry no need of their own (Hangul entries match as word stems).
    generic_words: frozenset[str] = frozenset()
    choices_offered: int = Field(ge=2, le=4)
    question: dict[str, str]
    # One short choice per persona id, in both languages.
    choices: dict[str, dict[str, str]]

    @field_validator("question")
    @classmethod
    def _question_languages(cls, v: dict[str, str]) -> dict[str, str]:
        return _both_languages(v, "clarify question")

    @field_validator("choices")
    @classmethod
    def _choice_languages(cls, v: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for persona_id, texts in v.items():
            _both_languages(texts, f"clarify choice {persona_id!r}")
        return v


class OrchestrationPolicy(_Strict):
    duo: DuoRule
    clarify: ClarifyRule

    def check_personas(self, persona_ids: Sequence[str]) -> None:
        """No choice may name an unknown persona, and there must be enough choices to
        offer. A persona without a choice (a new one) is simply never offered."""
        unknown = sorted(set(self.clarify.choices) - set(persona_ids))
        if unknown:
            raise ValueError(f"orchestration.clarify.choices: unknown personas {unknown}")
        if self.clarify.choices_offered > len(self.clarify.choices):
            raise ValueError("orchestration.clarify.choices_offered exceeds the choices")


@dataclass(frozen=True, slots=True)
class TurnPlan:
    """How a turn is answered. `personas`: who shaped it, primary first; for a clarifying
    question, the personas its `quick_replies` stand for, in the same order."""

    mode: Mode
    personas: tuple[str, ...]
    quick_replies: tuple[str, ...] = ()

    @property
    def secondary(self) -> str | None:
        return self.personas[1] if self.mode == "duo" else None


#: Routes one part of a message on its own: (persona, confidence).
PartRouter = Callable[[str], tuple[str, float]]


def plan_turn(
    policy: OrchestrationPolicy,
    *,
    decision: RoutingDecision,
    strengths: Mapping[str, float],
    route_part: PartRouter,
    text: str,
    language: Language,
    first_message: bool,
    after_clarify: bool,
    crisis: bool,
) -> TurnPlan:
    """Single, duo or clarify for one routed learner message (rules: module docstring)."""
    primary = decision.primary
    if crisis:
        return TurnPlan("single", (primary,))
    if _should_clarify(policy.clarify, decision, strengths, text, first_message, after_clarify):
        choosable = [pid for pid in decision.scores if pid in policy.clarify.choices]
        ranked = sorted(choosable, key=lambda pid: -decision.scores[pid])
        offered = tuple(ranked[: policy.clarify.choices_offered])
        replies = tuple(policy.clarify.choices[pid][language] for pid in offered)
        return TurnPlan("clarify", offered, replies)
    secondary = duo_partner(policy.duo, primary, text, route_part)
    if secondary is not None:
        return TurnPlan("duo", (primary, secondary))
    return TurnPlan("single", (primary,))


def duo_partner(rule: DuoRule, primary: str, text: str, route_part: PartRouter) -> str | None:
    """The persona that adds a part to `primary`'s answer, or None (most messages): a part
    routed surely to `primary` and, the first in the message's order, one routed surely to
    another persona. Parts are routed in order until that is decided."""
    parts = rule.parts(text)
    if len(parts) < 2:
        return None  # one part, one need: no routing beyond the message's own
    found_primary, partner = False, None
    for index, part in enumerate(parts):
        persona, confidence = route_part(part)
        if confidence >= rule.min_clause_confidence:
            if persona == primary:
                found_primary = True
            elif partner is None:
                partner = persona
        if found_primary and partner is not None:
            return partner
        missing = (not found_primary) + (partner is None)
        if len(parts) - index - 1 < missing:
            return None  # too few parts left to find what is missing
    return None


def _should_clarify(
    rule: ClarifyRule,
    decision: RoutingDecision,
    strengths: Mapping[str, float],
    text: str,
    first_message: bool,
    after_clarify: bool,
) -> bool:
    if not first_message or after_clarify or decision.judged:
        return False
    words = _WORD.findall(text)
    if len(words) > rule.max_tokens:
        return False
    if words and all(_generic(word, rule.generic_words) for word in words):
        return True
    no_cue = max(strengths.values(), default=0.0) < rule.vague_cue
    return no_cue and decision.confidence < rule.max_confidence


# Crying/laughing jamo (ㅠ, ㅋ) are not stripped: they carry a feeling.
_PUNCTUATION = " .,!?~…·:;'\"()[]-_*"


def _generic(word: str, generic: frozenset[str]) -> bool:
    folded = unicodedata.normalize("NFC", word).casefold().strip(_PUNCTUATION)
    if not folded:
        return True  # punctuation alone ("...", "?")
    if folded in generic:
        return True
    # A Korean word with its particle or ending: "질문이", "도와주세요", "있는데요".
    return any(
        folded.startswith(stem) for stem in generic if stem and "\uac00" <= stem[0] <= "\ud7a3"
    )


def _fold(text: str) -> str:
    return " ".join(unicodedata.normalize("NFC", text).casefold().split()).strip(" .!?。")


def chosen_reply(text: str, quick_replies: Sequence[str]) -> int | None:
    """The index of the quick reply the learner sent back (exactly, or its number), if any."""
    folded = _fold(text)
    for index, reply in enumerate(quick_replies):
        if folded == _fold(reply):
            return index
    if folded.isdigit() and 1 <= int(folded) <= len(quick_replies):
        return int(folded) - 1
    return None
