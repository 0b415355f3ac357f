"""The learned semantic layer: sentence embeddings → a small linear head per task.

Pure domain code over the `SentenceEmbedder` port. The heads are trained by
`ion train routing` / `ion train safety` (see `ion.services.training`) and shipped as small
versioned JSON artifacts next to this module (`data/*.json`), so an instance loads them with
the package and never downloads anything.

An artifact records the embedding model it was trained on and a fingerprint of that
model's vectors for fixed sentences: a head is meaningless on another model's vectors, so a
mismatch refuses to load (the router then falls back to its lexicons).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ion.domain.ngrams import NgramHead
from ion.errors import ConfigurationError
from ion.ports import SentenceEmbedder

__all__ = [
    "ARTIFACT_VERSION",
    "FINGERPRINT_SENTENCES",
    "ExampleVectors",
    "HeadArtifact",
    "LinearHead",
    "PrototypeHead",
    "SemanticLayer",
    "artifact_path",
    "check_fingerprint",
    "load_artifact",
]

ARTIFACT_VERSION = 1
#: Sentences whose vectors pin the embedding model: if a package upgrade changes them, the
#: trained heads no longer fit and `check_fingerprint` says so.
FINGERPRINT_SENTENCES = (
    "I have been stuck on this bug for six hours and I want to quit.",
    "JPA에서 N+1 문제가 왜 생기는지 설명해 줄래?",
    "is 300 ms p95 good enough for this endpoint?",
    "이번 주에 뭐부터 해야 할지 모르겠어요",
)
#: Dimensions of each fingerprint vector that are stored (enough to detect any change).
FINGERPRINT_DIMS = 16
FINGERPRINT_TOLERANCE = 1e-3


def artifact_path(name: str) -> Path:
    return Path(__file__).with_name("data") / f"{name}.json"


@dataclass(frozen=True)
class LinearHead:
    """Multinomial logistic regression over (scaled) unit-length sentence vectors."""

    labels: tuple[str, ...]
    weights: np.ndarray  # (dim, len(labels))
    bias: np.ndarray  # (len(labels),)
    scale: float = 1.0

    def logits(self, vectors: np.ndarray) -> np.ndarray:
        return np.asarray((vectors * self.scale) @ self.weights + self.bias, dtype=np.float64)

    def log_proba(self, vectors: np.ndarray) -> np.ndarray:
        z = self.logits(vectors)
        z = z - z.max(axis=1, keepdims=True)
        return np.asarray(z - np.log(np.exp(z).sum(axis=1, keepdims=True)))

    def to_json(self) -> dict[str, Any]:
        return {
            "labels": list(self.labels),
            "scale": self.scale,
            "bias": [round(float(v), 6) for v in self.bias],
            # One row per label (transposed), six significant digits: small, readable diffs.
            "weights": [[float(f"{v:.6g}") for v in col] for col in self.weights.T],
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> LinearHead:
        labels = tuple(str(x) for x in data["labels"])
        weights = np.asarray(data["weights"], dtype=np.float32).T
        bias = np.asarray(data["bias"], dtype=np.float32)
        if weights.shape[1] != len(labels) or bias.shape != (len(labels),):
            raise ValueError("head shape does not match its labels")
        return cls(labels=labels, weights=weights, bias=bias, scale=float(data["scale"]))


class ExampleVectors:
    """Unit-length example vectors, and the cosine similarity of texts to each of them.

    As trained they are float32 rows. As shipped they are int8 codes (scale 127) and stay
    so in memory, a quarter of the float32 size: a product with the whole float32 matrix
    (26,000 rows, 53 MB) streams it from memory for every text, slower than reading the
    codes a block at a time into a small float32 buffer, and it leaves the processor's
    caches cold for the rest of the request. A few texts take one matrix-vector product
    each per block: a matrix-matrix product for two or three texts costs more than that in
    OpenBLAS (docs/performance.md).
    """

    __slots__ = ("_inverse_norms", "_rows")

    #: Rows converted at a time (2 MB of float32 at 512 dimensions): the fastest of 128 to
    #: 4,096 rows measured.
    BLOCK_ROWS = 1024
    #: Up to this many texts, one matrix-vector product each beats a matrix product.
    FEW_TEXTS = 4

    def __init__(self, rows: np.ndarray, inverse_norms: np.ndarray | None = None) -> None:
        # float32 unit rows alone, or int8 codes with their rows' inverse norms (`from_codes`).
        self._rows = rows
        self._inverse_norms = inverse_norms

    @classmethod
    def from_codes(cls, codes: np.ndarray) -> ExampleVectors:
        """int8 codes of unit vectors (rows scaled by 127 and rounded)."""
        squared = np.einsum("ij,ij->i", codes, codes, dtype=np.int64)
        norms = np.maximum(np.sqrt(squared.astype(np.float64)), 1e-6)
        return cls(codes, (1.0 / norms).astype(np.float32))

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def dim(self) -> int:
        return int(self._rows.shape[1])

    def codes(self) -> np.ndarray:
        if self._inverse_norms is not None:
            return self._rows
        return np.clip(np.rint(self._rows * 127.0), -127, 127).astype(np.int8)

    def similarities(self, vectors: np.ndarray) -> np.ndarray:
        """(texts, rows) cosine similarities of unit `vectors` to the examples."""
        v = np.asarray(vectors, dtype=np.float32)
        if self._inverse_norms is None:
            return np.asarray(v @ self._rows.T)
        rows = self._rows
        out = np.empty((len(v), len(rows)), dtype=np.float32)
        block = np.empty((min(self.BLOCK_ROWS, len(rows)), rows.shape[1]), dtype=np.float32)
        for start in range(0, len(rows), self.BLOCK_ROWS):
            codes = rows[start : start + self.BLOCK_ROWS]
            part = block[: len(codes)]
            np.copyto(part, codes, casting="unsafe")
            end = start + len(codes)
            if len(v) <= self.FEW_TEXTS:
                for i, text in enumerate(v):
                    np.dot(part, text, out=out[i, start:end])
            else:
                out[:, start:end] = (part @ v.T).T
        out *= self._inverse_norms
        return out


@dataclass(frozen=True)
class PrototypeHead:
    """A nearest-prototype reader for a two-label task (calm / crisis).

    margin = mean of the `k` highest cosine similarities to the positive examples − the same
    to the negative examples; a sigmoid fitted on out-of-fold margins turns it into a
    probability. Measured cross-writer, it separates crisis text from everyday text far
    better than a linear head at the low false-alarm rates we need (docs/safety.md): a
    crisis is many narrow phrasings, not one direction in the embedding space.

    With `ngrams`, a character n-gram reader's score joins the margin in the sigmoid
    (stacked: `slope`, `ngram_weight` and `offset` fitted together on out-of-fold scores).

    The example vectors ship as int8 (scale 127) in a binary file beside the JSON artifact,
    the n-gram weights in another.
    """

    labels: tuple[str, ...]
    positives: ExampleVectors
    negatives: ExampleVectors
    k: int
    slope: float
    offset: float
    ngrams: NgramHead | None = None
    ngram_weight: float = 0.0

    def margins(self, vectors: np.ndarray) -> np.ndarray:
        near_positive = _top_k_mean(self.positives.similarities(vectors), self.k)
        return np.asarray(near_positive - _top_k_mean(self.negatives.similarities(vectors), self.k))

    def log_proba(self, vectors: np.ndarray, texts: Sequence[str] = ()) -> np.ndarray:
        z = self.slope * self.margins(vectors) + self.offset
        if self.ngrams is not None:
            if len(texts) != len(z):
                raise ValueError("the n-gram reader needs the texts of the vectors")
            z = z + self.ngram_weight * self.ngrams.scores(texts)
        # log σ(z) and log σ(−z), stably.
        positive = -np.logaddexp(0.0, -z)
        negative = -np.logaddexp(0.0, z)
        return np.stack([negative, positive], axis=1).astype(np.float64)

    def to_json(self, vectors_file: str, ngrams_file: str) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": "prototypes",
            "labels": list(self.labels),
            "k": self.k,
            "slope": round(self.slope, 6),
            "offset": round(self.offset, 6),
            "positives": len(self.positives),
            "negatives": len(self.negatives),
            "dim": self.positives.dim,
            "vectors": vectors_file,
        }
        if self.ngrams is not None:
            data["ngrams"] = {
                "file": ngrams_file,
                "count": len(self.ngrams.buckets),
                "bias": round(self.ngrams.bias, 6),
                "weight": round(self.ngram_weight, 6),
            }
        return data

    def vector_bytes(self) -> bytes:
        return self.positives.codes().tobytes() + self.negatives.codes().tobytes()

    @classmethod
    def from_json(cls, data: Mapping[str, Any], directory: Path) -> PrototypeHead:
        n, m, dim = int(data["positives"]), int(data["negatives"]), int(data["dim"])
        raw = (directory / str(data["vectors"])).read_bytes()
        if len(raw) != (n + m) * dim:
            raise ValueError("prototype vectors do not match their shape")
        codes = np.frombuffer(raw, dtype=np.int8).reshape(n + m, dim)
        ngrams, ngram_weight = None, 0.0
        if "ngrams" in data:
            spec = data["ngrams"]
            ngrams = NgramHead.from_bytes(
                (directory / str(spec["file"])).read_bytes(),
                int(spec["count"]),
                float(spec["bias"]),
            )
            ngram_weight = float(spec["weight"])
        return cls(
            labels=tuple(str(x) for x in data["labels"]),
            positives=ExampleVectors.from_codes(codes[:n]),
            negatives=ExampleVectors.from_codes(codes[n:]),
            k=int(data["k"]),
            slope=float(data["slope"]),
            offset=float(data["offset"]),
            ngrams=ngrams,
            ngram_weight=ngram_weight,
        )


def _top_k_mean(similarities: np.ndarray, k: int) -> np.ndarray:
    k = min(k, similarities.shape[1])
    top = np.partition(similarities, similarities.shape[1] - k, axis=1)[:, -k:]
    return np.asarray(top.mean(axis=1), dtype=np.float64)


Head = LinearHead | PrototypeHead


@dataclass(frozen=True)
class HeadArtifact:
    """A trained head plus what it was trained on and how it blends (versioned JSON)."""

    task: str
    embedder: str
    corpus_sha256: str
    head: Head
    params: dict[str, float] = field(default_factory=dict)
    fingerprint: tuple[tuple[float, ...], ...] = ()
    metrics: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": ARTIFACT_VERSION,
            "task": self.task,
            "embedder": self.embedder,
            "corpus_sha256": self.corpus_sha256,
            "params": self.params,
            "metrics": self.metrics,
            "fingerprint": [list(row) for row in self.fingerprint],
            "head": self._head_json(),
        }

    def _head_json(self) -> dict[str, Any]:
        if isinstance(self.head, PrototypeHead):
            return self.head.to_json(f"{self.task}_vectors.bin", f"{self.task}_ngrams.bin")
        return self.head.to_json()

    def write(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(self.head, PrototypeHead):
            (path.parent / f"{self.task}_vectors.bin").write_bytes(self.head.vector_bytes())
            if self.head.ngrams is not None:
                ngrams = self.head.ngrams.to_bytes()
                (path.parent / f"{self.task}_ngrams.bin").write_bytes(ngrams)
        text = json.dumps(self.to_json(), ensure_ascii=False, indent=1, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")


def load_artifact(path: Path) -> HeadArtifact:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        if data.get("version") != ARTIFACT_VERSION:
            raise ValueError(f"version {data.get('version')!r}, expected {ARTIFACT_VERSION}")
        return HeadArtifact(
            task=str(data["task"]),
            embedder=str(data["embedder"]),
            corpus_sha256=str(data["corpus_sha256"]),
            head=PrototypeHead.from_json(data["head"], path.parent)
            if data["head"].get("type") == "prototypes"
            else LinearHead.from_json(data["head"]),
            params={str(k): float(v) for k, v in data.get("params", {}).items()},
            fingerprint=tuple(tuple(float(v) for v in row) for row in data["fingerprint"]),
            metrics=dict(data.get("metrics", {})),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ConfigurationError(f"cannot load the trained head {path.name}: {exc}") from exc


def fingerprint(embedder: SentenceEmbedder) -> tuple[tuple[float, ...], ...]:
    vectors = embedder.embed(FINGERPRINT_SENTENCES)
    return tuple(tuple(round(float(v), 5) for v in row[:FINGERPRINT_DIMS]) for row in vectors)


def check_fingerprint(artifact: HeadArtifact, embedder: SentenceEmbedder) -> None:
    """Raise `ConfigurationError` when `embedder` is not the model `artifact` was trained on."""
    if artifact.embedder != embedder.name:
        raise ConfigurationError(
            f"the {artifact.task} head was trained on {artifact.embedder}, but the installed"
            f" embedding model is {embedder.name}: retrain with `ion train {artifact.task}`"
        )
    now = np.asarray(fingerprint(embedder))
    then = np.asarray(artifact.fingerprint)
    if now.shape != then.shape or float(np.abs(now - then).max()) > FINGERPRINT_TOLERANCE:
        raise ConfigurationError(
            f"the embedding model's vectors drifted from those the {artifact.task} head was"
            f" trained on: retrain with `ion train {artifact.task}`"
        )


class SemanticLayer:
    """An embedder plus a trained head: log-probabilities per label for texts."""

    def __init__(self, embedder: SentenceEmbedder, artifact: HeadArtifact) -> None:
        check_fingerprint(artifact, embedder)
        self.embedder = embedder
        self.artifact = artifact

    @property
    def labels(self) -> tuple[str, ...]:
        return self.artifact.head.labels

    def param(self, name: str, default: float) -> float:
        return self.artifact.params.get(name, default)

    def prepare(self, texts: Sequence[str]) -> None:
        """Embed `texts` in one model call ahead of reading them one by one: a batch costs
        about 60 % of separate calls, and the embedder keeps recent vectors."""
        self.embedder.embed(list(dict.fromkeys(texts)))

    def log_proba(self, texts: Sequence[str]) -> list[dict[str, float]]:
        head = self.artifact.head
        vectors = self.embedder.embed(texts)
        rows = (
            head.log_proba(vectors, texts)
            if isinstance(head, PrototypeHead)
            else head.log_proba(vectors)
        )
        return [dict(zip(self.labels, (float(v) for v in row), strict=True)) for row in rows]
