"""Persona routing: score every catalog persona for a learner message and pick one.

The router is generic over the `PersonaCatalog`; all persona knowledge (cue lexicons,
regexes, tone/intent/feature affinities, priors) is data in personas.yaml.

Scoring, per persona p (all additive, so every point can be explained):

    raw(p) = prior + Σ cue weights (each distinct term once; a cue inside a longer cue of any
             persona is ignored) + tone_affinity[tone] + intent_affinity[intent]
             + Σ feature_affinity[f] · feature[f] + context bonus

`scores` are the softmax of `raw` (so they lie in [0, 1] and sum to ~1 before adjustments).
Conversation context: a short, anaphoric follow-up ("그럼 그건요?", "and the second one?")
adds a bonus to the persona already talking, large enough to keep it unless the new message
carries strong cues of a different need ("I'm so stressed I want to cry").
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Protocol

from ion.domain.models import Persona, ResonanceAnalysis, RoutingDecision
from ion.domain.personas import PersonaCatalog
from ion.domain.resonance import (
    FALSE_FRIENDS,
    GatedRegex,
    GatedSet,
    Hit,
    Lexicon,
    LexiconSet,
    TextFeatures,
    analyze_detailed,
    contextualize,
    drop_false_friends,
    normalize,
    suppress_contained,
)
from ion.domain.semantic import SemanticLayer

__all__ = ["ADJUSTMENT_BOUND", "LexiconReading", "MessageRouter", "RouteResult", "Router"]

#: Largest feedback nudge applied to one persona's score (absolute, in score units).
ADJUSTMENT_BOUND = 0.1
#: Softmax temperature over raw scores (~2 raw points ≈ 4.7x odds); see docs/routing.md for
#: the calibration evidence.
_TEMPERATURE = 1.3
#: Bonus for the current persona on a clear follow-up; strong new cues (≥ ~3) still win.
_FOLLOWUP_BONUS = 2.6
#: Share of the follow-up bonus withdrawn at full emotional intensity of the new turn.
_FOLLOWUP_EMOTION_DAMPING = 0.7
#: Small stickiness for any message in an ongoing conversation (avoids ping-pong on ties).
_CONTINUITY_BONUS = 0.3
#: How many earlier user turns are replayed to infer the persona when none is given.
_HISTORY_WINDOW = 4
# Lexicon readings kept per router: a turn and its conversation need a handful; a busy
# instance's threads share them.
RECENT_READINGS = 1024

# fmt: off
_FOLLOWUP_CUES = Lexicon(
    {
        "그럼": 1.0, "그러면": 1.0, "그건": 1.0, "그거": 1.0, "그게": 0.8, "그것": 1.0,
        "그 부분": 1.0, "이건": 0.6, "이거는": 0.6, "저건": 0.8, "그래서": 0.8, "그리고": 0.6,
        "그다음": 0.8, "두 번째": 1.0, "첫 번째": 1.0, "다른 건": 0.8, "더 자세히": 1.0,
        "자세히": 0.8, "예시": 0.8, "예를 들": 0.8, "왜요": 1.0, "왜죠": 1.0, "어떻게요": 1.0,
        "무슨 뜻": 1.0, "무슨 말": 1.0, "계속": 0.6, "또": 0.4, "아하": 0.8, "아 그렇": 0.8,
        "네 그럼": 1.0, "좀 더": 0.8, "위에": 0.8, "방금": 0.8, "말씀하신": 1.0, "and the": 1.0,
        "what about": 1.0, "how about": 1.0, "and what": 1.0, "and how": 1.0, "and why": 1.0,
        "why?": 1.0, "why not": 0.8, "how so": 1.0, "more detail": 1.0, "more details": 1.0,
        "elaborate": 1.0, "example": 0.8, "go on": 1.0, "tell me more": 1.0, "that one": 1.0,
        "this one": 0.8, "the second": 1.0, "the first": 0.8, "the last": 0.8, "the other": 0.8,
        "it$": 0.5, "that$": 0.6, "those": 0.6, "then?": 1.0, "so then": 1.0, "you said": 1.0,
        "you mentioned": 1.0, "same": 0.6, "again": 0.6, "ok so": 0.6, "ok,": 0.4, "okay": 0.4,
        "also": 0.5, "what does that mean": 1.0, "meaning?": 1.0, "wait": 0.6, "hmm": 0.6,
        "really?": 0.8, "and?": 1.0,
    }
)
# fmt: on
_TOKEN_RE = re.compile(r"\S+")


@dataclass(frozen=True, slots=True)
class RouteResult:
    """A routing decision together with the resonance reading it was based on."""

    decision: RoutingDecision
    analysis: ResonanceAnalysis


class MessageRouter(Protocol):
    """What chat and the route API need from a router (`Router`, `LearnedRouter`,
    `ion.services.judge.JudgedRouter`)."""

    @property
    def catalog(self) -> PersonaCatalog: ...

    def prepare(self, texts: Sequence[str]) -> None:
        """Read the meaning of texts about to be read one by one (a message, its parts, the
        crisis detector's segments of it) in one model call; nothing without a semantic
        layer."""
        ...

    def route(
        self,
        message: str,
        *,
        history: Sequence[str] = (),
        current_persona: str | None = None,
        adjustments: Mapping[str, float] | None = None,
    ) -> RouteResult: ...

    def cue_strengths(self, message: str) -> dict[str, float]:
        """Per persona, the summed weight of its own cues in `message` (lexicon only)."""
        ...

    def route_alone(self, text: str) -> tuple[str, float]:
        """The primary persona and confidence of `text` routed on its own, with no history,
        by the local router (never a judge: no LLM call); as `route` would decide, without
        its explanation."""
        ...


@dataclass(frozen=True, slots=True)
class _CompiledPersona:
    persona: Persona
    # Each regex is gated on its required literals: most messages lack them, and a skipped
    # search is a cheap substring test instead of a scan of every position.
    patterns: tuple[tuple[GatedRegex, float, str], ...]


@dataclass(slots=True)
class _Scored:
    raw: dict[str, float]
    cues: dict[str, list[str]]
    analysis: ResonanceAnalysis
    features: TextFeatures
    # Per persona: the sum of its cue weights found in the message (no priors/affinities).
    strengths: dict[str, float]


@dataclass(frozen=True, slots=True)
class LexiconReading:
    """What the lexicon part alone says about a message in its context (for calibration)."""

    probabilities: dict[str, float]
    followup: float
    in_context: bool


@dataclass(slots=True)
class _Blend:
    scores: dict[str, float]
    lexicon: dict[str, float]
    meaning: dict[str, float] | None  # semantic probabilities, when the layer is on
    meaning_weight: float


@dataclass(frozen=True, slots=True)
class _Ranked:
    """Everything a routing pass decided, before it is explained."""

    scores: dict[str, float]
    order: list[str]
    confidence: float
    scored: _Scored
    context: str | None
    context_source: str
    followup: float
    applied: dict[str, float]
    blend: _Blend


class Router:
    """Deterministic, explainable persona router over a `PersonaCatalog`."""

    def __init__(self, catalog: PersonaCatalog, semantic: SemanticLayer | None = None) -> None:
        """Build a router over `catalog` (all routing knowledge is in its personas' traits).

        With `semantic` (sentence embeddings + a trained head) the decision is a calibrated
        blend of the lexicon scores and the head's reading of the message's meaning;
        without it, the lexicons decide alone.
        """
        self._catalog = catalog
        self._semantic = semantic
        if semantic is not None and set(semantic.labels) != set(catalog.ids):
            raise ValueError(
                f"the semantic head knows {sorted(semantic.labels)}, the catalog"
                f" {sorted(catalog.ids)}: retrain with `ion train routing`"
            )
        self._compiled = tuple(
            _CompiledPersona(
                persona=p,
                patterns=tuple(
                    (GatedRegex(re.compile(rx)), w, rx) for rx, w in p.traits.patterns.items()
                ),
            )
            for p in catalog.all()
        )
        # Every persona's regexes in catalog order, read together: one scan of the text for
        # the literals they need, then only the regexes that may match.
        flat = [
            (gate, w, source, cp.persona.id)
            for cp in self._compiled
            for gate, w, source in cp.patterns
        ]
        self._patterns = tuple((gate.pattern, w, source, owner) for gate, w, source, owner in flat)
        self._pattern_set = GatedSet([gate for gate, _w, _s, _o in flat])
        # All personas' cue lexicons (and the false friends that cancel cues) in one matcher:
        # a single pass over the text.
        self._lexicons = LexiconSet(
            [*(Lexicon(p.traits.keywords, owner=p.id) for p in catalog.all()), FALSE_FRIENDS]
        )
        # A turn reads the same text more than once (its routing, the orchestrator's cue
        # strengths, the conversation's earlier messages): the lexicon reading is pure in
        # the text, so recent readings are kept. `_score` hands out copies (context adds to
        # `raw`).
        self._read = lru_cache(maxsize=RECENT_READINGS)(self._score_uncached)

    @property
    def catalog(self) -> PersonaCatalog:
        return self._catalog

    @property
    def semantic(self) -> SemanticLayer | None:
        return self._semantic

    # --- public -------------------------------------------------------------------------

    def prepare(self, texts: Sequence[str]) -> None:
        if self._semantic is not None:
            self._semantic.prepare(texts)

    def route(
        self,
        message: str,
        *,
        history: Sequence[str] = (),
        current_persona: str | None = None,
        adjustments: Mapping[str, float] | None = None,
    ) -> RouteResult:
        """Route one learner message.

        Args:
            message: the new learner message (any text; never raises on odd input).
            history: earlier *learner* messages of the conversation, oldest first. Used
                only when `current_persona` is unknown, to infer who was talking.
            current_persona: persona that answered the previous turn, if any. Unknown ids
                are ignored.
            adjustments: per-persona additive nudges (e.g. learned from feedback). Each is
                clamped to ±`ADJUSTMENT_BOUND` (0.1) and added to that persona's final score
                (then clipped to [0, 1]), so it can only tip close calls, never override a
                clear decision. Unknown ids and non-finite values are ignored.

        Returns:
            `RouteResult` with scores for every catalog persona in [0, 1], the primary and
            secondary persona, a confidence in [0, 1] and a human-readable reason.
        """
        ranked = self._ranked(message, history, current_persona, adjustments)
        primary, secondary = ranked.order[0], ranked.order[1] if len(ranked.order) > 1 else None
        reason = self._reason(
            primary,
            secondary,
            ranked.scored,
            ranked.context,
            ranked.context_source,
            ranked.followup,
            ranked.applied,
            ranked.blend,
        )
        decision = RoutingDecision(
            primary=primary,
            secondary=secondary,
            confidence=ranked.confidence,
            scores={pid: round(ranked.scores[pid], 4) for pid in self._catalog.ids},
            reason=reason,
        )
        return RouteResult(decision=decision, analysis=ranked.scored.analysis)

    def route_alone(self, text: str) -> tuple[str, float]:
        ranked = self._ranked(text, (), None, None)
        return ranked.order[0], ranked.confidence

    def _adjustments(
        self, message: str, adjustments: Mapping[str, float] | None
    ) -> Mapping[str, float] | None:
        """The nudges routing `message` adds to its scores (a subclass adds its own)."""
        return adjustments

    def _ranked(
        self,
        message: str,
        history: Sequence[str],
        current_persona: str | None,
        adjustments: Mapping[str, float] | None,
    ) -> _Ranked:
        context = current_persona if current_persona in self._catalog else None
        context_source = "current persona"
        if context is None and history:
            context = self._infer_from_history(history)
            context_source = "conversation so far"

        scored = self._score(message)
        followup = 0.0
        if context is not None:
            followup = self._apply_context(scored, context)

        blend = self._blend(message, scored, context is not None, followup)
        scores = dict(blend.scores)
        applied: dict[str, float] = {}
        adjustments = self._adjustments(message, adjustments)
        if adjustments:
            for pid, nudge in adjustments.items():
                if pid in scores and math.isfinite(nudge) and nudge != 0.0:
                    delta = max(-ADJUSTMENT_BOUND, min(ADJUSTMENT_BOUND, float(nudge)))
                    scores[pid] = min(1.0, max(0.0, scores[pid] + delta))
                    applied[pid] = delta

        order = self._rank(scores, scored.raw)
        top = scores[order[0]]
        second = scores[order[1]] if len(order) > 1 else 0.0
        # Confidence blends the winning probability with its margin over the runner-up.
        confidence = round(min(1.0, max(0.0, 0.5 * top + 0.5 * (top - second))), 3)
        return _Ranked(
            scores, order, confidence, scored, context, context_source, followup, applied, blend
        )

    def resonance(self, message: str) -> ResonanceAnalysis:
        """The message's resonance reading, as `route` reads it (kept for recent texts)."""
        return self._read(message).analysis

    def lexicon_reading(
        self, message: str, *, history: Sequence[str] = (), current_persona: str | None = None
    ) -> LexiconReading:
        """The lexicon part's probabilities and follow-up strength, before any blending."""
        context = current_persona if current_persona in self._catalog else None
        if context is None and history:
            context = self._infer_from_history(history)
        scored = self._score(message)
        followup = self._apply_context(scored, context) if context is not None else 0.0
        return LexiconReading(_softmax(scored.raw), followup, context is not None)

    def cue_strengths(self, message: str) -> dict[str, float]:
        """Per persona, the summed weight of its own cues in `message` (keywords and patterns
        only: no prior, no tone/intent affinity, no context). On the catalog's weight scale
        (~3 decisive, ~2 strong), so "two strong needs" is a threshold in the catalog."""
        return dict(self._score(message).strengths)

    # --- scoring ------------------------------------------------------------------------

    def _blend(self, message: str, scored: _Scored, in_context: bool, followup: float) -> _Blend:
        """Lexicon probabilities, blended with the semantic head's when the layer is on.

        blended logit(p) = a·log P_lexicon(p) + w·log P_meaning(p), with a and b calibrated
        by `ion train routing` (cross-writer, out of fold) and w = b, or b·(1 − follow-up
        strength) inside a conversation: a short follow-up leans on the conversation, which
        the lexicon part's context bonus carries; a new need leans on its meaning.
        """
        lexicon = _softmax(scored.raw)
        if self._semantic is None:
            return _Blend(lexicon, lexicon, None, 0.0)
        meaning_logp = self._semantic.log_proba([message])[0]
        a = self._semantic.param("lexicon_weight", 1.0)
        b = self._semantic.param("semantic_weight", 1.0)
        weight = b * (1.0 - followup) if in_context else b
        logits = {
            pid: a * math.log(max(lexicon[pid], 1e-9)) + weight * meaning_logp.get(pid, -20.7)
            for pid in lexicon
        }
        meaning = {pid: math.exp(meaning_logp.get(pid, -20.7)) for pid in lexicon}
        return _Blend(_softmax(logits, 1.0), lexicon, meaning, weight)

    def _score(self, message: str) -> _Scored:
        scored = self._read(message)
        return replace(scored, raw=dict(scored.raw))

    def _score_uncached(self, message: str) -> _Scored:
        analysis, features = analyze_detailed(message)
        text = features.text
        key = analysis.key

        hits = drop_false_friends(self._lexicons.scan(text))
        pattern_hits: list[Hit] = []
        for index in self._pattern_set.candidates(text):
            pattern, weight, source, owner = self._patterns[index]
            m = pattern.search(text)
            if m is not None and m.end() > m.start():
                label = m.group(0).strip()[:24] or source[:24]
                pattern_hits.append(Hit(label, weight, m.start(), m.end(), owner))

        raw: dict[str, float] = {}
        cues: dict[str, list[str]] = {}
        strengths: dict[str, float] = {}
        per_owner: dict[str, dict[str, float]] = {cp.persona.id: {} for cp in self._compiled}
        # Only literal cues shadow each other; regex matches can be long and would swallow
        # unrelated keywords, so they are added on top.
        for h in contextualize(text, [*suppress_contained(hits), *pattern_hits]):
            per_owner[h.owner].setdefault(h.term, h.weight)

        for cp in self._compiled:
            t = cp.persona.traits
            found = per_owner[cp.persona.id]
            strengths[cp.persona.id] = sum(found.values())
            score = t.prior + strengths[cp.persona.id]
            score += t.tone_affinity.get(key.tone, 0.0)
            score += t.intent_affinity.get(key.intent, 0.0)
            for name, weight in t.feature_affinity.items():
                score += weight * features.values.get(name, 0.0)
            raw[cp.persona.id] = score
            # Strongest cues first, for the explanation.
            cues[cp.persona.id] = [
                term for term, w in sorted(found.items(), key=lambda kv: -kv[1]) if w > 0
            ]
        return _Scored(raw, cues, analysis, features, strengths)

    def _followup_strength(self, scored: _Scored) -> float:
        """0..1: how much the message reads as a continuation of the previous turn."""
        text = scored.features.text
        if not text:
            return 1.0  # nothing new was said; keep the current persona
        tokens = len(_TOKEN_RE.findall(text))
        anaphora = sum({h.term: h.weight for h in _FOLLOWUP_CUES.scan(text)}.values())
        short = tokens <= 4 or len(text) <= 14
        medium = tokens <= 9 or len(text) <= 30
        if short:
            return 1.0 if anaphora or tokens <= 3 else 0.8
        if medium and anaphora:
            return 0.8
        if medium:
            return 0.4
        return 0.3 if anaphora >= 1.0 else 0.0

    def _apply_context(self, scored: _Scored, context: str) -> float:
        """Add the continuity/follow-up bonus for `context`; returns the follow-up strength."""
        followup = self._followup_strength(scored)
        # An emotional turn is a new need, not a continuation of the explanation.
        followup *= 1.0 - _FOLLOWUP_EMOTION_DAMPING * scored.analysis.emotion_intensity
        scored.raw[context] += _CONTINUITY_BONUS + _FOLLOWUP_BONUS * followup
        return followup

    def _infer_from_history(self, history: Sequence[str]) -> str | None:
        current: str | None = None
        for turn in list(history)[-_HISTORY_WINDOW:]:
            if not normalize(turn):
                continue
            scored = self._score(turn)
            followup = self._apply_context(scored, current) if current is not None else 0.0
            blend = self._blend(turn, scored, current is not None, followup)
            current = self._rank(blend.scores, scored.raw)[0]
        return current

    def _rank(self, scores: Mapping[str, float], raw: Mapping[str, float]) -> list[str]:
        # Deterministic: score, then raw score, then catalog order.
        index = {pid: i for i, pid in enumerate(self._catalog.ids)}
        return sorted(scores, key=lambda pid: (-scores[pid], -raw[pid], index[pid]))

    # --- explanation --------------------------------------------------------------------

    def _reason(
        self,
        primary: str,
        secondary: str | None,
        scored: _Scored,
        context: str | None,
        context_source: str,
        followup: float,
        applied: Mapping[str, float],
        blend: _Blend,
    ) -> str:
        p = self._catalog.require(primary)
        key = scored.analysis.key
        cues = scored.cues[primary]
        label = p.traits.cue_label or "cues"
        parts: list[str] = []
        if cues:
            parts.append(f"{p.name}: {label} ({_quote(cues)})")
        else:
            parts.append(f"{p.name}: no decisive cues")
        parts.append(f"tone={key.tone.value}, intent={key.intent.value}")
        intensity = scored.analysis.emotion_intensity
        if intensity >= 0.5:
            parts.append(f"emotion {intensity:.2f}")
        if context is not None and followup >= 0.4:
            ctx = self._catalog.require(context)
            if context == primary:
                parts.append(f"follow-up stays with {ctx.name} ({context_source})")
            else:
                parts.append(f"new need outweighs follow-up with {ctx.name} ({context_source})")
        if secondary is not None:
            s = self._catalog.require(secondary)
            s_cues = scored.cues[secondary]
            s_label = s.traits.cue_label or "cues"
            tail = f" ({s_label} {_quote(s_cues, 2)})" if s_cues else ""
            parts.append(f"secondary → {s.name}{tail}")
        meaning = blend.meaning
        if meaning is not None:
            lex_top = max(blend.lexicon, key=blend.lexicon.__getitem__)
            mean_top = max(meaning, key=meaning.__getitem__)
            parts.append(
                f"blend: meaning → {mean_top} {meaning[mean_top]:.2f}"
                f" (weight {blend.meaning_weight:.2f}), lexicon → {lex_top}"
                f" {blend.lexicon[lex_top]:.2f}"
            )
        if applied:
            nudges = ", ".join(f"{k}{v:+.2f}" for k, v in sorted(applied.items()))
            parts.append(f"feedback nudges {nudges}")
        return "; ".join(parts)


def _quote(terms: Sequence[str], limit: int = 3) -> str:
    return ", ".join(f"'{t}'" for t in terms[:limit])


def _softmax(raw: Mapping[str, float], temperature: float = _TEMPERATURE) -> dict[str, float]:
    top = max(raw.values())
    exps = {k: math.exp((v - top) / temperature) for k, v in raw.items()}
    total = sum(exps.values())
    return {k: v / total for k, v in exps.items()}
