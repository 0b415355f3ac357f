"""Resonance analysis: a deterministic, explainable tone-pace-intent reading of one message.

Everything here is pure and rule based (lexicons + a few regexes) so that a routing decision
can always be explained by the cues that fired. Korean matching is substring based on word
stems ("불안" matches "불안해요", "불안했는데"), which tolerates particles and endings without
a morphological analyser; Latin terms must start on a word boundary ("plan" matches
"planning" but not "explanation").

The module also exposes the small text-matching toolkit (`normalize`, `Lexicon`) and the
numeric `TextFeatures` the router combines with each persona's catalog traits.
"""

from __future__ import annotations

import functools
import importlib
import math
import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from ion.domain.models import Intent, Language, Pace, ResonanceAnalysis, ResonanceKey, Tone

__all__ = [
    "FALSE_FRIENDS",
    "FEATURE_NAMES",
    "HEDGE_FACTOR",
    "MENTION_FACTOR",
    "GatedRegex",
    "Hit",
    "Lexicon",
    "LexiconSet",
    "TextFeatures",
    "analyze",
    "analyze_detailed",
    "clip",
    "contextualize",
    "cue_context_factor",
    "drop_false_friends",
    "normalize",
    "spelling_variants",
    "suppress_contained",
]

# Very long inputs are clipped before analysis so routing stays well under a millisecond:
# the head (context, feelings) and the tail (where the actual question usually is) are kept.
MAX_ANALYZED_CHARS = 420
_TAIL_CHARS = 160
# Occurrences of one term recorded per scan (enough for phrase-over-stem suppression).
_MAX_OCCURRENCES = 4

_QUOTES = str.maketrans({"’": "'", "‘": "'", "“": '"', "”": '"', "\u00a0": " "})


def clip(text: str) -> str:
    """Keep the head and tail of an over-long message (see `MAX_ANALYZED_CHARS`)."""
    if len(text) <= MAX_ANALYZED_CHARS:
        return text
    head = MAX_ANALYZED_CHARS - _TAIL_CHARS
    return text[:head] + " \n " + text[-_TAIL_CHARS:]


def normalize(text: str) -> str:
    """Lower-case, NFC (macOS sends NFD Hangul), unify quotes, collapse whitespace.

    NFC rather than NFKC on purpose: NFKC would turn compatibility jamo (ㅋ, ㅠ) into
    conjoining jamo and break the ㅋㅋ / ㅠㅠ cues.
    """
    text = unicodedata.normalize("NFC", clip(text))
    # `translate` costs ~60 ns a character even when nothing maps; most texts have no
    # curly quote or no-break space at all.
    if any(ch in text for ch in "’‘“”\u00a0"):
        text = text.translate(_QUOTES)
    # Same as collapsing `\s+` runs to one space and stripping (str.split and the regex `\s`
    # share Unicode's definition of whitespace), at a quarter of the cost.
    return " ".join(text.split()).lower()


def _is_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x3131 <= o <= 0x318E or 0x1100 <= o <= 0x11FF


def _is_word_char(ch: str) -> bool:
    # Hangul next to a Latin word is a boundary: Korean particles attach directly ("git을").
    return ch.isascii() and (ch.isalnum() or ch == "_")


# --------------------------------------------------------------------------------------
# Literal pre-checks for regexes. `re.search` tries every position of the text, so a rare
# pattern costs as much as a common one; most cue regexes need a literal ("people", "남",
# a digit) that most messages do not contain. `str.__contains__` answers that far faster, and
# a regex whose required literals are all absent cannot match, so skipping it changes nothing.
# --------------------------------------------------------------------------------------

_DIGIT_RE = re.compile(r"\d")


@dataclass(frozen=True, slots=True)
class _Needles:
    """Every match contains one of `strings`, or a Unicode digit if `digit`."""

    strings: frozenset[str]
    digit: bool

    def quality(self) -> tuple[int, int]:
        # Longer needles are rarer, so are fewer alternatives; digits are common in these
        # messages, so a digit alternative ranks below any literal.
        shortest = min((len(s) for s in self.strings), default=99)
        return (0 if self.digit else shortest, -len(self.strings))


def _required_needles(items: Any) -> _Needles | None:
    """Needles for a parsed regex sequence (`re._parser` data), or None if none are known.

    Conservative by construction: anything not understood (anchors, lookarounds, optional
    or negated parts, classes with ranges) contributes no requirement.
    """
    best: _Needles | None = None
    run: list[str] = []  # consecutive literal characters form one needle

    def consider(n: _Needles | None) -> None:
        nonlocal best
        if n is not None and (best is None or n.quality() > best.quality()):
            best = n

    def flush() -> None:
        if run:
            consider(_Needles(frozenset({"".join(run)}), False))
            run.clear()

    for op, arg in items:
        name = str(op)  # opcodes by name: no second private module (re._constants) needed
        if name == "LITERAL":
            run.append(chr(arg))
            continue
        flush()
        if name == "IN":
            consider(_class_needles(arg))
        elif name == "BRANCH":
            alts = [_required_needles(alt) for alt in arg[1]]
            if all(a is not None for a in alts):
                consider(
                    _Needles(
                        frozenset().union(*(a.strings for a in alts if a is not None)),
                        any(a.digit for a in alts if a is not None),
                    )
                )
        elif name == "SUBPATTERN":
            _group, add_flags, _del_flags, sub = arg
            if not add_flags & re.IGNORECASE:
                consider(_required_needles(sub))
        elif name == "ATOMIC_GROUP":
            consider(_required_needles(arg))
        elif name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, _high, sub = arg
            if low >= 1:
                consider(_required_needles(sub))
    flush()
    return best


def _class_needles(items: Any) -> _Needles | None:
    """Needles for a character class: its literal members and/or a digit, nothing else."""
    chars: set[str] = set()
    digit = False
    for op, arg in items:
        name = str(op)
        if name == "LITERAL":
            chars.add(chr(arg))
        elif name == "CATEGORY" and str(arg) in ("CATEGORY_DIGIT", "CATEGORY_UNI_DIGIT"):
            digit = True
        else:
            return None  # ranges, negation, other categories: no cheap requirement
    return _Needles(frozenset(chars), digit) if chars or digit else None


def _needles_for(rx: re.Pattern[str]) -> _Needles | None:
    if rx.flags & (re.IGNORECASE | re.LOCALE):
        return None  # case folding would need folded needles; not worth the risk
    try:
        # The stdlib's own regex parser (private, hence the guarded import): any change in its
        # shape only disables the pre-check, never a match.
        parser = importlib.import_module("re._parser")
        return _required_needles(parser.parse(rx.pattern, rx.flags).data)
    except Exception:  # an optimisation must never break routing: fall back to searching
        return None


class GatedRegex:
    """A compiled regex that is only run when its required literals occur in the text.

    The needles are derived on first use (not at import or construction time).
    """

    __slots__ = ("_digit", "_ready", "_strings", "pattern")

    def __init__(self, pattern: re.Pattern[str]) -> None:
        self.pattern = pattern
        self._ready = False
        self._strings: tuple[str, ...] | None = None
        self._digit = False

    def may_match(self, text: str) -> bool:
        """False only when `pattern` cannot match anywhere in `text` (or any substring of it)."""
        if not self._ready:
            needles = _needles_for(self.pattern)
            if needles is not None:
                self._strings = tuple(sorted(needles.strings))
                self._digit = needles.digit
            self._ready = True
        strings = self._strings
        if strings is None:
            return True
        for s in strings:
            if s in text:
                return True
        return self._digit and _DIGIT_RE.search(text) is not None

    def search(self, text: str) -> re.Match[str] | None:
        """Same result as `pattern.search(text)`."""
        return self.pattern.search(text) if self.may_match(text) else None


@dataclass(frozen=True, slots=True)
class Hit:
    """One occurrence of a lexicon term in a normalised text."""

    term: str
    weight: float
    start: int
    end: int
    owner: str = ""


# Where a term may start (LexiconSet keeps one table per mode).
_ANYWHERE, _LATIN_WORD, _HANGUL_WORD = 0, 1, 2
# Characters that may not precede a term's first character (empty: any may).
_NOT_BEFORE_START = {
    _ANYWHERE: "",
    _LATIN_WORD: "a-z0-9_",
    # A Korean word: not preceded by Hangul or a Latin word character.
    _HANGUL_WORD: "a-z0-9_\uac00-\ud7a3\u3131-\u318e",
}


@dataclass(frozen=True, slots=True)
class _Term:
    needle: str
    weight: float
    display: str
    mode: int
    word_end: bool
    owner: str


# Contractions learners often type without the apostrophe ("im", "dont", "whats"). Only
# endings whose apostrophe-less form is not a common other word are expanded ("we'll" →
# "well", "i'd" → "id" and "we're" → "were" are not).
_CONTRACTION_RE = re.compile(r"(?<=[a-z])'(?=(?:m|t|s|ve)\b)")
# Question frames ("where do i", "is this", "how should we") that learners pad with an
# intensifier: "where do i *even* start", "is this *actually* correct". A phrase cue opening
# with such a frame also matches with one filler word after it.
_QUESTION_FRAME_RE = re.compile(
    r"^((?:(?:where|what|how|who|which|when|why) )?(?:do|does|did|should|can|could|would|will"
    r"|am|is|are) (?:i|we|you|it|this|that)) (?!(?:even|actually|really|just)\b)(?=\S)"
)
_FILLERS = ("even", "actually", "really", "just")
# A Korean cue ending in a negated predicate ("재미가 없", "감이 안 잡") is often padded with a
# degree adverb before the predicate: "재미가 *하나도* 없어요", "감이 *전혀* 안 잡혀요". Such a
# cue also matches with one of these adverbs inserted (`spelling_variants`).
_KO_NEG_PREDICATE_RE = re.compile(r"^(.*[가-힣]) ((?:없|안|못)(?: .*|[가-힣]*))$")
_KO_DEGREE_ADVERBS = ("하나도", "전혀", "별로", "너무", "진짜", "정말", "완전", "도무지")


def spelling_variants(needle: str) -> tuple[str, ...]:
    """The normalised `needle` plus the informal spellings it should also match.

    * Korean is often typed without spaces (띄어쓰기): "잠이 안" also matches "잠이안";
    * English contractions are often typed without the apostrophe: "don't" also matches
      "dont", "i'm" also matches "im";
    * an English question frame may carry one filler word: "where do i start" also matches
      "where do i even start" and "is this actually correct" (`_FILLERS`);
    * a Korean cue ending in a negated predicate may carry a degree adverb before it:
      "재미가 없" also matches "재미가 하나도 없" (`_KO_DEGREE_ADVERBS`).
    """
    variants = [needle]
    if " " in needle and any(_is_hangul(c) for c in needle):
        variants.append(needle.replace(" ", ""))
    if "'" in needle:
        bare = _CONTRACTION_RE.sub("", needle)
        if bare != needle:
            variants.append(bare)
    frame = _QUESTION_FRAME_RE.match(needle)
    if frame is not None:
        head, tail = needle[: frame.end(1)], needle[frame.end(1) :]
        variants.extend(f"{head} {filler}{tail}" for filler in _FILLERS)
    negated = _KO_NEG_PREDICATE_RE.match(needle)
    if negated is not None:
        subject, predicate = negated.groups()
        variants.extend(f"{subject} {adverb} {predicate}" for adverb in _KO_DEGREE_ADVERBS)
    return tuple(variants)


class Lexicon:
    """Weighted cue terms matched against `normalize`d text.

    Term syntax (used in the persona catalog too):
    * a term containing Hangul matches as a plain substring (stem matching);
    * a Hangul term with a leading ``^`` must start a Korean word, for short nouns that are
      also pieces of longer words ("^로그" matches "로그 보니까" and "에러 로그를", not
      "블로그" or "프로그램"); particles and endings may still follow;
    * any other term must start on a word boundary and may continue ("debug" ~ "debugging");
    * a trailing ``$`` also requires a word boundary at the end ("cry$" does not match
      "crypto").

    Each term also matches its informal spellings (`spelling_variants`): Korean without
    spaces, English contractions without the apostrophe. Variants report the term itself.
    """

    def __init__(self, entries: Mapping[str, float], owner: str = "") -> None:
        terms: list[_Term] = []
        # A variant that is also listed as a term of its own ("이정도면" next to "이 정도면")
        # is left to that term, so one occurrence is never counted twice.
        taken = {normalize(raw.strip().removeprefix("^").removesuffix("$")) for raw in entries}
        for raw, weight in entries.items():
            display = raw.strip()
            anchored = display.startswith("^")
            display = display.removeprefix("^")
            needle = normalize(display.removesuffix("$"))
            if not needle:
                raise ValueError(f"empty lexicon term {raw!r}")
            hangul = any(_is_hangul(c) for c in needle)
            if anchored and not hangul:
                raise ValueError(f"'^' is only for Hangul terms (Latin terms start words): {raw!r}")
            mode = _HANGUL_WORD if anchored else (_ANYWHERE if hangul else _LATIN_WORD)
            word_end = display.endswith("$")
            for variant in spelling_variants(needle):
                if variant != needle:
                    if variant in taken:
                        continue
                    taken.add(variant)
                terms.append(
                    _Term(variant, float(weight), display.removesuffix("$"), mode, word_end, owner)
                )
        self.terms = tuple(terms)
        self.owner = owner
        self._matcher = LexiconSet([self])

    def __len__(self) -> int:
        return len(self.terms)

    def scan(self, text: str) -> list[Hit]:
        """All boundary-respecting occurrences in an already normalised `text`."""
        return self._matcher.scan(text)


# A table entry: (needle when longer than its key else None, needle length, word_end,
# (owner, display) occurrence key, term).
_Probe = tuple[str | None, int, bool, tuple[str, str], _Term]
# Probes sharing a key; for crowded keys ("the", "wha", "하고") also per next character.
_Bucket = tuple[tuple[_Probe, ...], dict[str, tuple[_Probe, ...]] | None]
_CROWDED_BUCKET = 6


def _split_by_next_char(probes: list[_Probe], size: int) -> _Bucket:
    """Index a crowded bucket by the character after the key, keeping the probe order.

    Each next character maps to the probes that can still match (the key-length needles
    plus the needles continuing with that character), in their original order, so a scan
    reports exactly the same hits in the same order while testing a fraction of the needles.
    Any other next character (or the end of the text) leaves only the key-length needles.
    """
    if len(probes) <= _CROWDED_BUCKET:
        return tuple(probes), None
    nexts = {p[0][size] for p in probes if p[0] is not None}
    by_next = {
        c: tuple(p for p in probes if p[0] is None or p[0][size] == c) for c in sorted(nexts)
    }
    return tuple(p for p in probes if p[0] is None), by_next


def _first_char_regex(keys: Iterable[str], mode: int) -> re.Pattern[str]:
    chars = sorted({k[0] for k in keys})
    if not chars:
        return re.compile(r"(?!x)x")  # matches nothing
    cls = "".join(re.escape(c) for c in chars)
    excluded = _NOT_BEFORE_START[mode]
    if not excluded:
        return re.compile(f"[{cls}]")
    # The word-start test is a lookbehind *after* the first character (checking the pair),
    # not before it: a pattern that opens with a character class lets the regex engine skip
    # ahead to candidate characters instead of trying the lookbehind at every position.
    return re.compile(f"[{cls}](?<![{excluded}][{cls}])")


class LexiconSet:
    """Several lexicons matched in ONE pass over the text.

    Terms are hashed by a short prefix (Hangul stems by two characters, word-start terms by
    three). A C-level regex over the possible first characters yields the only positions
    worth probing, so a scan costs a few dict look-ups per candidate position however many
    terms the catalog holds; this keeps routing well under a millisecond.
    """

    def __init__(self, lexicons: Iterable[Lexicon]) -> None:
        # One table per (match mode, key length): each probe is then a single dict look-up,
        # and each table's first-character regex skips positions that cannot start a term.
        buckets: dict[tuple[int, int], dict[str, list[_Probe]]] = {}
        for lex in lexicons:
            for t in lex.terms:
                size = min(len(t.needle), 3 if t.mode == _LATIN_WORD else 2)
                table = buckets.setdefault((t.mode, size), {})
                # A needle no longer than its key already matched when the key did.
                rest = t.needle if len(t.needle) > size else None
                probe = (rest, len(t.needle), t.word_end, (t.owner, t.display), t)
                table.setdefault(t.needle[:size], []).append(probe)
        self._tables = tuple(
            (
                _first_char_regex(table, mode),
                size,
                {key: _split_by_next_char(probes, size) for key, probes in table.items()},
            )
            for (mode, size), table in sorted(buckets.items())
        )

    def scan(self, text: str) -> list[Hit]:
        # The hot loop of routing: plain tuples and bound methods in locals, no attribute
        # look-ups per candidate.
        hits: list[Hit] = []
        append = hits.append
        counts: dict[tuple[str, str], int] = {}
        seen_count = counts.get
        startswith = text.startswith
        n = len(text)
        for starts, size, table in self._tables:
            get = table.get
            for m in starts.finditer(text):
                i = m.start()
                entry = get(text[i : i + size])
                if entry is None:
                    continue
                cands, by_next = entry
                if by_next is not None:
                    cands = by_next.get(text[i + size : i + size + 1], cands)
                for needle, length, word_end, key, t in cands:
                    if needle is not None and not startswith(needle, i):
                        continue
                    end = i + length
                    if word_end and end < n and _is_word_char(text[end]):
                        continue
                    seen = seen_count(key, 0)
                    if seen >= _MAX_OCCURRENCES:
                        continue
                    counts[key] = seen + 1
                    append(Hit(t.display, t.weight, i, end, t.owner))
        return hits


def suppress_contained(hits: Iterable[Hit]) -> list[Hit]:
    """Drop hits lying inside a longer hit, so a phrase overrides its own stem.

    "test coverage" (riri) swallows "test"; "want to quit" swallows "quit". This keeps
    authors from double counting and lets the more specific cue decide.
    """
    # Sweep by (start asc, end desc): every earlier *different* span starts before this one
    # (or at the same place but ends later), so it contains this span iff its end reaches ours.
    # Identical spans (same text claimed by two personas) never shadow each other.
    ordered = sorted(hits, key=lambda h: (h.start, -h.end))
    kept: list[Hit] = []
    best_end = -1
    i = 0
    while i < len(ordered):
        j = i
        span = (ordered[i].start, ordered[i].end)
        while j < len(ordered) and (ordered[j].start, ordered[j].end) == span:
            j += 1
        if best_end < span[1]:
            kept.extend(ordered[i:j])
        best_end = max(best_end, span[1])
        i = j
    return kept


# Words and phrases that contain a cue but mean something else: "불안정" (unstable) is not
# "불안" (anxiety), "상관없어" (never mind) is not "상관" (correlation), "kernel panic" is not
# panic. A cue inside one of them is not a cue (see `drop_false_friends`). Short nouns that
# only clash as the tail of a longer word use the catalog's "^" anchor instead.
# fmt: off
FALSE_FRIENDS = Lexicon(
    dict.fromkeys(
        [
            "불안정", "상관없", "상관 없", "상관은 없", "휴가", "휴일", "휴학", "휴대", "휴게",
            "현재보다", "현재 보", "다시 써", "이벤트 전파", "예외 전파", "전파되", "수치스러",
            "회의적", "kernel panic", "panic!", "fraud detection", "stress test", "stress-test",
            "happy path", "pressure test", "backpressure", "memory pressure", "dead letter",
            "fails over", "failover", "fail over", "fail-safe", "fail fast", "fail-fast",
            "data science", "data scientist", "data engineer", "data analyst", "데이터 사이언스",
            "데이터 분석가", "데이터 엔지니어",
        ],
        0.0,
    ),
    owner="",
)
# fmt: on


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
    if _is_hangul(text[start]) or _is_hangul(text[end - 1]):
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


def _sum_unique(hits: Iterable[Hit]) -> tuple[float, list[str]]:
    """Sum each term's weight once, however often it occurs."""
    seen: dict[str, float] = {}
    for h in hits:
        seen.setdefault(h.term, h.weight)
    return sum(seen.values()), list(seen)


# --------------------------------------------------------------------------------------
# Lexicons for the reading itself. They describe *how* someone writes, not which persona
# answers; persona-specific cues live in the catalog (personas.yaml).
# --------------------------------------------------------------------------------------

# fmt: off
_TONE_LEXICON: dict[Tone, dict[str, float]] = {
    Tone.FRUSTRATED: {
        "짜증": 1.0, "빡치": 1.5, "빡쳐": 1.5, "답답": 1.0, "열받": 1.5, "미치겠": 1.5,
        "돌겠": 1.2, "환장": 1.2, "하.. ": 0.6, "ㅡㅡ": 0.8, "또 안": 0.6, "왜 안": 0.6,
        "안 돼": 0.5, "안돼": 0.5, "날림": 0.8, "날렸": 0.8, "시간째": 0.8, "포기": 1.0,
        "그만두": 1.0, "때려치": 1.5, "접고": 0.8, "ugh": 1.2, "annoy": 1.0, "frustrat": 1.5,
        "stuck": 1.0, "sick of": 1.5, "tired of": 1.2, "hate": 1.0, "wtf": 1.2, "argh": 1.2,
        "give up": 1.2, "want to quit": 1.5, "why do i even": 1.5, "nothing works": 1.2,
        "still not": 0.6, "for hours": 0.8, "wasted": 0.8, "fed up": 1.5, "nothing sticks": 1.0,
        "harder": 0.4,
    },
    Tone.ANXIOUS: {
        "불안": 1.5, "무서": 1.5, "두려": 1.5, "걱정": 1.2, "떨려": 1.5, "떨리": 1.5, "긴장": 1.2,
        "겁나": 1.2, "겁이": 1.2, "들킬": 1.5, "눈치": 1.0, "잠이 안": 1.2, "어떡": 1.0,
        "어쩌지": 1.0, "할 수 있을까": 1.0, "잘할 수": 0.8, "망하": 0.8, "anxious": 1.5,
        "anxiety": 1.5, "scared": 1.5, "afraid": 1.5, "terrified": 1.5, "nervous": 1.5,
        "worried": 1.2, "worry": 1.2, "panic": 1.2, "what if i": 1.2, "what if": 0.6,
        "fraud": 1.2, "imposter": 1.2, "impostor": 1.2, "overwhelm": 1.0, "freaking out": 1.5,
        "can't sleep": 1.2, "regret": 0.8, "too old": 1.0, "realistic": 0.3,
        "keep replaying": 1.2, "probation": 0.6, "stressed": 1.2, "stress": 1.0, "스트레스": 1.2,
        "want to cry": 1.2, "울고 싶": 1.2, "울 것 같": 1.2, "dread": 1.2,
    },
    Tone.CURIOUS: {
        "궁금": 1.5, "왜": 0.8, "어떻게 동작": 1.2, "원리": 1.0, "신기": 1.0, "뭔가요": 0.6,
        "뭐예요": 0.6, "뭐에요": 0.6, "뭔지": 0.6, "curious": 1.5, "wonder": 1.2, "why": 0.8,
        "how does": 1.0, "how do": 0.5, "what is": 0.6, "what's the": 0.5, "what are": 0.6,
        "interesting": 0.8, "explain": 0.8, "설명": 0.8, "what causes": 0.8,
    },
    Tone.ANALYTICAL: {
        "측정": 1.5, "비교": 1.2, "수치": 1.5, "지표": 1.5, "통계": 1.5, "데이터": 0.4,
        "평균": 1.0, "결과": 0.6, "벤치마크": 1.5, "정확도": 1.2, "커버리지": 1.2, "measure": 1.5,
        "compare": 1.2, "comparison": 1.2, "benchmark": 1.5, "metric": 1.5, "data$": 0.8,
        "statistic": 1.5, "average": 1.0, "median": 1.0, "accuracy": 1.2, "recall": 1.0,
        "coverage": 1.0, "latency": 1.2, "p95": 1.2, "p99": 1.2, "results": 0.8, "percent": 1.0,
        "significant": 1.2, "trade-off": 0.6,
    },
    Tone.URGENT: {
        "급해": 1.5, "급함": 1.5, "급하": 1.2, "긴급": 1.5, "당장": 1.2, "지금 바로": 1.2,
        "장애": 1.2, "터졌": 1.2, "다운": 0.8, "빨리": 0.6, "시간 남": 0.8, "비상": 1.5,
        "urgent": 1.5, "asap": 1.5, "emergency": 1.5, "prod is down": 1.8, "down right now": 1.5,
        "outage": 1.2, "right now": 0.6, "immediately": 1.0, "in 2 hours": 1.0, "in an hour": 1.0,
        "wiped": 1.0, "on fire": 1.2, "help!": 1.0, "quick": 0.4,
    },
    Tone.CONFUSED: {
        "헷갈": 1.5, "모르겠": 1.0, "모르겟": 1.0, "이해가 안": 1.5, "이해 안": 1.2,
        "감이 안": 1.2, "막막": 1.2, "뭔 소린지": 1.5, "잘 안 잡": 1.2, "모름": 0.8,
        "confus": 1.5, "don't understand": 1.2, "don't get": 1.2, "doesn't make sense": 1.5,
        "lost": 0.8, "no idea": 1.0, "not sure": 0.8, "can't tell": 1.0, "makes no sense": 1.5,
        "where do i even": 1.2, "don't know": 0.8, "dont know": 0.8, "idk": 1.0,
        "can't figure": 1.0,
    },
    Tone.PLAYFUL: {
        "ㅋㅋ": 1.5, "ㅎㅎ": 1.2, "ㅋ": 0.4, "웃프": 1.5, "웃겨": 1.2, "재밌": 1.0, "재미있": 1.0,
        "밈": 1.0, "드립": 1.2, "농담": 1.2, "개그": 1.2, "lol": 1.5, "lmao": 1.5, "haha": 1.5,
        "hehe": 1.2, "pun": 1.2, "joke": 1.2, "meme": 1.2, "funny": 1.0, "silly": 1.2,
        "goofy": 1.2, "fun$": 0.8, "😂": 1.5, "🤣": 1.5, "😆": 1.2,
    },
    Tone.COLLABORATIVE: {
        "팀원": 1.2, "팀플": 1.2, "우리 팀": 1.2, "팀장": 0.6, "같이": 0.6, "함께": 0.8,
        "스터디원": 1.2, "동료": 1.0, "선배": 0.6, "협업": 1.5, "역할 분담": 1.5, "teammate": 1.2,
        "our team": 1.2, "my team": 0.8, "team's": 0.8, "together": 0.8, "we ": 0.4,
        "colleague": 1.0, "coworker": 1.0, "group project": 1.2, "collaborat": 1.5, "pair": 0.6,
    },
}
# fmt: on

# Emotional load: drives `emotion_intensity` (0 = neutral, 1 = overwhelming feeling).
# fmt: off
_EMOTION_LEXICON: dict[str, float] = {
    "번아웃": 1.0, "우울": 1.0, "자괴감": 1.0, "현타": 0.8, "포기하고 싶": 1.2,
    "그만두고 싶": 1.2, "접고 싶": 1.2, "때려치": 1.0, "울고 싶": 1.2, "눈물": 1.0, "울었": 1.0,
    "쓸모없": 1.2, "쓸모 없": 1.2, "한심": 1.0, "무능": 1.0, "적성이 아닌": 1.0, "적성에 안": 1.0,
    "무서": 0.8, "불안": 0.8, "두려": 0.8, "떨려": 0.7, "멘붕": 0.7, "힘들": 0.7, "지쳤": 0.8,
    "지쳐": 0.8, "무기력": 1.0, "하기 싫": 0.7, "죽겠": 0.7, "멘탈": 0.7, "자존감": 0.8,
    "속상": 0.8, "서럽": 0.8, "외로": 0.8, "좌절": 0.9, "burnout": 1.0, "burned out": 1.0,
    "burnt out": 1.0, "depress": 1.0, "want to quit": 1.2, "give up": 1.0, "giving up": 1.0,
    "hopeless": 1.2, "worthless": 1.2, "useless": 1.0, "fraud": 1.0, "impostor": 1.0,
    "imposter": 1.0, "want to cry": 1.2, "crying": 1.0, "cry$": 0.9, "disappear": 1.0,
    "hate myself": 1.2, "why do i even": 1.0, "anxious": 0.8, "anxiety": 0.8, "scared": 0.8,
    "terrified": 1.0, "nervous": 0.7, "overwhelmed": 0.8, "exhausted": 0.8, "stressed": 0.8,
    "discouraged": 0.9, "embarrass": 0.5, "humiliat": 0.9, "ashamed": 0.9, "lonely": 0.8,
    "regret": 0.6, "so done": 0.7, "i'm done": 0.7, "freaking out": 0.9, "can't do this": 1.0,
    "not good enough": 0.9, "too old": 0.6, "i fail": 0.3, "i failed": 0.4, "i'm failing": 0.4, "keep failing": 0.4,
    "failing at": 0.3, "failed my": 0.4, "fail the": 0.3, "a failure": 0.6, "rejection": 0.6, "nothing sticks": 0.7,
    "i suck": 0.9, "안 될 것 같": 0.8, "울 것 같": 1.0, "울컥": 0.8, "신경 쓰여": 0.6, "손에 안 잡": 0.7,
    "못하겠": 0.6, "후회": 0.5, "바보": 0.8, "멍청": 0.8, "죄책감": 0.8, "숨이 막": 0.9, "재미없": 0.5, "dread": 0.8,
    "wearing me down": 0.8, "guilty": 0.7, "drained": 0.8, "defeated": 0.9,
    "what's wrong with me": 1.0, "don't belong": 0.9, "panic attack": 1.2, "dumbest": 0.9,
    "feel like": 0.3, "feeling like": 0.4, "붙었": 0.9, "합격": 0.9, "드디어": 0.6, "해냈": 0.9,
    "자랑": 0.7, "신나": 0.8, "기쁘": 0.8, "뿌듯": 0.8, "행복": 0.7, "대박": 0.6,
    "got the offer": 1.0, "got an offer": 1.0, "got the job": 1.0, "got hired": 1.0,
    "finally": 0.5, "proud": 0.8, "excited": 0.7, "yay": 0.8, "woohoo": 0.8, "thrilled": 0.8,
    "i did it": 0.9, "짜증": 0.3, "답답": 0.4, "annoy": 0.2, "ugh": 0.4, "frustrat": 0.5,
    "빡치": 0.5, "걱정": 0.5, "worried": 0.5, "긴장": 0.5, "stuck": 0.2,
}
# fmt: on

# fmt: off
_INTENT_LEXICON: dict[Intent, dict[str, float]] = {
    Intent.PLANNING: {
        "계획": 1.5, "일정": 1.5, "스케줄": 1.5, "로드맵": 1.5, "우선순위": 1.5, "마감": 0.8,
        "뭐부터": 1.2, "무엇부터": 1.2, "병행": 1.2, "플래닝": 1.2, "목표": 0.8, "쪼개": 0.8,
        "plan": 1.5, "schedule": 1.5, "roadmap": 1.5, "prioriti": 1.5, "deadline": 0.8,
        "timeline": 1.2, "split my time": 1.5, "what first": 1.0, "where do i start": 1.2,
        "where to start": 1.2, "now what": 1.0, "next step": 1.0, "organize": 1.0,
        "organise": 1.0, "milestone": 1.0, "okr": 1.0, "sprint": 0.8,
    },
    Intent.SEEKING_ADVICE: {
        "어떻게 해야": 1.2, "해야 할까": 1.2, "할까요": 1.0, "좋을까": 1.0, "나을까": 1.0,
        "추천": 1.0, "조언": 1.5, "어떻게 하지": 1.0, "어떻게 말": 1.2, "해야 하나": 1.0,
        "should i": 1.2, "what should": 1.2, "advice": 1.5, "recommend": 1.0, "tips": 1.0,
        "how do i tell": 1.2, "how do we": 0.8, "what do i do": 1.2, "is it worth": 0.8,
        "any suggestions": 1.2, "what would you": 1.0,
    },
    Intent.LEARNING: {
        "설명": 1.5, "개념": 1.2, "원리": 1.2, "이해": 0.8, "차이": 1.0, "배우": 0.8, "공부": 0.5,
        "뭔가요": 0.8, "뭐예요": 0.8, "뭔지": 0.8, "예시": 1.0, "동작": 0.8, "explain": 1.5,
        "what is": 1.0, "what are": 1.0, "understand": 0.8, "learn": 0.6, "concept": 1.2,
        "difference between": 1.2, "how does": 1.2, "how do": 0.4, "why does": 1.0,
        "like i'm five": 1.5, "eli5": 1.5, "example": 0.8, "simply": 0.6, "what causes": 0.8,
        "under the hood": 1.0,
    },
    Intent.EXPRESSIVE: {
        "ㅠㅠ": 0.8, "ㅜㅜ": 0.8, "just wanted to tell": 1.5, "wanted to share": 1.2, "자랑": 1.2,
        "여기다 씀": 1.0, "털어놓": 1.2, "그냥": 0.3, "i feel": 1.0, "feels like": 0.6,
        "느낌": 0.6, "기분": 0.8,
    },
}
# fmt: on

_SENTENCE_RE = re.compile(r"[.!?。…]+|\n+|(?<=[요다음함])\s")
# `(?![a-z])` instead of `\b` after units: Hangul is a word character, so "800ms인데" has no
# word boundary after "ms".
_NUMBER_UNIT_RE = re.compile(
    r"\d[\d,.]*\s*(?:%|퍼센트|(?:ms|s|sec|secs|seconds?|mb|kb|gb|tb|rps|qps|tps|fps|x|k|m)(?![a-z])"
    r"|req/s|밀리초|초|점|개 중|배)"
    r"|(?<![a-z])p(?:50|90|95|99)(?![0-9])|(?<![a-z])r²|(?<![a-z])r2(?![0-9])|(?<![\d.])0\.\d+"
    r"|\d+\s*/\s*\d+|→|->",
    re.IGNORECASE,
)
_VS_NUMBERS_RE = re.compile(r"\d[\d.,]*\s*\S{0,6}\s*(?:vs\.?|versus|대|→|->)\s*\d", re.IGNORECASE)
_TIMEFRAME_RE = re.compile(
    r"\d+\s*(?:주|개월|달|일\s*남|일 후|일 뒤|학기|시간 남|분 남|weeks?\b|months?\b|days?\b|"
    r"-month|-week|hours? (?:left|away)|hrs?\b)|(?:in|within|by) (?:\d+|two|three|a) "
    r"(?:weeks?|months?|days?|hours?)|next week|tomorrow|내일|다음 주|이번 주|이번 학기|이번 분기",
    re.IGNORECASE,
)
_CODE_RE = re.compile(
    # Linear-time alternatives only (no nested `\w+...` backtracking on long input).
    r"`[^`\n]{1,200}`|[A-Z][a-z]*(?:Error|Exception)\b|\w\(\)|=>|===|\bdef \w"
    r"|\b(?:SELECT|select)\b[^;\n]{1,200}?\b(?:FROM|from)\b|\bnull\b|\bNone\b|\bundefined\b"
    r"|\[\]|\{\}|\.[a-z_]{1,40}\(|[Tt]raceback|stack trace",
)
# Bare numbers that are not durations or head counts: several of them suggest data.
_BARE_NUMBER_RE = re.compile(
    r"(?<![\w.])\d[\d,.]*(?![\d,.]*\s*(?:주|개월|달|일|시간|분|년|학년|살|명|weeks?|days?|months?"
    r"|hours?|years?|mins?|minutes?|people|st\b|nd\b|rd\b|th\b))"
)
_LAUGH_HINTS = ("ㅋㅋ", "ㅎㅎ", "lol", "lmao", "haha", "hehe", "😂", "🤣", "😆")
_CELEBRATE_HINTS = ("🎉", "🥳", "🙌", "💪", "✨", "🔥", "!!!", "woo", "yay", "야호", "만세")
_CODE_HINTS = (
    "`",
    "()",
    "=>",
    "===",
    "def ",
    "select",
    "null",
    "none",
    "undefined",
    "[]",
    "{}",
    "(",
    "error",
    "exception",
    "traceback",
    "stack trace",
)


def _has_any(text: str, needles: tuple[str, ...]) -> bool:
    return any(n in text for n in needles)


_LAUGH_RE = re.compile(r"ㅋ{2,}|ㅎ{2,}|\blol\b|\blmao\b|\bhaha+|\bhehe+|😂|🤣|😆")
_CRY_RE = re.compile(r"[ㅠㅜ]+|😭|😢|🥲|😞|😔|😩|😫")
_CRY_GATE = GatedRegex(_CRY_RE)
_CELEBRATE_RE = re.compile(r"🎉|🥳|🙌|💪|✨|🔥|!!!|\bwoo+\b|\byay\b|야호|만세")
_EXCLAIM_RUN_RE = re.compile(r"[!?]{2,}")
_CAPS_WORD_RE = re.compile(r"(?<![A-Za-z])[A-Z]{5,}(?![A-Za-z])")
_QUESTION_END_RE = re.compile(
    r"\?|(?:나요|까요|가요|ㄹ까|을까|일까|는지|인지|한지|건가|는가|니\b|냐\b|나\b|"
    r"어요\?|에요\?|예요\?|거예요|거에요|거야|거임|됨\?|음\?|하죠|되죠|어때|어떰|뭐임|뭔데)\s*$"
)
_QWORD_RE = re.compile(
    r"^(?:how|why|what|which|when|where|who|is|are|can|could|should|does|do|did|would|will)\b"
    r"|어떻게|왜|뭐가|뭘|무엇|어디|언제|누가|누구|어떤|몇"
)
# fmt: off
_REFLECTIVE = Lexicon(
    {
        "솔직히": 1.0, "요즘": 1.0, "가끔": 0.6, "생각해보니": 1.0, "자꾸": 0.6, "계속": 0.4,
        "honestly": 1.0, "lately": 1.0, "some days": 1.0, "i keep": 1.0, "i wonder": 1.0,
        "sometimes": 0.6, "i've been thinking": 1.2, "i think": 0.5, "these days": 1.0,
        "i guess": 0.6, "maybe": 0.4,
    },
    "reflective",
)
# fmt: on
_TONE_LEX = {t: Lexicon(entries, f"tone:{t.value}") for t, entries in _TONE_LEXICON.items()}
_INTENT_LEX = {i: Lexicon(entries, f"intent:{i.value}") for i, entries in _INTENT_LEXICON.items()}
_EMOTION_LEX = Lexicon(_EMOTION_LEXICON, "emotion")
# Every reading lexicon in one matcher: one pass over the text per message.
_READING_LEX = LexiconSet(
    [*_TONE_LEX.values(), *_INTENT_LEX.values(), _EMOTION_LEX, _REFLECTIVE, FALSE_FRIENDS]
)

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


_HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u3131-\u318e\u1100-\u11ff]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_UPPER_RE = re.compile(r"[A-Z]")


def _detect_language(raw: str, latin: int | None = None) -> Language:
    """`latin`: the count of Latin letters in `raw`, when the caller already has it."""
    hangul = len(_HANGUL_RE.findall(raw))
    if latin is None:
        latin = len(_LATIN_RE.findall(raw))
    # A Hangul syllable carries about as much as three Latin letters, so Korean sentences
    # sprinkled with English tech terms ("git rebase랑 merge 차이") still read as Korean.
    if hangul and hangul * 3 >= latin:
        return "ko"
    return "en"


def _squash(x: float, scale: float = 1.0) -> float:
    """Map [0, inf) onto [0, 1) smoothly."""
    return 1.0 - math.exp(-max(x, 0.0) / scale)


def _short(cues: Iterable[str], limit: int = 3) -> str:
    return ", ".join(f"'{c}'" for c in list(cues)[:limit])


def analyze_detailed(text: str) -> tuple[ResonanceAnalysis, TextFeatures]:
    """Analyse `text` and also return the numeric features the router needs."""
    raw = clip(text)
    norm = normalize(raw)
    letters = len(_LATIN_RE.findall(raw))
    language = _detect_language(raw, letters)
    evidence: list[str] = []
    words = len(norm.split())
    chars = len(norm) - norm.count(" ")

    # Cheap literal pre-checks skip regexes that cannot match (keeps long texts fast).
    has_digit = _DIGIT_RE.search(norm) is not None
    laughs = len(_LAUGH_RE.findall(norm)) if _has_any(norm, _LAUGH_HINTS) else 0
    cries = len(_CRY_RE.findall(norm)) if _CRY_GATE.may_match(norm) else 0
    celebrations = len(_CELEBRATE_RE.findall(raw)) if _has_any(norm, _CELEBRATE_HINTS) else 0
    exclaim_runs = len(_EXCLAIM_RUN_RE.findall(norm))
    exclaims = norm.count("!")
    metrics = len(_NUMBER_UNIT_RE.findall(norm)) if has_digit or "→" in norm else 0
    number_cmp = 1.0 if has_digit and _VS_NUMBERS_RE.search(norm) else 0.0
    timeframe = 1.0 if _TIMEFRAME_RE.search(norm) else 0.0
    code = 1.0 if _has_any(norm, _CODE_HINTS) and _CODE_RE.search(raw) else 0.0
    # Upper-case words signal shouting only in prose; in code they are SQL keywords etc.
    # Acronyms (API, AWS, CSV) are not shouting: count long caps words or mostly-caps text.
    # In Korean prose the Latin words are names and acronyms ("AWS SAA VPC NAT"), so the
    # mostly-caps test only applies when Latin is the main script.
    upper = len(_UPPER_RE.findall(raw))
    # A caps word has at least five capitals, so fewer in the whole text means none.
    caps = 0 if code or upper < 5 else len(_CAPS_WORD_RE.findall(raw))
    if not code and language == "en" and upper >= 6 and upper >= 0.6 * letters:
        caps = max(caps, 2)
    numbers = len(_BARE_NUMBER_RE.findall(norm)) if has_digit else 0
    sentences = [s for s in _SENTENCE_RE.split(norm) if s and s.strip()]
    # Sentence-final endings are checked on the last few characters only (cheap on long text).
    is_question = "?" in norm or bool(_QUESTION_END_RE.search(norm[-12:]))
    has_qword = bool(_QWORD_RE.search(norm))

    # --- emotion intensity -----------------------------------------------------------
    by_owner: dict[str, list[Hit]] = {}
    for h in contextualize(norm, drop_false_friends(_READING_LEX.scan(norm))):
        by_owner.setdefault(h.owner, []).append(h)
    emo_sum, emo_terms = _sum_unique(suppress_contained(by_owner.get("emotion", ())))
    emo_raw = emo_sum + 0.25 * min(cries, 2) + 0.15 * min(exclaim_runs, 2) + 0.1 * min(caps, 2)
    emo_raw += 0.3 * min(celebrations, 2)
    intensity = round(_squash(emo_raw, 1.0), 3)
    if emo_terms:
        evidence.append(f"emotion cues {_short(emo_terms)}")
    if cries:
        evidence.append("crying marks (ㅠㅠ/😭)")
    if laughs:
        evidence.append("laughter (ㅋㅋ/lol)")
    if celebrations:
        evidence.append("celebration marks")

    # --- tone ------------------------------------------------------------------------
    tone_scores: dict[Tone, float] = {}
    tone_terms: dict[Tone, list[str]] = {}
    for tone, lex in _TONE_LEX.items():
        score, terms = _sum_unique(suppress_contained(by_owner.get(lex.owner, ())))
        tone_scores[tone] = score
        tone_terms[tone] = terms
    tone_scores[Tone.PLAYFUL] += 0.8 * min(laughs, 2)
    tone_scores[Tone.ANALYTICAL] += 0.7 * min(metrics, 3) + number_cmp
    tone_scores[Tone.URGENT] += 0.5 * min(exclaim_runs, 2) + 0.3 * min(caps, 2)
    tone_scores[Tone.ANXIOUS] += 0.3 * min(cries, 2)
    tone_scores[Tone.FRUSTRATED] += 0.2 * min(cries, 2)
    best_tone = max(tone_scores, key=lambda t: tone_scores[t])  # dict order breaks ties
    if tone_scores[best_tone] < 0.5:
        tone = Tone.CURIOUS if is_question else Tone.CALM
        evidence.append(f"tone {tone.value} (no strong tone cue)")
    else:
        tone = best_tone
        cues = tone_terms[tone]
        evidence.append(f"tone {tone.value}" + (f" from {_short(cues)}" if cues else ""))

    # --- pace ------------------------------------------------------------------------
    reflective, _ = _sum_unique(by_owner.get(_REFLECTIVE.owner, ()))
    ellipsis = norm.count("..") + norm.count("…")
    commas = norm.count(",")
    if chars == 0:
        pace = Pace.MEDIUM
    elif ((laughs or exclaim_runs or caps or celebrations) and words <= 15) or (
        words <= 3 and chars <= 12 and ("!" in norm or "?" in norm or cries)
    ):
        pace = Pace.BURST
    elif chars >= 60 and (reflective >= 1.0 or ellipsis >= 1) and exclaim_runs == 0:
        pace = Pace.CONTEMPLATIVE
    elif chars >= 140 and (commas >= 3 or len(sentences) <= 2):
        pace = Pace.FLOWING
    elif len(sentences) >= 4 and chars >= 120:
        pace = Pace.CONTEMPLATIVE
    else:
        pace = Pace.MEDIUM
    evidence.append(f"pace {pace.value} ({words} words, {len(sentences)} sentence(s))")

    # --- intent ----------------------------------------------------------------------
    intent_scores: dict[Intent, float] = {}
    intent_terms: dict[Intent, list[str]] = {}
    for intent, lex in _INTENT_LEX.items():
        score, terms = _sum_unique(suppress_contained(by_owner.get(lex.owner, ())))
        intent_scores[intent] = score
        intent_terms[intent] = terms
    intent_scores[Intent.PLANNING] += 0.5 * timeframe
    intent_scores[Intent.EXPRESSIVE] += 2.0 * intensity + 0.4 * min(laughs + cries, 2)
    if is_question:
        # A question about one's feelings is still expressive; dampen rather than erase.
        intent_scores[Intent.EXPRESSIVE] *= 0.6
    best_intent = max(intent_scores, key=lambda i: intent_scores[i])
    if intent_scores[best_intent] >= 1.0:
        intent = best_intent
        cues = intent_terms[intent]
        evidence.append(f"intent {intent.value}" + (f" from {_short(cues)}" if cues else ""))
    elif is_question or has_qword:
        intent = Intent.INQUIRY
        evidence.append("intent inquiry (question form)")
    elif intent_scores[Intent.EXPRESSIVE] >= 0.6:
        intent = Intent.EXPRESSIVE
        evidence.append("intent expressive (emotional statement)")
    else:
        intent = Intent.STATEMENT
        evidence.append("intent statement")

    if metrics:
        evidence.append(f"{metrics} measured value(s)")
    if code:
        evidence.append("code or error text")

    values: dict[str, float] = {
        "emotion_intensity": intensity,
        "metrics": round(_squash(metrics, 1.5), 3),
        "number_comparison": number_cmp,
        "timeframe": timeframe,
        "code": code,
        "question": 1.0 if is_question else 0.0,
        "laughter": min(laughs, 2) / 2.0,
        "crying": min(cries, 2) / 2.0,
        "celebration": min(celebrations, 2) / 2.0,
        "exclamation": min(exclaims, 4) / 4.0,
        "long_text": min(max(chars - 80, 0) / 200.0, 1.0),
        "short_text": 1.0 if 0 < chars <= 20 else 0.0,
        "numbers": min(max(numbers - 1, 0), 3) / 3.0,
    }
    analysis = ResonanceAnalysis(
        key=ResonanceKey(tone=tone, pace=pace, intent=intent),
        language=language,
        emotion_intensity=intensity,
        evidence=tuple(evidence),
    )
    return analysis, TextFeatures(norm, values, words, tuple(evidence))


def analyze(text: str) -> ResonanceAnalysis:
    """Read tone, pace, intent, language and emotional intensity from one learner message.

    Deterministic; never raises on odd input (empty, emoji-only, jamo-only, huge text).
    Text without any letters is reported as English.
    """
    return analyze_detailed(text)[0]
