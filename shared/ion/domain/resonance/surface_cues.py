"""How a message is written: marks, numbers, code, capitals, question form, script.

These surface cues need no lexicon: laughter (ㅋㅋ, lol), crying (ㅠㅠ, 😭), celebration,
exclamation runs, shouted words, measured values, timeframes, code, sentence and question
form, and the language. Cheap literal pre-checks skip regexes that cannot match, which keeps
long texts fast.
"""

from __future__ import annotations

import re
from typing import NamedTuple

from ion.domain.models import Language
from ion.domain.resonance.gated_regex import GatedRegex

__all__ = ["SurfaceCues", "detect_language", "read_surface_cues"]

_DIGIT_RE = re.compile(r"\d")

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

_HANGUL_RE = re.compile(r"[\uac00-\ud7a3\u3131-\u318e\u1100-\u11ff]")
_LATIN_RE = re.compile(r"[A-Za-z]")
_UPPER_RE = re.compile(r"[A-Z]")


def detect_language(raw: str, latin: int) -> Language:
    """`latin`: the count of Latin letters in `raw`."""
    hangul = len(_HANGUL_RE.findall(raw))
    # A Hangul syllable carries about as much as three Latin letters, so Korean sentences
    # sprinkled with English tech terms ("git rebase랑 merge 차이") still read as Korean.
    if hangul and hangul * 3 >= latin:
        return "ko"
    return "en"


class SurfaceCues(NamedTuple):
    """Counts and flags read from the form of one message (a tuple: built once per message)."""

    language: Language
    words: int
    chars: int  # not counting spaces
    sentences: int
    commas: int
    ellipses: int
    laughs: int
    cries: int
    celebrations: int
    exclaims: int
    exclaim_runs: int
    shouted_words: int
    metrics: int  # measured values: "800ms", "62%", "p95"
    numbers: int  # bare numbers that are not durations or head counts
    number_comparison: float
    timeframe: float
    code: float
    has_question_mark: bool
    is_question: bool  # a question mark or a question ending ("나요", "까요")
    has_question_word: bool


def _shouted_words(raw: str, language: Language, latin: int, code: float) -> int:
    """Words in capitals, 2 for a mostly-capitals Latin text; none in code.

    Upper-case words signal shouting only in prose; in code they are SQL keywords etc.
    Acronyms (API, AWS, CSV) are not shouting: count long caps words or mostly-caps text.
    In Korean prose the Latin words are names and acronyms ("AWS SAA VPC NAT"), so the
    mostly-caps test only applies when Latin is the main script.
    """
    upper = len(_UPPER_RE.findall(raw))
    # A caps word has at least five capitals, so fewer in the whole text means none.
    caps = 0 if code or upper < 5 else len(_CAPS_WORD_RE.findall(raw))
    if not code and language == "en" and upper >= 6 and upper >= 0.6 * latin:
        caps = max(caps, 2)
    return caps


def read_surface_cues(raw: str, norm: str) -> SurfaceCues:
    """The surface cues of `raw` (clipped) and `norm` (its normalised form)."""
    latin = len(_LATIN_RE.findall(raw))
    language = detect_language(raw, latin)
    has_digit = _DIGIT_RE.search(norm) is not None
    code = 1.0 if _has_any(norm, _CODE_HINTS) and _CODE_RE.search(raw) else 0.0
    has_question_mark = "?" in norm
    return SurfaceCues(
        language=language,
        words=len(norm.split()),
        chars=len(norm) - norm.count(" "),
        sentences=len([s for s in _SENTENCE_RE.split(norm) if s and s.strip()]),
        commas=norm.count(","),
        ellipses=norm.count("..") + norm.count("…"),
        laughs=len(_LAUGH_RE.findall(norm)) if _has_any(norm, _LAUGH_HINTS) else 0,
        cries=len(_CRY_RE.findall(norm)) if _CRY_GATE.may_match(norm) else 0,
        celebrations=len(_CELEBRATE_RE.findall(raw)) if _has_any(norm, _CELEBRATE_HINTS) else 0,
        exclaims=norm.count("!"),
        exclaim_runs=len(_EXCLAIM_RUN_RE.findall(norm)),
        shouted_words=_shouted_words(raw, language, latin, code),
        metrics=len(_NUMBER_UNIT_RE.findall(norm)) if has_digit or "→" in norm else 0,
        numbers=len(_BARE_NUMBER_RE.findall(norm)) if has_digit else 0,
        number_comparison=1.0 if has_digit and _VS_NUMBERS_RE.search(norm) else 0.0,
        timeframe=1.0 if _TIMEFRAME_RE.search(norm) else 0.0,
        code=code,
        has_question_mark=has_question_mark,
        # Sentence-final endings are checked on the last few characters only (cheap on long
        # text).
        is_question=has_question_mark or bool(_QUESTION_END_RE.search(norm[-12:])),
        has_question_word=bool(_QWORD_RE.search(norm)),
    )
