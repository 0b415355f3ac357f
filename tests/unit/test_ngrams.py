"""The character n-gram crisis reader: stable features, training, and its artifact."""

from __future__ import annotations

import math
import unicodedata
import zlib
from collections import Counter
from pathlib import Path

import numpy as np

from ion.domain import ngrams
from ion.domain.ngrams import BUCKETS, NgramHead, ngram_counts
from ion.domain.semantic import (
    ExampleVectors,
    HeadArtifact,
    PrototypeHead,
    artifact_path,
    load_artifact,
)
from ion.services.training.ngrams import fit_ngram_head


def test_ngrams_are_stable_across_processes_and_spellings() -> None:
    # CRC-32 buckets, never Python's salted hash: the shipped weights must mean the same
    # thing in every instance.
    # " hi " gives " h", "hi", "i ", " hi", "hi ", " hi ": CRC-32 of each, mod 2**18.
    assert ngram_counts("Hi") == Counter(
        {57143: 1, 207532: 1, 58073: 1, 173985: 1, 45996: 1, 203420: 1}
    )
    assert BUCKETS == 1 << 18
    # Case, Unicode normalisation and spacing do not change the pieces of a word.
    assert ngram_counts("Hi") == ngram_counts("hi") == ngram_counts("  hi ")
    decomposed = unicodedata.normalize("NFD", "끝내고")
    assert decomposed != "끝내고"
    assert ngram_counts(decomposed) == ngram_counts("끝내고")


def test_a_trained_reader_scores_the_words_it_learned() -> None:
    texts = [
        "나 그냥 사라지고 싶어",
        "요즘 사라지고 싶다는 생각뿐",
        "i want to unalive myself",
        "thinking about unaliving tonight",
        "리액트 훅 질문 있어요",
        "how do I fix this react hook",
        "스프링 빈 주입이 안 돼요",
        "my docker build is slow",
    ]
    gold = np.asarray([1, 1, 1, 1, 0, 0, 0, 0])
    head = fit_ngram_head([ngram_counts(t) for t in texts], gold)
    crisis, calm = (
        head.scores(["사라지고 싶어요 진짜", "unalive"]),
        head.scores(["리액트 질문", "docker hook"]),
    )
    assert crisis.min() > 0 > calm.max()
    # Deterministic: the same corpus gives the same weights.
    again = fit_ngram_head([ngram_counts(t) for t in texts], gold)
    assert np.array_equal(head.weights, again.weights) and head.bias == again.bias


def test_the_reader_survives_its_artifact(tmp_path: Path) -> None:
    texts = ["사라지고 싶어", "unalive me", "react hook", "도커 빌드"]
    head = fit_ngram_head([ngram_counts(t) for t in texts], np.asarray([1, 1, 0, 0]))
    vectors = np.eye(4, 8, dtype=np.float32)
    prototypes = PrototypeHead(
        labels=("calm", "crisis"),
        positives=ExampleVectors(vectors[:2]),
        negatives=ExampleVectors(vectors[2:]),
        k=1,
        slope=2.0,
        offset=-1.0,
        ngrams=head,
        ngram_weight=0.5,
    )
    artifact = HeadArtifact(task="safety", embedder="e", corpus_sha256="x", head=prototypes)
    path = tmp_path / "safety.json"
    artifact.write(path)
    assert (tmp_path / "safety_ngrams.bin").stat().st_size == 12 * len(head.buckets)
    loaded = load_artifact(path).head
    assert isinstance(loaded, PrototypeHead) and loaded.ngrams is not None
    probe = ["사라지고 싶다", "react"]
    np.testing.assert_allclose(loaded.ngrams.scores(probe), head.scores(probe), rtol=1e-5)
    np.testing.assert_allclose(
        loaded.log_proba(vectors[:2], probe), prototypes.log_proba(vectors[:2], probe), rtol=1e-5
    )


def test_the_shipped_safety_head_carries_the_reader() -> None:
    head = load_artifact(artifact_path("safety")).head
    assert isinstance(head, PrototypeHead)
    assert isinstance(head.ngrams, NgramHead) and head.ngram_weight > 0


def test_a_score_is_sublinear_tf_idf_of_the_known_buckets_dotted_with_the_weights() -> None:
    # " hi " has six n-grams (see above); the head knows three of them, plus one bucket
    # no n-gram of "hi" falls in.
    known = (45996, 57143, 207532)
    head = NgramHead(
        buckets=np.asarray([*known, 250000], dtype=np.int64),
        idf=np.asarray([1.5, 2.0, 0.5, 9.0], dtype=np.float32),
        weights=np.asarray([0.25, -1.0, 2.0, 7.0], dtype=np.float32),
        bias=-0.5,
    )
    tf = 1.0 + math.log(2)  # "hi hi": each n-gram twice
    values = [tf * 1.5, tf * 2.0, tf * 0.5]
    norm = math.sqrt(sum(v * v for v in values))
    expected = -0.5 + sum(v / norm * w for v, w in zip(values, (0.25, -1.0, 2.0), strict=True))
    assert head.score("hi hi") == expected
    assert head.scores(["hi hi", "zzz", ""]).tolist() == [expected, -0.5, -0.5]
    empty = NgramHead(
        buckets=np.asarray([], dtype=np.int64),
        idf=np.asarray([], dtype=np.float32),
        weights=np.asarray([], dtype=np.float32),
        bias=0.25,
    )
    assert empty.score("hi") == 0.25


def test_a_long_word_is_counted_but_its_n_grams_are_not_kept() -> None:
    ngram_counts("kept")
    kept = ngrams._known_word_ngrams.kept
    word = "x1y2" * 1000  # one 4,000-character word
    padded = f" {word} "
    expected = Counter(
        zlib.crc32(padded[i : i + n].encode("utf-8")) % BUCKETS
        for n in (2, 3, 4)
        for i in range(len(padded) - n + 1)
    )
    assert ngram_counts(word) == expected
    assert ngrams._known_word_ngrams.kept == kept
