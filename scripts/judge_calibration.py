"""Calibrate ION_ROUTING_JUDGE_THRESHOLD: the local router's accuracy by confidence bucket.

Runs the local router exactly as `ion eval routing` does (lexicons + semantic head, no
feedback, no judge) on the training writers `data/routing/train/writer_*.jsonl`, never on
the shared check sets. Two readings:

- in-sample: the shipped head, which was trained on these very writers (optimistic);
- cross-writer: for each writer, a head retrained without that writer (same l2, same
  blend weights as the shipped artifact), so every message is routed by a head that never
  read its writer. This is the honest figure and the one the threshold is chosen on.

    .venv/bin/python scripts/judge_calibration.py
"""

from __future__ import annotations

import glob
import itertools
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from ion.adapters.embeddings import UseEmbedder
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.domain.semantic import SemanticLayer, artifact_path, load_artifact
from ion.services.evaluation import LabelledItem, evaluate, load_labelled_set
from ion.services.training import LEGACY_PREFIX, fit_softmax

CORPUS = "data/routing/train/*.jsonl"
CHECK = "data/routing/train/writer_*.jsonl"
EDGES = (0.0, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 1.0001)
THRESHOLDS = (0.2, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6)
SCALE = 10.0  # ion.services.training.routing._SCALE


def _targets(items: list[LabelledItem], labels: list[str]) -> np.ndarray:
    """As `train_routing`: gold 1.0, or 0.8 + 0.2 shared by the defensible alternatives."""
    index = {pid: i for i, pid in enumerate(labels)}
    targets = np.zeros((len(items), len(labels)))
    for row, item in enumerate(items):
        alts = [index[p] for p in item.also_ok if p in index and p != item.persona]
        targets[row, index[item.persona]] = 0.8 if alts else 1.0
        for col in alts:
            targets[row, col] += 0.2 / len(alts)
    return targets


def _report(name: str, confidence: np.ndarray, correct: np.ndarray) -> None:
    print(f"\n{name}: n={len(correct)} accuracy={correct.mean():.3f}")
    print("| confidence | n | share | accuracy |")
    print("|---|---|---|---|")
    for low, high in itertools.pairwise(EDGES):
        mask = (confidence >= low) & (confidence < high)
        if mask.any():
            print(
                f"| [{low:.1f}, {min(high, 1.0):.1f}) | {int(mask.sum())} |"
                f" {mask.mean():.1%} | {correct[mask].mean():.3f} |"
            )
    print("\n| threshold | judged (below) | accuracy below | accuracy at or above |")
    print("|---|---|---|---|")
    for t in THRESHOLDS:
        below = confidence < t
        above_acc = correct[~below].mean() if (~below).any() else float("nan")
        below_acc = correct[below].mean() if below.any() else float("nan")
        print(f"| {t:.2f} | {below.mean():.1%} | {below_acc:.3f} | {above_acc:.3f} |")


def main() -> int:
    catalog = load_catalog()
    labels = list(catalog.ids)
    embedder = UseEmbedder()
    shipped = load_artifact(artifact_path("routing"))
    l2 = float(shipped.metrics.get("l2", 1e-2))

    corpus: list[tuple[LabelledItem, str]] = []
    for path in sorted(Path(p) for p in glob.glob(CORPUS)):
        for item in load_labelled_set(path):
            corpus.append((item, item.writer or path.stem))
    checked = {Path(p).name for p in glob.glob(CHECK)}
    if not checked:
        print("no writer_*.jsonl files (run from the repo root)", file=sys.stderr)
        return 2

    # In-sample: the shipped head, as `ion eval routing data/routing/train/writer_x.jsonl`.
    router = Router(catalog, SemanticLayer(embedder, shipped))
    conf_in: list[float] = []
    ok_in: list[bool] = []
    for name in sorted(checked):
        report = evaluate(router, load_labelled_set(Path("data/routing/train") / name))
        for r in report.results:
            ok_in.append(r.correct)
            conf_in.append(router.route(r.item.message, history=r.item.history).decision.confidence)
    _report("in-sample (shipped head)", np.asarray(conf_in), np.asarray(ok_in))

    # Cross-writer: each fresh writer routed by a head that never read it.
    items = [item for item, _ in corpus]
    groups = np.asarray([group for _, group in corpus])
    vectors = embedder.embed([i.message for i in items])
    targets = _targets(items, labels)
    conf_cw: list[float] = []
    ok_cw: list[bool] = []
    for writer in sorted({g for g in groups if not g.startswith(LEGACY_PREFIX)}):
        train = groups != writer
        head = fit_softmax(vectors[train], targets[train], labels, l2=l2, scale=SCALE)
        layer = SemanticLayer(embedder, replace(shipped, head=head))
        held_out = Router(catalog, layer)
        held = [items[i] for i in np.flatnonzero(~train)]
        report = evaluate(held_out, held)
        print(f"held out writer {writer}: accuracy={report.accuracy:.3f} n={report.n}")
        for r in report.results:
            d = held_out.route(r.item.message, history=r.item.history).decision
            conf_cw.append(d.confidence)
            ok_cw.append(r.correct)
    _report("cross-writer (each writer held out)", np.asarray(conf_cw), np.asarray(ok_cw))
    return 0


if __name__ == "__main__":
    sys.exit(main())
