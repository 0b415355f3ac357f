"""Training the character n-gram crisis reader (`ion.domain.ngrams.NgramHead`).

A class-balanced logistic regression with an L2 penalty, over sublinear tf-idf of hashed
n-grams, fitted full-batch with Adam on a sparse matrix held as (row, column, value)
arrays: numpy only, so training needs nothing the package does not already install.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from ion.domain.ngrams import NgramHead

__all__ = ["fit_ngram_head"]

#: Inverse L2 strength, as scikit-learn's C: chosen cross-writer among 1, 4 and 16.
NGRAM_C = 16.0
_ITERATIONS = 150
_LEARNING_RATE = 0.1


def fit_ngram_head(
    counts: Sequence[Counter[int]], gold: np.ndarray, *, c: float = NGRAM_C
) -> NgramHead:
    """Fit on documents given as n-gram counts (`ngram_counts`), `gold` 1 for crisis."""
    y = np.asarray(gold, dtype=np.float64)
    n = len(counts)
    df: Counter[int] = Counter(bucket for doc in counts for bucket in doc)
    buckets = np.asarray(sorted(df), dtype=np.int64)
    column = {int(b): i for i, b in enumerate(buckets)}
    idf = np.asarray(
        [math.log((1 + n) / (1 + df[int(b)])) + 1.0 for b in buckets], dtype=np.float64
    )
    rows, cols, vals = [], [], []
    for r, doc in enumerate(counts):
        cs = [column[b] for b in doc]
        vs = np.asarray([(1.0 + math.log(k)) for k in doc.values()]) * idf[cs]
        norm = float(np.linalg.norm(vs)) or 1.0
        rows.extend([r] * len(cs))
        cols.extend(cs)
        vals.extend((vs / norm).tolist())
    row = np.asarray(rows, dtype=np.int64)
    col = np.asarray(cols, dtype=np.int64)
    val = np.asarray(vals, dtype=np.float64)
    positives = max(float(y.sum()), 1.0)
    negatives = max(float(n - y.sum()), 1.0)
    # Balanced classes, as scikit-learn's class_weight="balanced"; the loss is averaged so
    # that one learning rate suits any corpus size.
    sample = np.where(y == 1, n / (2 * positives), n / (2 * negatives)) / n
    w = np.zeros(len(buckets))
    b = 0.0
    m_w, v_w = np.zeros_like(w), np.zeros_like(w)
    m_b = v_b = 0.0
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    for step in range(1, _ITERATIONS + 1):
        z = np.bincount(row, weights=val * w[col], minlength=n) + b
        residual = sample * (1.0 / (1.0 + np.exp(-z)) - y)
        grad_w = np.bincount(col, weights=val * residual[row], minlength=len(w)) + w / (c * n)
        grad_b = float(residual.sum())
        m_w = beta1 * m_w + (1 - beta1) * grad_w
        v_w = beta2 * v_w + (1 - beta2) * grad_w**2
        m_b = beta1 * m_b + (1 - beta1) * grad_b
        v_b = beta2 * v_b + (1 - beta2) * grad_b**2
        correction1, correction2 = 1 - beta1**step, 1 - beta2**step
        w -= _LEARNING_RATE * (m_w / correction1) / (np.sqrt(v_w / correction2) + eps)
        b -= _LEARNING_RATE * (m_b / correction1) / (math.sqrt(v_b / correction2) + eps)
    return NgramHead(
        buckets=buckets,
        idf=idf.astype(np.float32),
        weights=w.astype(np.float32),
        bias=b,
    )
