"""The crisis rules read every learner message before anything else, so no message may
make them backtrack without end: a repeated group whose runs can split the same words in
many ways (`(\\S+\\s*){0,12}`) takes minutes on one short unspaced sentence."""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from re import _constants as sre
from re import _parser as sre_parse
from typing import Any

import pytest
import yaml

from ion.domain.resonance.gated_regex import GatedRegex
from ion.domain.safety import (
    LONGEST_RUN,
    CrisisDetector,
    _decompose_pattern,
    _fold,
    default_rules_path,
    load_rules,
)

#: Characters standing for every class the rules use: Latin, digits, Hangul syllables
#: and jamo, spaces, line breaks, punctuation, emoji.
_SAMPLE = ("a", "Z", "1", "_", "가", "\u1100", "\u1161", " ", "\n", ".", "'", "-", "😂")
_CATEGORIES = {
    sre.CATEGORY_SPACE: r"\s",
    sre.CATEGORY_NOT_SPACE: r"\S",
    sre.CATEGORY_WORD: r"\w",
    sre.CATEGORY_NOT_WORD: r"\W",
    sre.CATEGORY_DIGIT: r"\d",
    sre.CATEGORY_NOT_DIGIT: r"\D",
}

Node = tuple[Any, Any]


def _chars(node: Node, sample: frozenset[str]) -> set[str]:
    """The sample characters one single-character node matches (none for other nodes)."""
    op, arg = node
    if op is sre.LITERAL:
        return {chr(arg)}
    if op is sre.ANY:
        return {ch for ch in sample if ch != "\n"}
    if op is not sre.IN:
        return set()
    negate = bool(arg) and arg[0][0] is sre.NEGATE

    def hit(ch: str) -> bool:
        for item_op, item in arg:
            if item_op is sre.LITERAL and ord(ch) == item:
                return True
            if item_op is sre.RANGE and item[0] <= ord(ch) <= item[1]:
                return True
            if item_op is sre.CATEGORY and re.fullmatch(_CATEGORIES[item], ch):
                return True
        return False

    return {ch for ch in sample if hit(ch) != negate}


def _run(node: Node, sample: frozenset[str]) -> set[str]:
    """The characters of a run with no upper bound (`\\S+`, `\\w*`), else nothing."""
    op, arg = node
    if op in (sre.MAX_REPEAT, sre.MIN_REPEAT) and arg[1] is sre.MAXREPEAT and len(arg[2]) == 1:
        return _chars(arg[2][0], sample)
    return set()


def _nullable(node: Node) -> bool:
    width: tuple[int, int] = sre_parse.SubPattern(sre_parse.State(), [node]).getwidth()
    return width[0] == 0


def _body(nodes: Iterable[Node]) -> list[Node]:
    items = list(nodes)
    if len(items) == 1 and items[0][0] is sre.SUBPATTERN:
        return list(items[0][1][3])
    return items


def ambiguous_repeats(source: str) -> list[str]:
    """Repeated groups in which one iteration's last run and the next one's first can
    share characters: the engine then tries every split of a word between them."""
    return _ambiguous(sre_parse.parse(source, re.IGNORECASE), frozenset(_SAMPLE) | set(source))


def _ambiguous(nodes: Sequence[Node], sample: frozenset[str]) -> list[str]:
    found = []
    for op, arg in nodes:
        if op in (sre.MAX_REPEAT, sre.MIN_REPEAT):
            body = _body(arg[2])
            if arg[1] is sre.MAXREPEAT or arg[1] > 1:
                head: set[str] = set()
                for node in body:
                    head |= _run(node, sample) or _chars(node, sample)
                    if not _nullable(node):
                        break
                tail: set[str] = set()
                for node in reversed(body):
                    tail |= _run(node, sample)
                    if not _nullable(node):
                        break
                if head & tail:
                    found.append(str(sre_parse.SubPattern(sre_parse.State(), body)))
            found += _ambiguous(body, sample)
        elif op is sre.SUBPATTERN:
            found += _ambiguous(arg[3], sample)
        elif op is sre.BRANCH:
            for alternative in arg[1]:
                found += _ambiguous(alternative, sample)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            found += _ambiguous(arg[1], sample)
    return found


def _sources() -> list[str]:
    data = yaml.safe_load(default_rules_path().read_text(encoding="utf-8"))
    return [
        source
        for section in ("signals", "weak_signals", "guards")
        for patterns in data.get(section, {}).values()
        for source in patterns
    ]


@pytest.mark.parametrize(
    ("source", "ambiguous"),
    [
        (r"(\S+\s*){0,4}유서", True),
        (r"(\s*\S+)+", True),
        (r"(x\S*)+y", True),
        (r"(\S+\s+){0,4}유서", False),
        (r"(\S+(\s+\S+){0,3}\s*)?유서", False),
        (r"\S*(\s+\S+){0,2}\s*유서", False),
        (r".{0,40}\bdie", False),
    ],
)
def test_the_shape_check_tells_ambiguous_repeats(source: str, ambiguous: bool) -> None:
    assert bool(ambiguous_repeats(source)) is ambiguous


def test_no_rule_repeats_a_group_that_can_split_the_same_words() -> None:
    sources = _sources()
    assert len(sources) > 100
    offending = [s for s in sources if ambiguous_repeats(s)]
    assert offending == []


def test_runs_are_bounded_when_compiled() -> None:
    assert _decompose_pattern(r"수면제\S*(\s+\S+)?\w*x\w+") == _decompose_pattern(
        rf"수면제\S{{0,{LONGEST_RUN}}}(\s+\S{{1,{LONGEST_RUN}}})?"
        rf"\w{{0,{LONGEST_RUN}}}x\w{{1,{LONGEST_RUN}}}"
    )
    assert _decompose_pattern(r"a\\S+") == r"a\\S+"  # an escaped backslash, then S+


def test_whitespace_runs_are_read_as_one_space_or_one_line_break() -> None:
    assert _fold("I  WANT\t\tto\n\n  die") == "i want to\ndie"


@pytest.mark.parametrize(
    "message",
    [
        # A real crisis typed without spaces: the committed rules took minutes on it.
        "죽고 싶다. 자해한 적이 있어요그런데요즘은다시너무힘들어서",
        "죽고 싶다. 자해한 적이 있" + "어요그런데요즘은다시너무힘들어서" * 200,
        "I want to die" + " " * 3980 + "x",
        "수면제 모아놨어요 " + "수면제약" * 990,
    ],
)
def test_long_adversarial_messages_are_read(message: str) -> None:
    assessment = CrisisDetector(load_rules()).assess(message[:4000])
    assert assessment.crisis


def test_a_case_insensitive_pattern_is_gated_only_on_case_folded_text() -> None:
    rx = re.compile(r"\bwant\s+to\s+(die|disappear)", re.IGNORECASE)
    assert GatedRegex(rx).may_match("i need a vacation")  # text not said to be folded
    gated = GatedRegex(rx, text_case_folded=True)
    assert not gated.may_match("i need a vacation")
    assert gated.search("I WANT TO DIE".casefold())
    # A letter that folds to several has no needle: the pattern always runs.
    assert GatedRegex(re.compile("straße", re.IGNORECASE), text_case_folded=True).may_match("x")


def test_every_rule_runs_only_when_its_words_are_there() -> None:
    gates = [gate for _, gate in load_rules().named()]
    assert len(gates) > 100
    assert [g.pattern.pattern for g in gates if g.may_match("")] == []
