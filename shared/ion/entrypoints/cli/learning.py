"""`ion route`, `ion eval` and `ion train`: the local router and crisis detector, their
evaluation on labelled sets, and the training of their learned heads."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ion.domain.operating_points import DEFAULT_OPERATING_POINT, OPERATING_POINTS
from ion.errors import ValidationFailed

if TYPE_CHECKING:
    from ion.domain.routing import Router
    from ion.domain.semantic import HeadArtifact


def _local_router() -> Router:
    """Exactly the router chat uses (lexicons + semantic head), minus feedback and judge."""
    from ion.bootstrap import build_router, load_embedder
    from ion.domain.personas import load_catalog

    embedder, _ = load_embedder()
    router, status = build_router(load_catalog(), embedder)
    if not status.ok:
        print(f"ion: warning: lexicon router only ({status.detail})", file=sys.stderr)
    return router


def cmd_route(args: argparse.Namespace) -> int:
    if not args.text.strip():
        raise ValidationFailed("the text to route must not be empty")
    router = _local_router()
    result = router.route(args.text, history=args.history or ())
    decision = result.decision
    print(
        json.dumps(
            {
                "persona": decision.primary,
                "secondary": decision.secondary,
                "confidence": decision.confidence,
                "scores": decision.scores,
                "resonance_key": result.analysis.key.model_dump(mode="json"),
                "reason": decision.reason,
            },
            ensure_ascii=False,
            indent=2,
        )
    )
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from ion.services.evaluation import evaluate, load_labelled_set

    items = load_labelled_set(Path(args.file))
    report = evaluate(_local_router(), items)
    print(report.render(show_errors=args.errors))
    return 0


DEFAULT_ROUTING_CORPUS = "data/routing/train/*.jsonl"


def cmd_train_routing(args: argparse.Namespace) -> int:
    from ion.adapters.embeddings import UseEmbedder
    from ion.domain.personas import load_catalog
    from ion.services.training import CorpusError, train_routing

    paths = _corpus_paths(args.corpus or [DEFAULT_ROUTING_CORPUS])
    try:
        report = train_routing(paths, UseEmbedder(), load_catalog())
    except CorpusError as exc:
        raise ValidationFailed(str(exc)) from exc
    return _write_trained(report.lines, report.artifact, args.output)


def _write_trained(lines: Sequence[str], artifact: HeadArtifact, output: str | None) -> int:
    from ion.domain.semantic import artifact_path

    for line in lines:
        print(line)
    path = Path(output) if output else artifact_path(artifact.task)
    artifact.write(path)
    print(f"wrote {path}")
    return 0


DEFAULT_SAFETY_CORPUS = "data/safety/crisis_*.jsonl"


def cmd_train_safety(args: argparse.Namespace) -> int:
    from ion.adapters.embeddings import UseEmbedder
    from ion.domain.safety import load_rules
    from ion.services.training import CorpusError, train_safety

    paths = _corpus_paths(args.corpus or [DEFAULT_SAFETY_CORPUS])
    try:
        everyday = _corpus_paths(args.everyday or [DEFAULT_ROUTING_CORPUS])
        report = train_safety(paths, UseEmbedder(), load_rules(), everyday)
    except CorpusError as exc:
        raise ValidationFailed(str(exc)) from exc
    return _write_trained(report.lines, report.artifact, args.output)


def cmd_eval_safety(args: argparse.Namespace) -> int:
    from ion.bootstrap import build_detector, load_embedder
    from ion.services.evaluation import evaluate_safety, load_safety_set

    items = load_safety_set(Path(args.file))
    embedder, _ = load_embedder()
    point = args.everyday_budget
    if point is None:
        from ion.settings import Settings

        point = Settings().safety_everyday_budget
    detector, status = build_detector(embedder, point)
    if not status.ok:
        print(f"ion: warning: crisis rules only ({status.detail})", file=sys.stderr)
    print(evaluate_safety(detector, items).render(show_errors=args.errors))
    return 0


def _corpus_paths(patterns: Sequence[str]) -> list[Path]:
    import glob

    paths: list[Path] = []
    for pattern in patterns:
        found = sorted(glob.glob(pattern))
        if not found:
            raise ValidationFailed(f"no corpus files match {pattern!r} (run from the repo root)")
        paths.extend(Path(p) for p in found)
    return paths


def add_route_parser(sub: Any) -> None:
    route = sub.add_parser("route", help="print the routing decision for a message as JSON")
    route.add_argument("text")
    route.add_argument("--history", action="append", help="an earlier message (repeatable)")
    route.set_defaults(func=cmd_route)


def add_eval_parser(sub: Any) -> None:
    evaluate = sub.add_parser("eval", help="evaluate a component on a labelled set")
    eval_sub = evaluate.add_subparsers(dest="target", required=True)
    routing = eval_sub.add_parser("routing", help="routing accuracy on a JSONL set")
    routing.add_argument("file")
    routing.add_argument("--errors", action="store_true", help="list every misrouted item")
    routing.set_defaults(func=cmd_eval)

    safety = eval_sub.add_parser("safety", help="crisis recall and false positives on a JSONL set")
    safety.add_argument("file")
    safety.add_argument("--errors", action="store_true", help="list misses and false alarms")
    safety.add_argument(
        "--everyday-budget",
        type=float,
        choices=OPERATING_POINTS,
        help="the detector's operating point (default: ION_SAFETY_EVERYDAY_BUDGET, else "
        f"{DEFAULT_OPERATING_POINT:g})",
    )
    safety.set_defaults(func=cmd_eval_safety)


def add_train_parser(sub: Any) -> None:
    train = sub.add_parser("train", help="rebuild a learned head from its labelled corpus")
    train_sub = train.add_subparsers(dest="target", required=True)
    train_routing = train_sub.add_parser("routing", help="the routing head (ion/domain/data)")
    train_routing.add_argument(
        "--corpus", action="append", help=f"corpus file or glob (default {DEFAULT_ROUTING_CORPUS})"
    )
    train_routing.add_argument("--output", help="artifact path (default: the packaged one)")
    train_routing.set_defaults(func=cmd_train_routing)
    train_safety = train_sub.add_parser("safety", help="the crisis head (ion/domain/data)")
    train_safety.add_argument(
        "--corpus", action="append", help=f"corpus file or glob (default {DEFAULT_SAFETY_CORPUS})"
    )
    train_safety.add_argument(
        "--everyday",
        action="append",
        help=f"ordinary learner messages, all calm (default {DEFAULT_ROUTING_CORPUS})",
    )
    train_safety.add_argument("--output", help="artifact path (default: the packaged one)")
    train_safety.set_defaults(func=cmd_train_safety)
