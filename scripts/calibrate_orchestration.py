"""Calibrate and check the single/duo/clarify rule (the `orchestration` section of personas.yaml).

Every message is routed as the first message of a new conversation by the router chat
uses (lexicons + semantic head, no feedback, no judge), then planned by the rule.

  python scripts/calibrate_orchestration.py            # grid search on the training data
  python scripts/calibrate_orchestration.py --report   # the catalog's thresholds as they are
  python scripts/calibrate_orchestration.py --check FILE  # duo/clarify shares on FILE

Training data only: data/orchestration/train (labelled single/duo/clarify messages) and
data/routing/train (single-need messages: how often would they become a duo or a question).
`--check FILE` only reports the share of duo and clarify turns on FILE with the catalog's
thresholds; it never tunes anything.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ion.bootstrap import build_router, load_embedder
from ion.domain.models import Language, RoutingDecision
from ion.domain.orchestration import OrchestrationPolicy, TurnPlan, plan_turn
from ion.domain.personas import load_catalog
from ion.domain.routing import Router

REPO = Path(__file__).resolve().parent.parent
TRAIN_LABELLED = sorted((REPO / "data" / "orchestration" / "train").glob("*.jsonl"))
TRAIN_SINGLE = sorted((REPO / "data" / "routing" / "train").glob("*.jsonl"))
# Upper bounds on the training single-need messages (most messages must stay single):
# duos whose second persona the writer did not also accept, and clarifying questions.
MAX_UNWARRANTED_DUO_RATE = 0.10
MAX_CLARIFY_RATE = 0.01


@dataclass(frozen=True)
class Routed:
    text: str
    language: Language
    decision: RoutingDecision
    strengths: dict[str, float]
    mode: str | None = None  # the label, when labelled
    personas: tuple[str, ...] = ()
    # Single-need corpus: the labelled persona and the others its writer also accepts.
    acceptable: frozenset[str] = frozenset()


def read_rows(paths: Iterable[Path]) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    for path in paths:
        with path.open(encoding="utf-8") as lines:
            rows.extend(json.loads(line) for line in lines if line.strip())
    # Multi-turn rows (`turns`) are not first messages: left out.
    return [row for row in rows if isinstance(row.get("text"), str)]


def route_all(rows: list[dict[str, object]], router: Router, cues: Router) -> list[Routed]:
    routed = []
    for row in rows:
        text = str(row["text"])
        result = router.route(text)
        routed.append(
            Routed(
                text=text,
                language=result.analysis.language,
                decision=result.decision,
                strengths=cues.cue_strengths(text),
                mode=str(row["mode"]) if "mode" in row else None,
                personas=tuple(str(p) for p in _strings(row.get("personas"))),
                acceptable=frozenset([str(row.get("persona", "")), *_strings(row.get("also_ok"))]),
            )
        )
    return routed


def _strings(value: object) -> list[str]:
    return [str(v) for v in value] if isinstance(value, list) else []


#: Each part of a message is routed once, whatever thresholds are tried.
_PARTS: dict[str, tuple[str, float]] = {}
_PART_ROUTER: list[Router] = []


def route_part(part: str) -> tuple[str, float]:
    if part not in _PARTS:
        decision = _PART_ROUTER[0].route(part).decision
        _PARTS[part] = (decision.primary, decision.confidence)
    return _PARTS[part]


def plan(policy: OrchestrationPolicy, item: Routed) -> TurnPlan:
    return plan_turn(
        policy,
        decision=item.decision,
        strengths=item.strengths,
        route_part=route_part,
        text=item.text,
        language=item.language,
        first_message=True,
        after_clarify=False,
        crisis=False,
    )


@dataclass(frozen=True)
class Score:
    duo_precision: float
    duo_recall: float
    duo_pair_right: float
    clarify_precision: float
    clarify_recall: float
    single_kept: float
    corpus_duo_rate: float
    corpus_clarify_rate: float
    # Duos on the corpus whose two personas are not both acceptable for the message.
    corpus_unwarranted_duo_rate: float

    def line(self) -> str:
        return (
            f"duo P={self.duo_precision:.2f} R={self.duo_recall:.2f}"
            f" pair={self.duo_pair_right:.2f} | clarify P={self.clarify_precision:.2f}"
            f" R={self.clarify_recall:.2f} | labelled single kept={self.single_kept:.2f}"
            f" | single-need corpus: duo {self.corpus_duo_rate:.1%}"
            f" (unwarranted {self.corpus_unwarranted_duo_rate:.1%}),"
            f" clarify {self.corpus_clarify_rate:.1%}"
        )


def score(policy: OrchestrationPolicy, labelled: list[Routed], corpus: list[Routed]) -> Score:
    plans = [plan(policy, item) for item in labelled]
    pairs = list(zip(labelled, plans, strict=True))

    def ratio(hits: int, total: int) -> float:
        return hits / total if total else 0.0

    said_duo = [(i, p) for i, p in pairs if p.mode == "duo"]
    true_duo = [(i, p) for i, p in pairs if i.mode == "duo"]
    said_clarify = [(i, p) for i, p in pairs if p.mode == "clarify"]
    true_clarify = [(i, p) for i, p in pairs if i.mode == "clarify"]
    true_single = [(i, p) for i, p in pairs if i.mode == "single"]
    corpus_plans = [(item, plan(policy, item)) for item in corpus]
    corpus_modes = Counter(p.mode for _, p in corpus_plans)
    unwarranted = sum(
        p.mode == "duo" and not set(p.personas) <= item.acceptable for item, p in corpus_plans
    )
    return Score(
        duo_precision=ratio(sum(i.mode == "duo" for i, _ in said_duo), len(said_duo)),
        duo_recall=ratio(sum(p.mode == "duo" for _, p in true_duo), len(true_duo)),
        duo_pair_right=ratio(
            sum(p.mode == "duo" and set(p.personas) == set(i.personas) for i, p in true_duo),
            len(true_duo),
        ),
        clarify_precision=ratio(
            sum(i.mode == "clarify" for i, _ in said_clarify), len(said_clarify)
        ),
        clarify_recall=ratio(sum(p.mode == "clarify" for _, p in true_clarify), len(true_clarify)),
        single_kept=ratio(sum(p.mode == "single" for _, p in true_single), len(true_single)),
        corpus_duo_rate=ratio(corpus_modes["duo"], len(corpus)),
        corpus_clarify_rate=ratio(corpus_modes["clarify"], len(corpus)),
        corpus_unwarranted_duo_rate=ratio(unwarranted, len(corpus)),
    )


def _with(
    base: OrchestrationPolicy, duo: dict[str, float], clarify: dict[str, float]
) -> OrchestrationPolicy:
    return base.model_copy(
        update={
            "duo": base.duo.model_copy(update=duo),
            "clarify": base.clarify.model_copy(update=clarify),
        }
    )


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def search(
    base: OrchestrationPolicy, labelled: list[Routed], corpus: list[Routed]
) -> tuple[OrchestrationPolicy, Score]:
    """Clarify first (it takes precedence), then duo: the best labelled score whose rates on
    the single-need corpus stay within the bounds. Ties go to the stricter thresholds."""
    best_clarify: tuple[float, dict[str, float]] | None = None
    for confidence, vague, tokens in itertools.product(
        (0.3, 0.35, 0.4, 0.45, 0.5, 0.55, 0.6), (0.5, 1.0), (3, 4, 6, 8)
    ):
        clarify = {"max_confidence": confidence, "vague_cue": vague, "max_tokens": tokens}
        result = score(_with(base, {}, clarify), labelled, corpus)
        if result.corpus_clarify_rate > MAX_CLARIFY_RATE:
            continue
        key = _f1(result.clarify_precision, result.clarify_recall) - 1e-3 * confidence
        if best_clarify is None or key > best_clarify[0]:
            best_clarify = (key, clarify)
    if best_clarify is None:
        raise SystemExit("no clarify threshold meets the rate bound")
    best_duo: tuple[float, dict[str, float], Score] | None = None
    for confidence in (0.6, 0.7, 0.8, 0.85, 0.9, 0.95):
        duo = {"min_clause_confidence": confidence}
        result = score(_with(base, duo, best_clarify[1]), labelled, corpus)
        if result.corpus_unwarranted_duo_rate > MAX_UNWARRANTED_DUO_RATE:
            continue
        key = result.duo_pair_right + result.duo_precision + 1e-3 * confidence
        if best_duo is None or key > best_duo[0]:
            best_duo = (key, duo, result)
    if best_duo is None:
        raise SystemExit("no duo threshold meets the rate bound")
    return _with(base, best_duo[1], best_clarify[1]), best_duo[2]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--report", action="store_true", help="score the catalog as it is")
    parser.add_argument("--check", type=Path, help="share of duo/clarify turns on a file")
    parser.add_argument("--heldout", action="store_true", help="also score data/.../heldout")
    args = parser.parse_args()

    catalog = load_catalog()
    policy = catalog.orchestration
    if policy is None:
        raise SystemExit("the catalog has no orchestration section")
    embedder, status = load_embedder()
    router, _ = build_router(catalog, embedder)
    _PART_ROUTER.append(router)
    cues = Router(catalog)
    print(f"router: {status.detail}", file=sys.stderr)

    if args.check is not None:
        checked = route_all(read_rows([args.check]), router, cues)
        modes = Counter(plan(policy, item).mode for item in checked)
        total = len(checked)
        print(
            f"{args.check.name}: {total} messages routed as first messages:"
            f" single {modes['single']} ({modes['single'] / total:.1%}),"
            f" duo {modes['duo']} ({modes['duo'] / total:.1%}),"
            f" clarify {modes['clarify']} ({modes['clarify'] / total:.1%})"
        )
        return 0

    labelled = route_all(read_rows(TRAIN_LABELLED), router, cues)
    corpus = route_all(read_rows(TRAIN_SINGLE), router, cues)
    if args.report:
        print("train:  ", score(policy, labelled, corpus).line())
    else:
        chosen, result = search(policy, labelled, corpus)
        print("catalog:", score(policy, labelled, corpus).line())
        print("best:   ", result.line())
        print(
            "thresholds: duo",
            chosen.duo.model_dump(include={"min_clause_confidence"}),
            "clarify",
            chosen.clarify.model_dump(include={"max_confidence", "vague_cue", "max_tokens"}),
        )
    if args.heldout:
        heldout_paths = sorted((REPO / "data" / "orchestration" / "heldout").glob("*.jsonl"))
        heldout = route_all(read_rows(heldout_paths), router, cues)
        print("heldout:", score(policy, heldout, []).line())
        for path in heldout_paths:
            writer = route_all(read_rows([path]), router, cues)
            print(f"  {path.stem}:", score(policy, writer, []).line())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
