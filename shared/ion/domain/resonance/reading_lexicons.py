"""The reading lexicons (reading_lexicons.yaml), loaded and validated once per process.

The file goes through the persona catalog's YAML loader (duplicate keys are errors) and is
checked strictly: unknown or missing sections, unknown tones or intents, a tone or intent
the reading needs but the file lacks, weights that are not finite numbers within ±10, terms
listed twice. Every problem raises `LexiconFileError` naming the file and the entry.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from ion.domain.models import Intent, Tone
from ion.domain.resonance.lexicon import Lexicon, LexiconSet, normalize
from ion.domain.yaml_data import parse_yaml
from ion.errors import ConfigurationError

__all__ = [
    "LexiconFileError",
    "ReadingLexicons",
    "default_lexicons_path",
    "load_reading_lexicons",
    "reading_lexicons_from_yaml",
]

_VERSION = 1
_MAX_WEIGHT = 10.0
# The reading falls back to these from the form of a message, so they need no cues.
_FALLBACK_TONES = frozenset({Tone.CALM})
_FALLBACK_INTENTS = frozenset({Intent.INQUIRY, Intent.STATEMENT})
_SECTIONS = ("version", "tone", "intent", "emotion", "reflective", "false_friends")


class LexiconFileError(ConfigurationError):
    """The reading lexicon file is missing or invalid."""


@dataclass(frozen=True)
class ReadingLexicons:
    """The lexicons of the reading, and one matcher over all of them."""

    tone: Mapping[Tone, Lexicon]  # file order: the first listed wins a tie
    intent: Mapping[Intent, Lexicon]  # file order, likewise
    emotion: Lexicon
    reflective: Lexicon
    false_friends: Lexicon
    # Every reading lexicon in one matcher: one pass over the text per message.
    matcher: LexiconSet


def default_lexicons_path() -> Path:
    return Path(__file__).with_name("reading_lexicons.yaml")


@lru_cache(maxsize=4)
def load_reading_lexicons(path: Path | None = None) -> ReadingLexicons:
    """The lexicons in `path` (default: the packaged file); parsed once per path."""
    source = path or default_lexicons_path()
    try:
        text = source.read_text(encoding="utf-8")
    except OSError as exc:
        raise LexiconFileError(f"cannot read reading lexicons {source}: {exc}") from exc
    return reading_lexicons_from_yaml(text, source=str(source))


def reading_lexicons_from_yaml(text: str, *, source: str = "<string>") -> ReadingLexicons:
    data = parse_yaml(text, source=source, error=LexiconFileError)
    try:
        return _build(data)
    except ValueError as exc:
        raise LexiconFileError(f"{source}: invalid reading lexicons: {exc}") from exc


def _build(data: Any) -> ReadingLexicons:
    if not isinstance(data, dict):
        raise ValueError(f"expected a mapping with the sections {list(_SECTIONS)}")
    unknown = [str(k) for k in data if k not in _SECTIONS]
    missing = [k for k in _SECTIONS if k not in data]
    if unknown or missing:
        problems = [f"unknown section(s) {unknown}"] if unknown else []
        problems += [f"missing section(s) {missing}"] if missing else []
        raise ValueError(f"{'; '.join(problems)}; expected {list(_SECTIONS)}")
    if data["version"] != _VERSION:
        raise ValueError(f"version {data['version']!r} is not supported (only {_VERSION})")
    tone = {
        Tone(name): _lexicon(entries, f"tone.{name}", owner=f"tone:{name}")
        for name, entries in _named_sections(data["tone"], "tone", Tone, _FALLBACK_TONES)
    }
    intent = {
        Intent(name): _lexicon(entries, f"intent.{name}", owner=f"intent:{name}")
        for name, entries in _named_sections(data["intent"], "intent", Intent, _FALLBACK_INTENTS)
    }
    emotion = _lexicon(data["emotion"], "emotion", owner="emotion")
    reflective = _lexicon(data["reflective"], "reflective", owner="reflective")
    false_friends = _lexicon(
        _false_friend_entries(data["false_friends"]), "false_friends", owner=""
    )
    matcher = LexiconSet([*tone.values(), *intent.values(), emotion, reflective, false_friends])
    return ReadingLexicons(tone, intent, emotion, reflective, false_friends, matcher)


def _named_sections(
    section: Any, what: str, kinds: type[Tone] | type[Intent], fallbacks: frozenset[Any]
) -> list[tuple[str, Any]]:
    """`section`'s (name, entries) pairs in file order; every name is one of `kinds`."""
    if not isinstance(section, dict):
        raise ValueError(f"{what}: expected a mapping of {what} names to terms")
    known = [k.value for k in kinds]
    unknown = [str(name) for name in section if name not in known]
    if unknown:
        raise ValueError(f"{what}: unknown {what}(s) {unknown}; known: {known}")
    needed = [k.value for k in kinds if k not in fallbacks and k.value not in section]
    if needed:
        raise ValueError(f"{what}: the reading needs cues for {needed}")
    return list(section.items())


def _false_friend_entries(section: Any) -> dict[str, float]:
    if not isinstance(section, list) or not section:
        raise ValueError("false_friends: expected a non-empty list of terms")
    for term in section:
        if not isinstance(term, str):
            raise ValueError(f"false_friends: term {term!r} is not a string")
    # No weight: a false friend only cancels the cues inside it.
    return dict.fromkeys(section, 0.0)


def _lexicon(entries: Any, where: str, owner: str) -> Lexicon:
    if not isinstance(entries, dict) or not entries:
        raise ValueError(f"{where}: expected a non-empty mapping of terms to weights")
    seen: dict[str, str] = {}
    for term, weight in entries.items():
        if not isinstance(term, str):
            raise ValueError(f"{where}: term {term!r} is not a string (quote it)")
        if isinstance(weight, bool) or not isinstance(weight, int | float):
            raise ValueError(f"{where}: weight of {term!r} is not a number: {weight!r}")
        if not math.isfinite(weight) or abs(weight) > _MAX_WEIGHT:
            raise ValueError(
                f"{where}: weight of {term!r} must be finite and within ±{_MAX_WEIGHT}"
            )
        # "Plan" and "plan", or "^불안" and "불안", would count one occurrence twice.
        key = normalize(term.strip().removeprefix("^").removesuffix("$"))
        if key in seen:
            raise ValueError(f"{where}: {term!r} repeats {seen[key]!r}")
        seen[key] = term
    try:
        return Lexicon(entries, owner)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from exc
