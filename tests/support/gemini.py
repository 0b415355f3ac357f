"""Pytest fixture `fake_gemini`: a scriptable local fake of the Gemini REST API.

Register it from tests/conftest.py (`pytest_plugins = ["tests.support.gemini"]`). Each
test gets a fresh server on 127.0.0.1 (starting one takes about a millisecond), so
queued behaviours and recorded requests never leak between tests.

    def test_x(fake_gemini):
        fake_gemini.enqueue("gemini-2.5-flash", http_error(503), answer("Hi"))
        model = GeminiLanguageModel(api_key="k", base_url=fake_gemini.base_url, ...)
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.fakes.gemini import FakeGemini


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server
