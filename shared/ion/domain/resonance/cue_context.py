"""Rules on a cue's surroundings: false friends, negation, exclusion, mention and hedging.

A cue's weight depends on the words around it: "not anxious" is no feeling, "설명 들어도"
names an explanation already tried, "kinda annoying" is mild. These rules apply to the
reading cues and to the persona catalog's cues alike.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ion.domain.resonance.gated_regex import GatedRegex
from ion.domain.resonance.lexicon import Hit, is_hangul
from ion.domain.resonance.reading_lexicons import load_reading_lexicons

__all__ = [
    "FALSE_FRIENDS",
    "HEDGE_FACTOR",
    "MENTION_FACTOR",
    "contextualize",
    "cue_context_factor",
    "drop_false_friends",
]

# Words and phrases that contain a cue but mean something else (reading_lexicons.yaml).
FALSE_FRIENDS = load_reading_lexicons().false_friends


def drop_false_friends(hits: Iterable[Hit]) -> list[Hit]:
    """Remove `FALSE_FRIENDS` hits and every cue lying strictly inside one of them.

    A cue spanning exactly the same text as a false friend (a persona that lists "stress
    test" itself) is kept.
    """
    listed = list(hits)
    spans = [(h.start, h.end) for h in listed if h.owner == FALSE_FRIENDS.owner]
    if not spans:
        return listed
    return [
        h
        for h in listed
        if h.owner != FALSE_FRIENDS.owner
        and not any(s <= h.start and h.end <= e and (s, e) != (h.start, h.end) for s, e in spans)
    ]


# Negated cues ("not anxious", "불안하진 않아요", "안 급해요") say the feeling or need is
# absent, so they are dropped. Only plain negation counts: inability ("can't sleep",
# "can't decide") is usually the problem itself and stays a cue.
_NEG_BEFORE_EN_RE = re.compile(
    r"(?:\b(?:not|never)|\b(?:do|does|did|is|are|was|were|am)n'?t|\bno longer)\s+"
    r"(?:(?:really|that|too|very|so|even|super|particularly|actually|exactly|feeling|feel"
    r"|being|at all|all that)\s+)?$"
)
_NEG_BEFORE_KO_RE = re.compile(r"(?:^|\s)(?:별로 |전혀 |하나도 )?안\s?$")
_NEG_AFTER_KO_RE = re.compile(
    r"^[가-힣]{0,3}?\s?(?:지|진|지는)\s?않|^[가-힣]{0,2}\s?(?:건|게|것은|거는)\s?아니"
)
# A cue that is only *mentioned* ("설명 들어도 모르겠어요", "even after reading the docs")
# names something already tried, not the request itself: it keeps a fraction of its weight.
_MENTION_AFTER_KO_RE = re.compile(
    r"^(?:을|를|은|는|도)?\s?(?:들어도|봐도|읽어도|보고도|듣고도|들었는데도|봤는데도|읽었는데도"
    r"|보니까|찾아봐도|찾아봤는데|\s?해도(?!\s?(?:돼|될|되)))"
)
# Hedged feelings ("kinda annoying", "약간 짜증") are mild: charter rule 2 keeps a technical
# question with mild annoyance with the technical persona.
_HEDGE_BEFORE_RE = re.compile(
    r"(?:\b(?:kinda|kind of|sort of|sorta|a bit|a little|a little bit|slightly|somewhat|mildly"
    r"|a tad)|(?:^|\s)(?:약간|살짝|조금|다소))\s+$"
)
HEDGE_FACTOR = 0.5
_MENTION_BEFORE_EN_RE = re.compile(r"\beven (?:after|though|with)\b[^.?!\n]{0,30}$")
# An excluded request or quality ("not looking for benchmarks", "no need for a design",
# "without being annoying", "instead of a plan", "벤치마크 말고", "설명은 필요 없고") says what
# the learner does NOT want, so the cue is dropped like a negated one.
_EXCLUDED_BEFORE_EN_RE = re.compile(
    r"(?:\b(?:not|never|no|don'?t|do not|doesn'?t)\s+(?:looking for|asking (?:for|about)"
    r"|interested in|need(?:ing)?|want(?:ing)?|after|about)|\bno need (?:for|to)"
    r"|\b(?:instead of|rather than|other than)"
    r"|\bwithout(?: (?:being|sounding|seeming|coming across as|looking|getting|feeling))?)"
    r"\s+(?:(?:a|an|any|the|more|some|too|so|a bit|like|super|really|all)\s+)?$"
)
_EXCLUDED_AFTER_RE = re.compile(
    r"^\s?(?:은|는|이|가|도)?\s?(?:말고|빼고|필요\s?없|관심\s?없|아니고)"
)
# A judgement word that qualifies the learner's *question* ("바보 같은 질문인데", "dumb
# question but", "silly question:") is politeness, not a feeling about oneself.
_QUALIFIES_QUESTION_RE = re.compile(
    r"^(?:\s?(?:같은|한|스런|스러운)?\s?질문|\s(?:noob |newbie |beginner |basic )?questions?\b)"
)
MENTION_FACTOR = 0.35
_CONTEXT_WINDOW = 32
# Literal pre-checks: the exclusion and question-qualifier regexes only run on texts that
# contain one of these (keeps the per-cue cost flat). They are part of the rules' behaviour
# (e.g. "never looking for" is not excluded), so they stay as written.
_EXCLUDED_AFTER_HINT = re.compile("말고|빼고|필요|관심|아니고")
_QUALIFIES_HINT = re.compile("질문|question")
_EXCLUDED_BEFORE_HINT = re.compile("not|no |n't|nt |without|instead|rather|other than")
# The context windows are slices of the text, so a regex whose required literals are absent
# from the whole text cannot match any window: check that once per text, not once per cue.
_NEG_AFTER_KO_GATE = GatedRegex(_NEG_AFTER_KO_RE)
_NEG_BEFORE_KO_GATE = GatedRegex(_NEG_BEFORE_KO_RE)
_MENTION_AFTER_KO_GATE = GatedRegex(_MENTION_AFTER_KO_RE)
_NEG_BEFORE_EN_GATE = GatedRegex(_NEG_BEFORE_EN_RE)
_EXCLUDED_BEFORE_EN_GATE = GatedRegex(_EXCLUDED_BEFORE_EN_RE)
_MENTION_BEFORE_EN_GATE = GatedRegex(_MENTION_BEFORE_EN_RE)
_HEDGE_BEFORE_GATE = GatedRegex(_HEDGE_BEFORE_RE)


@dataclass(frozen=True, slots=True)
class _ContextHints:
    """Per text: which context regexes can match at all (False = skip it for every cue)."""

    excluded_after: bool
    qualifies: bool
    excluded_before: bool
    neg_after_ko: bool
    neg_before_ko: bool
    mention_after_ko: bool
    neg_before_en: bool
    mention_before_en: bool
    hedge_before: bool

    @classmethod
    def of(cls, text: str) -> _ContextHints:
        return _context_hints(text)


# The router contextualises the reading cues and then the persona cues of the same text.
@functools.lru_cache(maxsize=16)
def _context_hints(text: str) -> _ContextHints:
    return _ContextHints(
        excluded_after=_EXCLUDED_AFTER_HINT.search(text) is not None,
        qualifies=_QUALIFIES_HINT.search(text) is not None,
        excluded_before=_EXCLUDED_BEFORE_HINT.search(text) is not None
        and _EXCLUDED_BEFORE_EN_GATE.may_match(text),
        neg_after_ko=_NEG_AFTER_KO_GATE.may_match(text),
        neg_before_ko=_NEG_BEFORE_KO_GATE.may_match(text),
        mention_after_ko=_MENTION_AFTER_KO_GATE.may_match(text),
        neg_before_en=_NEG_BEFORE_EN_GATE.may_match(text),
        mention_before_en=_MENTION_BEFORE_EN_GATE.may_match(text),
        hedge_before=_HEDGE_BEFORE_GATE.may_match(text),
    )


def cue_context_factor(
    text: str, start: int, end: int, hints: _ContextHints | None = None
) -> float:
    """Weight multiplier for a cue at ``text[start:end]``.

    0 when negated, excluded ("not looking for X", "X 말고") or qualifying a question ("바보
    같은 질문"), `MENTION_FACTOR` when only mentioned, `HEDGE_FACTOR` when hedged.
    """
    h = hints or _ContextHints.of(text)
    before = text[max(0, start - _CONTEXT_WINDOW) : start]
    after = text[end : end + 12]
    if (h.excluded_after and _EXCLUDED_AFTER_RE.search(after)) or (
        h.qualifies and _QUALIFIES_QUESTION_RE.search(after)
    ):
        return 0.0
    if is_hangul(text[start]) or is_hangul(text[end - 1]):
        if (h.neg_after_ko and _NEG_AFTER_KO_RE.search(after)) or (
            h.neg_before_ko and _NEG_BEFORE_KO_RE.search(before)
        ):
            return 0.0
        if h.mention_after_ko and _MENTION_AFTER_KO_RE.search(after):
            return MENTION_FACTOR
    else:
        if (h.neg_before_en and _NEG_BEFORE_EN_RE.search(before)) or (
            h.excluded_before and _EXCLUDED_BEFORE_EN_RE.search(before)
        ):
            return 0.0
        if h.mention_before_en and _MENTION_BEFORE_EN_RE.search(before):
            return MENTION_FACTOR
    if h.hedge_before and _HEDGE_BEFORE_RE.search(before):
        return HEDGE_FACTOR
    return 1.0


def contextualize(text: str, hits: Iterable[Hit]) -> list[Hit]:
    """Apply `cue_context_factor` to every hit; negated hits are dropped."""
    out: list[Hit] = []
    hints = _ContextHints.of(text)
    for h in hits:
        f = cue_context_factor(text, h.start, h.end, hints) if h.end > h.start else 1.0
        if f >= 1.0:
            out.append(h)
        elif f > 0.0:
            out.append(Hit(h.term, round(h.weight * f, 3), h.start, h.end, h.owner))
    return out
