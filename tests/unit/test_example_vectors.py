"""Example vectors kept as int8 codes give the similarities of their float32 rows."""

from __future__ import annotations

import numpy as np
import pytest

from ion.domain.semantic import ExampleVectors


def _unit(rows: np.ndarray) -> np.ndarray:
    return np.asarray(rows / np.linalg.norm(rows, axis=1, keepdims=True), dtype=np.float32)


@pytest.fixture(scope="module")
def rows() -> np.ndarray:
    # Not a multiple of the block, so that the last block is a partial one.
    return _unit(np.random.default_rng(7).standard_normal((2 * ExampleVectors.BLOCK_ROWS + 37, 64)))


@pytest.mark.parametrize("texts", [1, 2, ExampleVectors.FEW_TEXTS, ExampleVectors.FEW_TEXTS + 1, 9])
def test_codes_give_the_similarities_of_the_rows_they_encode(rows: np.ndarray, texts: int) -> None:
    codes = ExampleVectors(rows).codes()
    decoded = _unit(codes.astype(np.float32))
    vectors = _unit(np.random.default_rng(texts).standard_normal((texts, 64)))

    shipped = ExampleVectors.from_codes(codes).similarities(vectors)

    assert shipped.shape == (texts, len(rows))
    np.testing.assert_allclose(shipped, vectors @ decoded.T, atol=2e-6)
    # Against the trained rows, the codes lose a little.
    assert np.abs(shipped - ExampleVectors(rows).similarities(vectors)).max() < 0.02


def test_the_codes_survive_a_round_trip(rows: np.ndarray) -> None:
    codes = ExampleVectors(rows).codes()
    assert codes.dtype == np.int8 and codes.shape == rows.shape
    shipped = ExampleVectors.from_codes(codes)
    assert np.array_equal(shipped.codes(), codes)
    assert len(shipped) == len(rows) and shipped.dim == 64
