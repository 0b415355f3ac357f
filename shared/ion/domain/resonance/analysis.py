"""The reading of one message: language, emotional intensity, tone, pace and intent.

One function per dimension, each returning its value and the evidence that explains it; the
numeric `TextFeatures` the router combines with each persona's catalog traits come along.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from ion.domain.models import Intent, Pace, ResonanceAnalysis, ResonanceKey, Tone
from ion.domain.resonance.cue_context import contextualize, drop_false_friends
from ion.domain.resonance.lexicon import Hit, clip, normalize, suppress_contained
from ion.domain.resonance.reading_lexicons import load_reading_lexicons
from ion.domain.resonance.surface_cues import SurfaceCues, read_surface_cues

__all__ = ["FEATURE_NAMES", "TextFeatures", "analyze", "analyze_detailed"]

_LEXICONS = load_reading_lexicons()

# Names a persona's `feature_affinity` may reference (validated when the catalog loads).
FEATURE_NAMES: tuple[str, ...] = (
    "emotion_intensity",
    "metrics",
    "number_comparison",
    "timeframe",
    "code",
    "question",
    "laughter",
    "crying",
    "celebration",
    "exclamation",
    "long_text",
    "numbers",
    "short_text",
)


@dataclass(frozen=True, slots=True)
class TextFeatures:
    """Normalised text plus numeric cues in [0, 1] (keys = `FEATURE_NAMES`)."""

    text: str
    values: Mapping[str, float]
    words: int
    evidence: tuple[str, ...]


# Reading cue hits grouped by the lexicon that found them (`Lexicon.owner`).
_HitsByOwner = Mapping[str, Sequence[Hit]]


def _squash(x: float, scale: float = 1.0) -> float:
    """Map [0, inf) onto [0, 1) smoothly."""
    return 1.0 - math.exp(-max(x, 0.0) / scale)


def _short(cues: Iterable[str], limit: int = 3) -> str:
    return ", ".join(f"'{c}'" for c in list(cues)[:limit])


def _sum_unique(hits: Iterable[Hit]) -> tuple[float, list[str]]:
    """Sum each term's weight once, however often it occurs."""
    seen: dict[str, float] = {}
    for h in hits:
        seen.setdefault(h.term, h.weight)
    return sum(seen.values()), list(seen)


def _cue_score(hits: Sequence[Hit]) -> tuple[float, list[str]]:
    """`_sum_unique` of the hits not inside a longer hit (a phrase overrides its stem)."""
    if not hits:  # most lexicons find nothing in a message: skip the sort
        return 0.0, []
    return _sum_unique(suppress_contained(hits))


def _reading_hits(norm: str) -> _HitsByOwner:
    """The reading lexicons' cues in `norm`, in context, grouped by lexicon."""
    by_owner: dict[str, list[Hit]] = {}
    for h in contextualize(norm, drop_false_friends(_LEXICONS.matcher.scan(norm))):
        by_owner.setdefault(h.owner, []).append(h)
    return by_owner


def _read_emotion(cues: SurfaceCues, hits: _HitsByOwner) -> tuple[float, list[str]]:
    """Emotional intensity in [0, 1): feeling words, crying, exclamations, shouting."""
    emo_sum, emo_terms = _cue_score(hits.get(_LEXICONS.emotion.owner, ()))
    emo_raw = (
        emo_sum
        + 0.25 * min(cues.cries, 2)
        + 0.15 * min(cues.exclaim_runs, 2)
        + 0.1 * min(cues.shouted_words, 2)
    )
    emo_raw += 0.3 * min(cues.celebrations, 2)
    evidence = []
    if emo_terms:
        evidence.append(f"emotion cues {_short(emo_terms)}")
    if cues.cries:
        evidence.append("crying marks (ㅠㅠ/😭)")
    if cues.laughs:
        evidence.append("laughter (ㅋㅋ/lol)")
    if cues.celebrations:
        evidence.append("celebration marks")
    return round(_squash(emo_raw, 1.0), 3), evidence


def _read_tone(cues: SurfaceCues, hits: _HitsByOwner) -> tuple[Tone, str]:
    """The tone with the most cue weight (marks count too); calm, or curious for a question,
    when no tone reaches 0.5."""
    tone_scores: dict[Tone, float] = {}
    tone_terms: dict[Tone, list[str]] = {}
    for tone, lex in _LEXICONS.tone.items():
        tone_scores[tone], tone_terms[tone] = _cue_score(hits.get(lex.owner, ()))
    tone_scores[Tone.PLAYFUL] += 0.8 * min(cues.laughs, 2)
    tone_scores[Tone.ANALYTICAL] += 0.7 * min(cues.metrics, 3) + cues.number_comparison
    tone_scores[Tone.URGENT] += 0.5 * min(cues.exclaim_runs, 2) + 0.3 * min(cues.shouted_words, 2)
    tone_scores[Tone.ANXIOUS] += 0.3 * min(cues.cries, 2)
    tone_scores[Tone.FRUSTRATED] += 0.2 * min(cues.cries, 2)
    best_tone = max(tone_scores, key=lambda t: tone_scores[t])  # dict order breaks ties
    if tone_scores[best_tone] < 0.5:
        tone = Tone.CURIOUS if cues.is_question else Tone.CALM
        return tone, f"tone {tone.value} (no strong tone cue)"
    terms = tone_terms[best_tone]
    return best_tone, f"tone {best_tone.value}" + (f" from {_short(terms)}" if terms else "")


def _read_pace(cues: SurfaceCues, hits: _HitsByOwner) -> tuple[Pace, str]:
    """Burst for short excited bursts, contemplative for long reflective or many-sentence
    texts, flowing for long run-on texts, medium otherwise."""
    reflective, _ = _sum_unique(hits.get(_LEXICONS.reflective.owner, ()))
    words, chars, sentences = cues.words, cues.chars, cues.sentences
    if chars == 0:
        pace = Pace.MEDIUM
    elif (
        (cues.laughs or cues.exclaim_runs or cues.shouted_words or cues.celebrations)
        and words <= 15
    ) or (words <= 3 and chars <= 12 and (cues.exclaims or cues.has_question_mark or cues.cries)):
        pace = Pace.BURST
    elif chars >= 60 and (reflective >= 1.0 or cues.ellipses >= 1) and cues.exclaim_runs == 0:
        pace = Pace.CONTEMPLATIVE
    elif chars >= 140 and (cues.commas >= 3 or sentences <= 2):
        pace = Pace.FLOWING
    elif sentences >= 4 and chars >= 120:
        pace = Pace.CONTEMPLATIVE
    else:
        pace = Pace.MEDIUM
    return pace, f"pace {pace.value} ({words} words, {sentences} sentence(s))"


def _read_intent(cues: SurfaceCues, hits: _HitsByOwner, intensity: float) -> tuple[Intent, str]:
    """The intent with the most cue weight (at least 1.0); else inquiry for a question,
    expressive for an emotional statement, statement otherwise."""
    intent_scores: dict[Intent, float] = {}
    intent_terms: dict[Intent, list[str]] = {}
    for intent, lex in _LEXICONS.intent.items():
        intent_scores[intent], intent_terms[intent] = _cue_score(hits.get(lex.owner, ()))
    intent_scores[Intent.PLANNING] += 0.5 * cues.timeframe
    intent_scores[Intent.EXPRESSIVE] += 2.0 * intensity + 0.4 * min(cues.laughs + cues.cries, 2)
    if cues.is_question:
        # A question about one's feelings is still expressive; dampen rather than erase.
        intent_scores[Intent.EXPRESSIVE] *= 0.6
    best_intent = max(intent_scores, key=lambda i: intent_scores[i])
    if intent_scores[best_intent] >= 1.0:
        terms = intent_terms[best_intent]
        return best_intent, f"intent {best_intent.value}" + (
            f" from {_short(terms)}" if terms else ""
        )
    if cues.is_question or cues.has_question_word:
        return Intent.INQUIRY, "intent inquiry (question form)"
    if intent_scores[Intent.EXPRESSIVE] >= 0.6:
        return Intent.EXPRESSIVE, "intent expressive (emotional statement)"
    return Intent.STATEMENT, "intent statement"


def _measure_evidence(cues: SurfaceCues) -> list[str]:
    evidence = []
    if cues.metrics:
        evidence.append(f"{cues.metrics} measured value(s)")
    if cues.code:
        evidence.append("code or error text")
    return evidence


def _feature_values(cues: SurfaceCues, intensity: float) -> dict[str, float]:
    chars = cues.chars
    return {
        "emotion_intensity": intensity,
        "metrics": round(_squash(cues.metrics, 1.5), 3),
        "number_comparison": cues.number_comparison,
        "timeframe": cues.timeframe,
        "code": cues.code,
        "question": 1.0 if cues.is_question else 0.0,
        "laughter": min(cues.laughs, 2) / 2.0,
        "crying": min(cues.cries, 2) / 2.0,
        "celebration": min(cues.celebrations, 2) / 2.0,
        "exclamation": min(cues.exclaims, 4) / 4.0,
        "long_text": min(max(chars - 80, 0) / 200.0, 1.0),
        "short_text": 1.0 if 0 < chars <= 20 else 0.0,
        "numbers": min(max(cues.numbers - 1, 0), 3) / 3.0,
    }


def analyze_detailed(text: str) -> tuple[ResonanceAnalysis, TextFeatures]:
    """Analyse `text` and also return the numeric features the router needs."""
    raw = clip(text)
    norm = normalize(raw)
    cues = read_surface_cues(raw, norm)
    hits = _reading_hits(norm)
    intensity, emotion_evidence = _read_emotion(cues, hits)
    tone, tone_evidence = _read_tone(cues, hits)
    pace, pace_evidence = _read_pace(cues, hits)
    intent, intent_evidence = _read_intent(cues, hits, intensity)
    evidence = (
        *emotion_evidence,
        tone_evidence,
        pace_evidence,
        intent_evidence,
        *_measure_evidence(cues),
    )
    analysis = ResonanceAnalysis(
        key=ResonanceKey(tone=tone, pace=pace, intent=intent),
        language=cues.language,
        emotion_intensity=intensity,
        evidence=evidence,
    )
    return analysis, TextFeatures(norm, _feature_values(cues, intensity), cues.words, evidence)


def analyze(text: str) -> ResonanceAnalysis:
    """Read tone, pace, intent, language and emotional intensity from one learner message.

    Deterministic; never raises on odd input (empty, emoji-only, jamo-only, huge text).
    Text without any letters is reported as English.
    """
    return analyze_detailed(text)[0]
