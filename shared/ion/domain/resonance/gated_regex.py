"""Literal pre-checks for regexes: `GatedRegex` only runs a pattern when it can match.

`re.search` tries every position of the text, so a rare pattern costs as much as a common
one; most cue regexes need a literal ("people", "남", a digit) that most messages do not
contain. `str.__contains__` answers that far faster, and a regex whose required literals are
all absent cannot match, so skipping it changes nothing.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["GatedRegex", "GatedSet"]

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


def _needles_for(rx: re.Pattern[str], text_case_folded: bool) -> _Needles | None:
    if rx.flags & re.LOCALE or (rx.flags & re.IGNORECASE and not text_case_folded):
        return None  # a case-insensitive pattern is gated only on case-folded text
    try:
        # The stdlib's own regex parser (private, hence the guarded import): any change in its
        # shape only disables the pre-check, never a match.
        parser = importlib.import_module("re._parser")
        needles = _required_needles(parser.parse(rx.pattern, rx.flags).data)
    except Exception:  # an optimisation must never break routing: fall back to searching
        return None
    if needles is None or not rx.flags & re.IGNORECASE:
        return needles
    # The text arrives case-folded, so a literal matched case-insensitively is in it folded;
    # a letter that folds to several (ß → ss) gets no needle.
    if any(len(ch.casefold()) != 1 for s in needles.strings for ch in s):
        return None
    return _Needles(frozenset(s.casefold() for s in needles.strings), needles.digit)


class GatedRegex:
    """A compiled regex that is only run when its required literals occur in the text.

    The needles are derived on first use (not at import or construction time).
    """

    __slots__ = ("_digit", "_folded", "_ready", "_strings", "pattern")

    def __init__(self, pattern: re.Pattern[str], *, text_case_folded: bool = False) -> None:
        """`text_case_folded`: every text searched is already `str.casefold()`ed, so a
        case-insensitive pattern can be gated too."""
        self.pattern = pattern
        self._folded = text_case_folded
        self._ready = False
        self._strings: tuple[str, ...] | None = None
        self._digit = False

    def needles(self) -> tuple[tuple[str, ...] | None, bool]:
        """The literals one of which every match contains (None: unknown, always run), and
        whether a digit does instead."""
        if not self._ready:
            needles = _needles_for(self.pattern, self._folded)
            if needles is not None:
                self._strings = tuple(sorted(needles.strings))
                self._digit = needles.digit
            self._ready = True
        return self._strings, self._digit

    def may_match(self, text: str) -> bool:
        """False only when `pattern` cannot match anywhere in `text` (or any substring of it)."""
        if not self._ready:
            self.needles()
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


class GatedSet:
    """Gated regexes read together, in order: one scan of the text finds every literal any
    of them needs, and only the regexes one of whose literals was found are run.

    Testing each regex's literals costs a loop of substring tests per regex; a set of a few
    hundred regexes costs ten times less as one regex over a trie of all their literals,
    found at every position (a lookahead, longest literal first, each literal then standing
    for its prefixes too). Built on first use, like the literals themselves.
    """

    __slots__ = ("_always", "_by_literal", "_digit_gated", "_gates", "_ready", "_scan")

    def __init__(self, gates: Sequence[GatedRegex]) -> None:
        self._gates = tuple(gates)
        self._ready = False
        self._scan: re.Pattern[str] | None = None
        # Literal → the gates (indices) it opens, with the gates of its prefix literals.
        self._by_literal: dict[str, frozenset[int]] = {}
        self._always: frozenset[int] = frozenset()  # gates without known literals
        self._digit_gated: frozenset[int] = frozenset()

    @property
    def gates(self) -> tuple[GatedRegex, ...]:
        return self._gates

    def _build(self) -> None:
        opens: dict[str, set[int]] = {}
        always: set[int] = set()
        digit: set[int] = set()
        for index, gate in enumerate(self._gates):
            strings, needs_digit = gate.needles()
            if strings is None:
                always.add(index)
                continue
            if needs_digit:
                digit.add(index)
            for literal in strings:
                opens.setdefault(literal, set()).add(index)
        # A literal found at a position is the longest there: its prefixes are there too.
        self._by_literal = {
            literal: frozenset().union(
                *(gates for prefix, gates in opens.items() if literal.startswith(prefix))
            )
            for literal in opens
        }
        self._always, self._digit_gated = frozenset(always), frozenset(digit)
        if opens:
            self._scan = re.compile(f"(?=({_trie_pattern(opens)}))")
        self._ready = True

    def candidates(self, text: str) -> list[int]:
        """The indices of the gates whose regex may match `text`, in order."""
        if not self._ready:
            self._build()
        found = set(self._always)
        if self._scan is not None:
            by_literal = self._by_literal
            for literal in {m.group(1) for m in self._scan.finditer(text)}:
                found |= by_literal[literal]
        if self._digit_gated and _DIGIT_RE.search(text) is not None:
            found |= self._digit_gated
        return sorted(found)

    def first(self, text: str) -> int | None:
        """The index of the first gate whose regex matches `text` (as searching each in
        order would find), or None."""
        gates = self._gates
        for index in self.candidates(text):
            if gates[index].pattern.search(text) is not None:
                return index
        return None


def _trie_pattern(literals: Iterable[str]) -> str:
    """A regex matching any of `literals`, the longest one where several start."""
    trie: dict[str, Any] = {}
    for literal in literals:
        node = trie
        for char in literal:
            node = node.setdefault(char, {})
        node[""] = {}

    def branch(node: dict[str, Any]) -> str:
        ends = "" in node
        alternatives = [re.escape(char) + branch(sub) for char, sub in sorted(node.items()) if char]
        if not alternatives:
            return ""
        body = alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"
        # Greedy: the longer literal when it is there, this one otherwise.
        return f"(?:{body})?" if ends else body

    return branch(trie)
