"""GatedSet: regexes read together open exactly the regexes their own literal checks
would, so the first match in order is the same as searching each regex in turn."""

from __future__ import annotations

import json
import re

import pytest

from ion.domain.personas import load_catalog
from ion.domain.resonance import GatedRegex, GatedSet
from ion.domain.routing import Router
from ion.domain.safety import _fold, load_rules
from ion.services.evaluation import load_labelled_set
from tests.support.paths import REPO


def gates(*patterns: str) -> list[GatedRegex]:
    return [GatedRegex(re.compile(p)) for p in patterns]


def test_a_literal_found_opens_the_regexes_of_its_prefixes_and_no_others() -> None:
    # "abc" is the longest literal at position 0: "ab" is there too, and "bc" at 1.
    s = GatedSet(gates("ab+c?", "abc", "bcd|bc", "zz", "x[0-9]"))
    assert s.candidates("abc") == [0, 1, 2]
    assert s.candidates("-ab-") == [0]
    assert s.candidates("bc") == [2]
    assert s.candidates("nothing here") == []
    assert s.first("xabc") == 0
    assert s.first("abbbb") == 0
    assert s.first("zbcd") == 2


def test_regexes_without_known_literals_always_run_and_digits_open_theirs() -> None:
    s = GatedSet(gates(r"\d+ms", r"^\s*$", r"p\d\d"))
    assert s.candidates("") == [1]
    assert s.candidates("took 800ms") == [0, 1]  # a digit, and "ms"
    assert s.candidates("p95 is high") == [1, 2]
    assert s.first("   ") == 1
    assert s.first("p95 took 800ms") == 0
    assert GatedSet([]).first("anything") is None


def _texts() -> list[str]:
    texts: list[str] = []
    for path in sorted((REPO / "data" / "safety" / "heldout").glob("*.jsonl"))[:6]:
        for line in path.read_text(encoding="utf-8").splitlines():
            item = json.loads(line)
            texts += [item["text"], *item.get("history", [])]
    for path in sorted((REPO / "data" / "routing" / "train").glob("*.jsonl"))[:3]:
        texts += [item.message for item in load_labelled_set(path)]
    assert len(texts) > 1000
    return texts


TEXTS = _texts()


@pytest.mark.parametrize("kind", ["signals", "weak_signals", "guards", "discussion", "farewell"])
def test_the_crisis_rules_read_together_open_what_each_rule_would(kind: str) -> None:
    rules = load_rules()
    group = getattr(rules, kind)
    each = [g if isinstance(g, GatedRegex) else g[1] for g in group]
    together = GatedSet(each)
    for text in TEXTS:
        folded = _fold(text)
        assert together.candidates(folded) == [
            i for i, gate in enumerate(each) if gate.may_match(folded)
        ]
        first = next((i for i, gate in enumerate(each) if gate.search(folded)), None)
        assert together.first(folded) == first


def test_the_routers_regexes_read_together_open_what_each_would() -> None:
    router = Router(load_catalog())
    each = [gate for cp in router._compiled for gate, _w, _s in cp.patterns]
    together = GatedSet(each)
    for text in TEXTS:
        norm = text.casefold()
        assert together.candidates(norm) == [
            i for i, gate in enumerate(each) if gate.may_match(norm)
        ]
