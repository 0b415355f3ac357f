"""A character n-gram reader for crisis language, beside the sentence embeddings.

The embedding reader knows what a message means; this one knows the words it is made of.
Crisis language lives in word pieces that an embedding of the whole sentence blurs: the
stems 끝내-, 사라지-, 없어지- under any ending, "unalive", "sewerslide", "kms". Character
n-grams (2 to 4 characters within each word, the word padded with spaces) read those pieces
in any spelling or spacing, and a logistic regression over them, stacked with the
nearest-example margin, caught more crises cross-writer at the same false alarms than
either alone (docs/safety.md).

Features are hashed (CRC-32, stable across processes and Python versions) into a fixed
number of buckets; the trained head keeps only the buckets it saw.
"""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ion.domain.text import PerWord

__all__ = ["BUCKETS", "NgramHead", "ngram_counts"]

BUCKETS = 1 << 18
NGRAM_SIZES = (2, 3, 4)


def ngram_counts(text: str) -> Counter[int]:
    """Hashed character n-grams of each word (padded with spaces), with their counts."""
    folded = unicodedata.normalize("NFC", text).casefold()
    counts: Counter[int] = Counter()
    for word in folded.split():
        counts.update(_known_word_ngrams(word))
    return counts


def _word_ngrams(word: str) -> tuple[int, ...]:
    padded = f" {word} "
    return tuple(
        zlib.crc32(padded[i : i + n].encode("utf-8")) % BUCKETS
        for n in NGRAM_SIZES
        for i in range(len(padded) - n + 1)
    )


_known_word_ngrams = PerWord(_word_ngrams)


@dataclass(frozen=True)
class NgramHead:
    """Logistic regression over hashed character n-grams: a crisis score per text."""

    buckets: np.ndarray  # (n,) int64, sorted: the buckets seen in training
    idf: np.ndarray  # (n,) float32
    weights: np.ndarray  # (n,) float32
    bias: float

    def score(self, text: str) -> float:
        """The decision value of `text`: sublinear tf × idf over the buckets seen in
        training (others carry nothing), unit length, dotted with the weights.

        The buckets are looked up in the sorted array itself: a dict of them would hold
        two Python objects per bucket, about 20 MB for 137,000 buckets."""
        counts = ngram_counts(text)
        if not counts or not len(self.buckets):
            return self.bias
        keys = np.fromiter(counts.keys(), dtype=np.int64, count=len(counts))
        at = np.minimum(np.searchsorted(self.buckets, keys), len(self.buckets) - 1)
        known = self.buckets[at] == keys
        at = at[known]
        tf = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))[known]
        values = (1.0 + np.log(tf)) * self.idf[at].astype(np.float64)
        norm = math.sqrt(float(values @ values))
        if norm <= 0:
            return self.bias
        return self.bias + float(values @ self.weights[at].astype(np.float64)) / norm

    def scores(self, texts: Sequence[str]) -> np.ndarray:
        """The decision value (log-odds before stacking) of each text."""
        return np.asarray([self.score(text) for text in texts], dtype=np.float64)

    def to_bytes(self) -> bytes:
        return (
            self.buckets.astype("<i4").tobytes()
            + self.idf.astype("<f4").tobytes()
            + self.weights.astype("<f4").tobytes()
        )

    @classmethod
    def from_bytes(cls, raw: bytes, count: int, bias: float) -> NgramHead:
        if len(raw) != 12 * count:
            raise ValueError("n-gram weights do not match their count")
        buckets = np.frombuffer(raw, dtype="<i4", count=count).astype(np.int64)
        idf = np.frombuffer(raw, dtype="<f4", count=count, offset=4 * count)
        weights = np.frombuffer(raw, dtype="<f4", count=count, offset=8 * count)
        return cls(buckets=buckets, idf=idf.copy(), weights=weights.copy(), bias=bias)
