"""Offline evaluation of the router against labelled JSON Lines sets (see PERSONAS.md).

Scoring convention (documented because sets list defensible alternatives in `also_ok`):
* accuracy: correct when `primary == persona` or `primary in also_ok`;
* top2: correct when `persona` or any `also_ok` is the primary or the secondary.
The confusion table counts gold `persona` (rows) against `primary` (columns).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from ion.domain.routing import Router
from ion.errors import ValidationFailed

__all__ = [
    "EvalReport",
    "ItemResult",
    "LabelledItem",
    "LabelledSetError",
    "evaluate",
    "load_labelled_set",
]


class LabelledSetError(ValidationFailed):
    """A labelled set file is missing or malformed (message names file and line)."""


class LabelledItem(BaseModel):
    """One labelled message; multi-turn items label the last of `turns`."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    persona: str = Field(min_length=1)
    also_ok: tuple[str, ...] = ()
    lang: str | None = None
    text: str | None = None
    turns: tuple[str, ...] | None = None
    writer: str | None = None

    @model_validator(mode="after")
    def _text_or_turns(self) -> LabelledItem:
        if (self.text is None) == (self.turns is None):
            raise ValueError("exactly one of 'text' or 'turns' is required")
        if self.turns is not None and not self.turns:
            raise ValueError("'turns' must not be empty")
        return self

    @property
    def message(self) -> str:
        """The message being labelled (the last turn for multi-turn items)."""
        return self.turns[-1] if self.turns else (self.text or "")

    @property
    def history(self) -> tuple[str, ...]:
        return self.turns[:-1] if self.turns else ()

    def accepted(self) -> frozenset[str]:
        return frozenset((self.persona, *self.also_ok))


def load_labelled_set(path: Path | str) -> list[LabelledItem]:
    """Read a JSON Lines labelled set; blank lines and `#` comment lines are skipped."""
    return _load_jsonl(path, LabelledItem)


_Item = TypeVar("_Item", "LabelledItem", "SafetyItem")


def _load_jsonl(path: Path | str, model: type[_Item]) -> list[_Item]:
    """Validated items of a JSON Lines set (errors name the file and line; ids unique)."""
    p = Path(path)
    try:
        lines = p.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LabelledSetError(f"cannot read labelled set {p}: {exc}") from exc
    items: list[_Item] = []
    seen: set[str] = set()
    for lineno, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            data: Any = json.loads(line)
        except json.JSONDecodeError as exc:
            raise LabelledSetError(f"{p}: line {lineno}: invalid JSON: {exc.msg}") from exc
        if not isinstance(data, dict):
            raise LabelledSetError(f"{p}: line {lineno}: expected a JSON object")
        try:
            item = model.model_validate(data)
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(x) for x in e['loc']) or 'item'}: {e['msg']}" for e in exc.errors()
            )
            raise LabelledSetError(f"{p}: line {lineno}: invalid item: {problems}") from exc
        if item.id in seen:
            raise LabelledSetError(f"{p}: line {lineno}: duplicate id {item.id!r}")
        seen.add(item.id)
        items.append(item)
    return items


@dataclass(frozen=True, slots=True)
class ItemResult:
    item: LabelledItem
    primary: str
    secondary: str | None
    correct: bool
    top2: bool
    reason: str
    confidence: float = 0.0


@dataclass(slots=True)
class EvalReport:
    results: list[ItemResult]
    labels: list[str] = field(default_factory=list)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def accuracy(self) -> float:
        return sum(r.correct for r in self.results) / self.n if self.results else 0.0

    @property
    def top2(self) -> float:
        return sum(r.top2 for r in self.results) / self.n if self.results else 0.0

    @property
    def confusion(self) -> dict[str, dict[str, int]]:
        """gold persona -> predicted primary -> count."""
        table: dict[str, dict[str, int]] = {g: dict.fromkeys(self.labels, 0) for g in self.labels}
        for r in self.results:
            row = table.setdefault(r.item.persona, dict.fromkeys(self.labels, 0))
            row[r.primary] = row.get(r.primary, 0) + 1
        return table

    @property
    def calibration_error(self) -> float:
        """Expected calibration error of the routing confidence against correctness."""
        return expected_calibration_error(
            [r.confidence for r in self.results], [r.correct for r in self.results]
        )

    def errors(self) -> list[ItemResult]:
        return [r for r in self.results if not r.correct]

    def render(self, *, show_errors: bool = False) -> str:
        """Confusion table (+ optional misroutes); the last line is the summary line."""
        table = self.confusion
        cols = sorted({c for row in table.values() for c in row}, key=self._order)
        rows = sorted(table, key=self._order)
        width = max([6, *(len(c) for c in cols), *(len(r) for r in rows)]) + 1
        out = ["gold \\ routed".ljust(14) + "".join(c.rjust(width) for c in cols) + "   recall"]
        for g in rows:
            counts = table[g]
            total = sum(counts.values())
            recall = counts.get(g, 0) / total if total else 0.0
            out.append(
                g.ljust(14)
                + "".join(str(counts.get(c, 0)).rjust(width) for c in cols)
                + f"   {recall:.3f}"
            )
        for lang in sorted({r.item.lang or "?" for r in self.results}):
            part = [r for r in self.results if (r.item.lang or "?") == lang]
            acc = sum(r.correct for r in part) / len(part)
            out.append(f"{lang}: accuracy={acc:.3f} n={len(part)}")
        multi = [r for r in self.results if r.item.history]
        if multi:
            acc = sum(r.correct for r in multi) / len(multi)
            out.append(f"multi-turn: accuracy={acc:.3f} n={len(multi)}")
        out.append(f"calibration: ECE={self.calibration_error:.3f} (10 confidence bins)")
        if show_errors:
            for r in self.errors():
                ok = "/".join(sorted(r.item.accepted()))
                out.append(
                    f"  MISS {r.item.id}: gold={ok} got={r.primary} ({r.confidence:.2f})"
                    f" | {r.item.message[:70]}"
                )
        out.append(f"accuracy={self.accuracy:.3f} top2={self.top2:.3f} n={self.n}")
        return "\n".join(out)

    def _order(self, pid: str) -> tuple[int, str]:
        return (self.labels.index(pid), pid) if pid in self.labels else (len(self.labels), pid)


def evaluate(router: Router, items: Iterable[LabelledItem]) -> EvalReport:
    """Route every item (multi-turn items with their earlier turns as history)."""
    results: list[ItemResult] = []
    for item in items:
        routed = router.route(item.message, history=item.history)
        d = routed.decision
        accepted = item.accepted()
        top: Sequence[str | None] = (d.primary, d.secondary)
        results.append(
            ItemResult(
                item=item,
                primary=d.primary,
                secondary=d.secondary,
                correct=d.primary in accepted,
                top2=any(t in accepted for t in top if t is not None),
                reason=d.reason,
                confidence=d.confidence,
            )
        )
    return EvalReport(results=results, labels=list(router.catalog.ids))


def expected_calibration_error(
    confidence: Sequence[float], correct: Sequence[bool], bins: int = 10
) -> float:
    """ECE: |accuracy − mean confidence| per equal-width confidence bin, weighted by count."""
    groups: dict[int, list[tuple[float, bool]]] = {}
    for c, ok in zip(confidence, correct, strict=True):
        groups.setdefault(min(int(c * bins), bins - 1), []).append((c, ok))
    total = 0.0
    for members in groups.values():
        mean_conf = sum(c for c, _ in members) / len(members)
        accuracy = sum(ok for _, ok in members) / len(members)
        total += len(members) * abs(accuracy - mean_conf)
    return total / len(confidence) if confidence else 0.0


# --- safety ----------------------------------------------------------------------------


class SafetyItem(BaseModel):
    """One labelled crisis-set message: `{"id","lang","text","crisis"}` (+ `history`)."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str = Field(min_length=1)
    text: str = Field(min_length=1)
    crisis: bool
    lang: str | None = None
    history: tuple[str, ...] = ()
    writer: str | None = None


def load_safety_set(path: Path | str) -> list[SafetyItem]:
    """Read a JSON Lines crisis set (same rules and errors as the routing sets)."""
    return _load_jsonl(path, SafetyItem)


@dataclass(frozen=True, slots=True)
class SafetyResult:
    item: SafetyItem
    predicted: bool
    score: float
    reasons: tuple[str, ...]


@dataclass(slots=True)
class SafetyReport:
    results: list[SafetyResult]

    @staticmethod
    def _rates(results: Sequence[SafetyResult]) -> tuple[float, float, int]:
        pos = [r for r in results if r.item.crisis]
        neg = [r for r in results if not r.item.crisis]
        recall = sum(r.predicted for r in pos) / len(pos) if pos else 1.0
        fpr = sum(r.predicted for r in neg) / len(neg) if neg else 0.0
        return recall, fpr, len(results)

    @property
    def n(self) -> int:
        return len(self.results)

    @property
    def recall(self) -> float:
        return self._rates(self.results)[0]

    @property
    def fpr(self) -> float:
        return self._rates(self.results)[1]

    def render(self, *, show_errors: bool = False) -> str:
        out = []
        for lang in sorted({r.item.lang or "?" for r in self.results}):
            recall, fpr, n = self._rates([r for r in self.results if (r.item.lang or "?") == lang])
            out.append(f"{lang}: recall={recall:.3f} fpr={fpr:.3f} n={n}")
        if show_errors:
            for r in self.results:
                if r.predicted != r.item.crisis:
                    kind = "MISS" if r.item.crisis else "FALSE ALARM"
                    why = ",".join(r.reasons) or f"score {r.score:.2f}"
                    out.append(f"  {kind} {r.item.id} ({why}) | {r.item.text[:70]}")
        recall, fpr, n = self._rates(self.results)
        out.append(f"recall={recall:.3f} fpr={fpr:.3f} n={n}")
        return "\n".join(out)


class CrisisAssessor(Protocol):
    def assess(self, message: str, history: Sequence[str] = ()) -> Any: ...


def evaluate_safety(detector: CrisisAssessor, items: Iterable[SafetyItem]) -> SafetyReport:
    results = []
    for item in items:
        verdict = detector.assess(item.text, item.history)
        results.append(SafetyResult(item, verdict.crisis, verdict.score, verdict.reasons))
    return SafetyReport(results)
