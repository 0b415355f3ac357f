"""Pytest fixtures `fake_gemini`, a scriptable local fake of the Gemini REST API, and
`gemini_app`, the instance's App on the Gemini provider pointed at it.

Register it from tests/conftest.py (`pytest_plugins = ["tests.support.gemini"]`). Each
test gets a fresh server on 127.0.0.1 (starting one takes about a millisecond), so
queued behaviours and recorded requests never leak between tests.

    def test_x(fake_gemini):
        fake_gemini.enqueue("gemini-2.5-flash", http_error(503), answer("Hi"))
        model = GeminiLanguageModel(api_key="k", base_url=fake_gemini.base_url, ...)
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ion.bootstrap import App, build_app, set_app
from tests.fakes.gemini import FakeGemini
from tests.support.app import make_settings

PRIMARY = "gemini-e2e-primary"
FALLBACK = "gemini-e2e-fallback"


@pytest.fixture
def fake_gemini() -> Iterator[FakeGemini]:
    with FakeGemini() as server:
        yield server


def gemini_settings(data_dir: Path, fake: FakeGemini, **overrides: Any) -> Any:
    values: dict[str, Any] = {
        "llm_provider": "gemini",
        "gemini_api_key": "test-key-e2e",
        "gemini_base_url": fake.base_url,
        "gemini_model": PRIMARY,
        "gemini_fallback_model": FALLBACK,
        "llm_timeout_s": 5.0,
        "llm_max_attempts": 2,
        "llm_backoff_base_s": 0.0,
    }
    values.update(overrides)
    return make_settings(data_dir, **values)


@pytest.fixture
def gemini_app(clean_env: Path, fake_gemini: FakeGemini) -> Iterator[App]:
    """The instance's App on the Gemini provider (a module overrides `app` with it, so
    `auth` uses it too)."""
    application = build_app(gemini_settings(clean_env / "data", fake_gemini))
    set_app(application)
    yield application
    set_app(None)
