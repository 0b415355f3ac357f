"""Crisis detection: runs on every learner message, before routing and before any cache.

Three kinds of evidence, combined so that recall comes first (docs/safety.md):

* **signals** (`safety.yaml`): precise phrasings of suicidal ideation, plans, goodbyes and
  self-harm, in Korean and English. A signal is a crisis on its own, unless the message is
  plainly *about* the topic (a friend, a paper, a game): then it counts as a weak signal.
* **weak signals**: goodbyes, giving things away, "I picked a date": a crisis after earlier
  distress in the conversation, or when the embedding model also leans towards crisis.
* **the embedding model**: a small trained head over multilingual sentence embeddings
  (`ion train safety`), for what no phrase list catches. It fires on its own above a
  calibrated threshold, unless the message is everyday language that shares words with
  crisis language (the Korean intensifier 죽겠다, "kill the process", "I'm dead 😂"), and
  at a lower threshold after earlier distress.

Korean verb stems are matched on decomposed (NFD) text, so the stem 뛰어내리 also matches
뛰어내릴까 and 뛰어내려: a Hangul syllable with a final consonant is the open syllable
plus one more jamo.
"""

from __future__ import annotations

import math
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import yaml

from ion.domain.semantic import SemanticLayer
from ion.errors import ConfigurationError

__all__ = ["CrisisDetector", "CrisisRules", "SafetyAssessment", "load_rules"]

#: Defaults when no trained head says otherwise (see `ion train safety`).
DEFAULT_THRESHOLD = 0.5
DEFAULT_CONTEXT_THRESHOLD = 0.3
DEFAULT_WEAK_THRESHOLD = 0.15
DEFAULT_DISTRESS_THRESHOLD = 0.5
#: Earlier learner turns looked at for distress.
CONTEXT_TURNS = 4
#: The model alone never fires on a text shorter than this (non-space characters): a
#: greeting or an "ok" has no meaning to read, and short crisis statements are phrases the
#: signals know. After earlier distress, short messages count (see `verdict`).
MIN_MODEL_CHARS = 12


@dataclass(frozen=True, slots=True)
class SafetyAssessment:
    """The detector's verdict on one message; `reasons` name rule families, never text."""

    crisis: bool
    score: float
    reasons: tuple[str, ...] = ()


def _fold(text: str) -> str:
    return unicodedata.normalize("NFD", unicodedata.normalize("NFC", text).casefold())


#: (signal family, weak-signal family, guard family) found in a text, or None each; the
#: guard is "short" for a text too short for the model to read alone.
RuleReading = tuple[str | None, str | None, str | None]


@dataclass(frozen=True)
class CrisisRules:
    signals: tuple[tuple[str, re.Pattern[str]], ...]
    weak_signals: tuple[tuple[str, re.Pattern[str]], ...]
    guards: tuple[tuple[str, re.Pattern[str]], ...]
    discussion: tuple[re.Pattern[str], ...]

    @staticmethod
    def _first(patterns: Sequence[tuple[str, re.Pattern[str]]], text: str) -> str | None:
        for family, pattern in patterns:
            if pattern.search(text):
                return family
        return None

    def read(self, text: str) -> RuleReading:
        """(signal family, weak-signal family, guard family) found in `text`, or None each."""
        folded = _fold(text)
        signal = self._first(self.signals, folded)
        weak = self._first(self.weak_signals, folded)
        if signal is not None and any(p.search(folded) for p in self.discussion):
            signal, weak = None, weak or f"{signal} (discussed)"
        guard = self._first(self.guards, folded)
        if guard is None and len("".join(text.split())) < MIN_MODEL_CHARS:
            guard = "short"
        return signal, weak, guard


def _compile(groups: object, where: str) -> tuple[tuple[str, re.Pattern[str]], ...]:
    if not isinstance(groups, dict):
        raise ConfigurationError(f"safety rules: '{where}' must map family names to lists")
    out = []
    for family, patterns in groups.items():
        if not isinstance(patterns, list) or not all(isinstance(p, str) for p in patterns):
            raise ConfigurationError(f"safety rules: {where}.{family} must be a list of regexes")
        for source in patterns:
            try:
                out.append((str(family), re.compile(_fold(source))))
            except re.error as exc:
                raise ConfigurationError(f"safety rules: {where}.{family}: {exc}") from exc
    return tuple(out)


def default_rules_path() -> Path:
    return Path(__file__).with_name("safety.yaml")


@lru_cache(maxsize=4)
def load_rules(path: Path | None = None) -> CrisisRules:
    source = path or default_rules_path()
    try:
        data = yaml.safe_load(source.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigurationError(f"cannot read safety rules {source}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigurationError(f"safety rules {source}: expected a mapping")
    guards = dict(data.get("guards", {}))
    discussion = guards.pop("discussion", [])
    return CrisisRules(
        signals=_compile(data.get("signals", {}), "signals"),
        weak_signals=_compile(data.get("weak_signals", {}), "weak_signals"),
        guards=_compile(guards, "guards"),
        discussion=tuple(p for _, p in _compile({"discussion": discussion}, "guards")),
    )


class CrisisDetector:
    """Rules + (optionally) the trained embedding head + conversation context."""

    def __init__(
        self,
        rules: CrisisRules,
        semantic: SemanticLayer | None = None,
        *,
        thresholds: tuple[float, float, float, float] | None = None,
    ) -> None:
        self._rules = rules
        self._semantic = semantic
        if semantic is not None and "crisis" not in semantic.labels:
            raise ValueError("the safety head has no 'crisis' label")
        param = semantic.param if semantic is not None else (lambda _n, d: d)
        self.threshold = param("threshold", DEFAULT_THRESHOLD)
        self.context_threshold = param("context_threshold", DEFAULT_CONTEXT_THRESHOLD)
        self.weak_threshold = param("weak_threshold", DEFAULT_WEAK_THRESHOLD)
        # An earlier message this likely a crisis makes the conversation one of distress.
        self.distress_threshold = param("distress_threshold", DEFAULT_DISTRESS_THRESHOLD)
        if thresholds is not None:  # calibration tries candidates on out-of-fold scores
            (
                self.threshold,
                self.context_threshold,
                self.weak_threshold,
                self.distress_threshold,
            ) = thresholds

    @property
    def rules(self) -> CrisisRules:
        return self._rules

    @property
    def uses_model(self) -> bool:
        return self._semantic is not None

    def _probabilities(self, texts: Sequence[str]) -> list[float]:
        if self._semantic is None:
            return [0.0] * len(texts)
        return [math.exp(row["crisis"]) for row in self._semantic.log_proba(texts)]

    def assess(self, message: str, history: Sequence[str] = ()) -> SafetyAssessment:
        """Assess `message`, given the learner's earlier messages (oldest first)."""
        earlier = [t for t in history if t.strip()][-CONTEXT_TURNS:]
        probabilities = self._probabilities([*earlier, message])
        return self.decide(message, earlier, probabilities)

    def decide(
        self, message: str, earlier: Sequence[str], probabilities: Sequence[float]
    ) -> SafetyAssessment:
        """The verdict from the rules and given model probabilities (earlier..., message)."""
        return self.verdict(
            self._rules.read(message), [self._rules.read(t) for t in earlier], probabilities
        )

    def verdict(
        self,
        message: RuleReading,
        earlier: Sequence[RuleReading],
        probabilities: Sequence[float],
    ) -> SafetyAssessment:
        """The verdict from rule readings and model probabilities (earlier..., message)."""
        p = probabilities[-1]
        distress = any(
            signal is not None or (guard is None and prob >= self.distress_threshold)
            for (signal, _weak, guard), prob in zip(earlier, probabilities, strict=False)
        )
        signal, weak, guard = message
        reasons: list[str] = []
        if signal is not None:
            reasons.append(f"signal:{signal}")
        if weak is not None and (distress or p >= self.weak_threshold):
            reasons.append(f"weak:{weak}" + (" after distress" if distress else ""))
        if guard is None and p >= self.threshold:
            reasons.append("model")
        if distress and p >= self.context_threshold:
            reasons.append("model after distress")
        score = 1.0 if signal is not None else p
        return SafetyAssessment(crisis=bool(reasons), score=round(score, 4), reasons=tuple(reasons))
