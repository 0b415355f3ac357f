"""What both trainers share: corpus checks, the softmax fit, writer-held-out folds, the
lexicon/meaning blend choice, and rounding metrics for the artifact."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ion.domain.semantic import LinearHead

#: The shared check sets measure the router; they must never be trained on.
FORBIDDEN_TRAINING_FILES = frozenset({"dev_set.jsonl", "check_set_b.jsonl"})

_ITERATIONS = 700
_LEARNING_RATE = 0.5


class CorpusError(ValueError):
    """A training corpus is unusable (missing, a check set, or inconsistent)."""


def check_corpus_paths(paths: Sequence[Path]) -> list[Path]:
    if not paths:
        raise CorpusError("no corpus files given")
    out = []
    for path in sorted(set(paths)):
        if path.name in FORBIDDEN_TRAINING_FILES:
            raise CorpusError(f"{path} is a check set: it measures the router, never train on it")
        if not path.is_file():
            raise CorpusError(f"corpus file {path} does not exist")
        out.append(path)
    return out


def corpus_sha256(paths: Iterable[Path]) -> str:
    """One hash over the corpus files (names and bytes), independent of the order given."""
    digest = hashlib.sha256()
    for path in sorted(paths, key=lambda p: p.name):
        digest.update(path.name.encode())
        digest.update(b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return digest.hexdigest()


def fit_softmax(
    vectors: np.ndarray,
    targets: np.ndarray,
    labels: Sequence[str],
    *,
    l2: float,
    scale: float,
    sample_weight: np.ndarray | None = None,
) -> LinearHead:
    """Multinomial logistic regression by full-batch gradient descent (deterministic).

    `targets` is an (n, k) matrix of target probabilities: one-hot, or split over a gold
    label and its defensible alternatives.
    """
    # float32 with a contiguous transpose: ~6x faster than float64 here, and still
    # deterministic for a given machine and numpy.
    x = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32) * np.float32(scale))
    xt = np.ascontiguousarray(x.T)
    n, dim = x.shape
    k = len(labels)
    weights = np.zeros((dim, k), dtype=np.float32)
    bias = np.zeros(k, dtype=np.float32)
    t = np.asarray(targets, dtype=np.float32)
    w = np.ones(n) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64)
    w = (w / w.sum()).astype(np.float32)[:, None]
    rate, decay = np.float32(_LEARNING_RATE), np.float32(l2)
    for _ in range(_ITERATIONS):
        z = x @ weights + bias
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        g = (p - t) * w
        weights -= rate * (xt @ g + decay * weights)
        bias -= rate * g.sum(axis=0)
    return LinearHead(
        labels=tuple(labels),
        weights=weights.astype(np.float32),
        bias=bias.astype(np.float32),
        scale=scale,
    )


def grouped_folds(groups: Sequence[str]) -> list[tuple[str, np.ndarray, np.ndarray]]:
    """Leave-one-group-out folds: (held-out group, train indices, test indices)."""
    arr = np.asarray(groups)
    return [(g, np.flatnonzero(arr != g), np.flatnonzero(arr == g)) for g in sorted(set(groups))]


def out_of_fold(
    vectors: np.ndarray,
    targets: np.ndarray,
    groups: Sequence[str],
    fit: Callable[[np.ndarray, np.ndarray], LinearHead],
) -> np.ndarray:
    """Log-probabilities for every item from a head that never saw the item's writer."""
    out = np.zeros(targets.shape)
    for _group, train, test in grouped_folds(groups):
        head = fit(vectors[train], targets[train])
        out[test] = head.log_proba(vectors[test])
    return out


@dataclass(frozen=True)
class BlendChoice:
    lexicon_weight: float
    semantic_weight: float
    nll: float
    accuracy: float


def choose_blend(
    lexicon_logp: np.ndarray,
    meaning_logp: np.ndarray,
    meaning_share: np.ndarray,
    accepted: np.ndarray,
    gold: np.ndarray,
) -> BlendChoice:
    """Grid search of the blend weights minimising out-of-fold log loss on the gold label.

    `meaning_share` is 1 − follow-up strength inside a conversation (1 elsewhere), as the
    router applies it; `accepted` marks every acceptable label (gold + also_ok) per item.
    """
    best: BlendChoice | None = None
    for a in np.arange(0.0, 2.01, 0.1):
        for b in np.arange(0.0, 2.01, 0.1):
            if a == 0.0 and b == 0.0:
                continue
            z = a * lexicon_logp + (b * meaning_share)[:, None] * meaning_logp
            z = z - z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            nll = float(-logp[np.arange(len(gold)), gold].mean())
            top = logp.argmax(axis=1)
            acc = float(accepted[np.arange(len(gold)), top].mean())
            choice = BlendChoice(round(float(a), 2), round(float(b), 2), nll, acc)
            if best is None or nll < best.nll - 1e-12:
                best = choice
    if best is None:
        raise CorpusError("no blend weights to choose from")
    return best


def metrics_summary(values: dict[str, Any]) -> dict[str, Any]:
    """Round floats for a stable, readable artifact."""
    out: dict[str, Any] = {}
    for key, value in values.items():
        if isinstance(value, float):
            out[key] = round(value, 4) if math.isfinite(value) else None
        elif isinstance(value, dict):
            out[key] = metrics_summary(value)
        else:
            out[key] = value
    return out
