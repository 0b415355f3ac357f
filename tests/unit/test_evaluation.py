"""Labelled-set loading, evaluation report, and the accuracy bar on the dev set."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.services.evaluation import LabelledSetError, evaluate, load_labelled_set
from tests.support.paths import REPO

EXTRA_SET = REPO / "data" / "routing" / "train" / "legacy_extra.jsonl"


def dev_set_path() -> Path:
    env = os.environ.get("ION_ROUTING_DEV_SET")
    path = Path(env) if env else REPO.parent / "shared" / "routing" / "dev_set.jsonl"
    if not path.is_file():
        pytest.fail(
            f"routing dev set not found at {path}; set ION_ROUTING_DEV_SET to its location "
            "(default: <repo>/../shared/routing/dev_set.jsonl)"
        )
    return path


@pytest.fixture(scope="module")
def router() -> Router:
    return Router(load_catalog())


def test_dev_set_accuracy(router: Router) -> None:
    items = load_labelled_set(dev_set_path())
    report = evaluate(router, items)
    print(report.render(show_errors=True))
    assert report.n == len(items) >= 100
    assert report.accuracy >= 0.85
    assert report.top2 >= 0.95


def test_extra_held_out_set_accuracy(router: Router) -> None:
    items = load_labelled_set(EXTRA_SET)
    assert len(items) >= 40
    assert {i.lang for i in items} == {"ko", "en"}
    assert any(i.turns for i in items)
    report = evaluate(router, items)
    print(report.render(show_errors=True))
    assert report.accuracy >= 0.9


def write(tmp_path: Path, *lines: str) -> Path:
    f = tmp_path / "set.jsonl"
    f.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return f


def test_load_text_and_turns_items(tmp_path: Path) -> None:
    f = write(
        tmp_path,
        '{"id": "a", "lang": "en", "text": "explain closures", "persona": "elro", "also_ok": []}',
        "",
        "# comment line",
        '{"id": "b", "lang": "ko", "turns": ["클로저가 뭐예요?", "더 자세히요"], '
        '"persona": "elro"}',
    )
    items = load_labelled_set(f)
    assert [i.id for i in items] == ["a", "b"]
    assert items[0].message == "explain closures" and items[0].history == ()
    assert items[1].message == "더 자세히요" and items[1].history == ("클로저가 뭐예요?",)
    assert items[1].also_ok == ()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "a", "text": "x"', "line 2: invalid JSON"),
        ('["not", "an", "object"]', "line 2: expected a JSON object"),
        ('{"id": "a", "persona": "lua"}', "line 2: invalid item"),
        ('{"id": "a", "persona": "lua", "text": "x", "turns": ["y"]}', "line 2: invalid item"),
        ('{"id": "a", "persona": "lua", "turns": []}', "line 2: invalid item"),
        ('{"id": "ok", "text": "x", "persona": "lua"}', "line 2: duplicate id 'ok'"),
        ('{"text": "x", "persona": "lua"}', "id"),
    ],
)
def test_malformed_lines_fail_with_line_number(tmp_path: Path, line: str, message: str) -> None:
    f = write(tmp_path, '{"id": "ok", "text": "fine", "persona": "lua"}', line)
    with pytest.raises(LabelledSetError, match=re.escape(message)) as info:
        load_labelled_set(f)
    assert str(f) in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(LabelledSetError, match="cannot read"):
        load_labelled_set(tmp_path / "nope.jsonl")


def test_report_counts_also_ok_and_top2(router: Router, tmp_path: Path) -> None:
    f = write(
        tmp_path,
        # routed to lua; gold elro but lua is also ok -> correct
        '{"id": "1", "text": "I want to quit, I feel worthless", "persona": "elro", '
        '"also_ok": ["lua"]}',
        # routed to lua; gold riri -> wrong (and riri is not in the top 2)
        '{"id": "2", "text": "I got the offer!!! so happy", "persona": "riri"}',
        '{"id": "3", "text": "explain how dependency injection works", "persona": "elro"}',
        '{"id": "4", "turns": ["explain closures", "more detail please"], "persona": "elro"}',
    )
    report = evaluate(router, load_labelled_set(f))
    assert report.n == 4
    assert report.accuracy == pytest.approx(0.75)
    assert [r.item.id for r in report.errors()] == ["2"]
    assert report.confusion["elro"]["lua"] == 1 and report.confusion["riri"]["lua"] == 1
    text = report.render(show_errors=True)
    last = text.splitlines()[-1]
    assert re.fullmatch(r"accuracy=\d\.\d{3} top2=\d\.\d{3} n=\d+", last)
    assert last.startswith("accuracy=0.750 ")
    assert "MISS 2" in text and "recall" in text.splitlines()[0]


def test_empty_report_renders() -> None:
    report = evaluate(Router(load_catalog()), [])
    assert report.render().splitlines()[-1] == "accuracy=0.000 top2=0.000 n=0"
