"""The matching engine: normalised text, weighted cue terms and one-pass scans.

Korean matching is substring based on word stems ("불안" matches "불안해요", "불안했는데"),
which tolerates particles and endings without a morphological analyser; Latin terms must
start on a word boundary ("plan" matches "planning" but not "explanation").
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "MAX_ANALYZED_CHARS",
    "Hit",
    "Lexicon",
    "LexiconSet",
    "clip",
    "is_hangul",
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


def is_hangul(ch: str) -> bool:
    o = ord(ch)
    return 0xAC00 <= o <= 0xD7A3 or 0x3131 <= o <= 0x318E or 0x1100 <= o <= 0x11FF


def _is_word_char(ch: str) -> bool:
    # Hangul next to a Latin word is a boundary: Korean particles attach directly ("git을").
    return ch.isascii() and (ch.isalnum() or ch == "_")


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
    if " " in needle and any(is_hangul(c) for c in needle):
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
            hangul = any(is_hangul(c) for c in needle)
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
        # Built on the first `scan`: most lexicons are only ever scanned inside a bigger
        # LexiconSet, so building their own matcher up front would only slow the cold start.
        self._matcher: LexiconSet | None = None

    def __len__(self) -> int:
        return len(self.terms)

    def scan(self, text: str) -> list[Hit]:
        """All boundary-respecting occurrences in an already normalised `text`."""
        if self._matcher is None:
            self._matcher = LexiconSet([self])
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
