"""Rate limits and token budgets over HTTP: 429s that never reach the LLM and spend nothing."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from ion.bootstrap import App, build_app, set_app
from ion.services.quota import QuotaGuard, QuotaLimits
from tests.fakes.clock import ManualClock
from tests.fakes.llm import RecordingLlm
from tests.support.app import function_client, make_settings
from tests.support.openapi_check import CheckedClient

NOON = datetime(2026, 3, 4, 12, 0, 15, tzinfo=UTC)


@pytest.fixture
def limited(clean_env: Path) -> Iterator[tuple[App, RecordingLlm, ManualClock]]:
    application = build_app(make_settings(clean_env / "data", cache_ttl_s=0))
    clock = ManualClock(NOON)
    application.quota = QuotaGuard(
        application.quota.store,
        clock,
        QuotaLimits(chat_per_minute=3, api_per_minute=6, daily_tokens=10_000),
    )
    llm = RecordingLlm()  # the offline model the app was built with, counted
    application.chat._llm = llm
    set_app(application)
    yield application, llm, clock
    set_app(None)


@pytest.fixture
def limited_api(limited: tuple[App, RecordingLlm, ManualClock]) -> CheckedClient:
    return CheckedClient(function_client("chat"))


def _headers(app: App, user: str = "alice") -> dict[str, str]:
    return {"Authorization": f"Bearer {app.dev_token(user)}"}


def test_chat_over_the_rate_limit_is_429_without_an_llm_call(
    limited: tuple[App, RecordingLlm, ManualClock], limited_api: CheckedClient
) -> None:
    app, llm, _ = limited
    for i in range(3):
        # Concrete questions: a vague first message is answered by a clarifying question,
        # which makes no LLM call.
        message = f"how do python decorators work, take {i}?"
        ok = limited_api.post("/v1/chat", json={"message": message}, headers=_headers(app))
        assert ok.status_code == 200
    refused = limited_api.post("/v1/chat", json={"message": "one more"}, headers=_headers(app))
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (429, "rate_limited")
    assert refused.headers["Retry-After"] == "45"
    assert llm.calls == 3


def test_rate_limits_are_per_user(
    limited: tuple[App, RecordingLlm, ManualClock], limited_api: CheckedClient
) -> None:
    app, _, _ = limited
    for i in range(3):
        limited_api.post("/v1/chat", json={"message": f"q {i}"}, headers=_headers(app))
    bob = limited_api.post("/v1/chat", json={"message": "hello"}, headers=_headers(app, "bob"))
    assert bob.status_code == 200


def test_streaming_chat_counts_too(
    limited: tuple[App, RecordingLlm, ManualClock], limited_api: CheckedClient
) -> None:
    app, llm, _ = limited
    for i in range(3):
        limited_api.post(
            "/v1/chat", json={"message": f"stream {i}", "stream": True}, headers=_headers(app)
        ).get_data()
    refused = limited_api.post(
        "/v1/chat", json={"message": "again", "stream": True}, headers=_headers(app)
    )
    assert refused.status_code == 429
    assert llm.calls == 3


def test_other_endpoints_share_the_api_limit(
    limited: tuple[App, RecordingLlm, ManualClock], limited_api: CheckedClient
) -> None:
    app, _, _ = limited
    statuses = [
        limited_api.get("/v1/conversations", headers=_headers(app)).status_code for _ in range(7)
    ]
    assert statuses == [200] * 6 + [429]


def test_budget_exhausted_is_429_and_spends_nothing(
    limited: tuple[App, RecordingLlm, ManualClock], limited_api: CheckedClient
) -> None:
    app, llm, clock = limited
    app.quota = QuotaGuard(
        app.quota.store,
        clock,
        QuotaLimits(chat_per_minute=100, api_per_minute=100, daily_tokens=50),
    )
    first = limited_api.post(
        "/v1/chat", json={"message": "explain recursion"}, headers=_headers(app)
    )
    assert first.status_code == 200
    usage = first.get_json()["usage"]
    spent = usage["input_tokens"] + usage["output_tokens"]
    assert spent > 50  # one answer may overshoot the budget (documented)
    assert app.quota.tokens_used("alice") == spent
    refused = limited_api.post("/v1/chat", json={"message": "and loops?"}, headers=_headers(app))
    assert (refused.status_code, refused.get_json()["error"]["code"]) == (429, "budget_exhausted")
    assert refused.headers["Retry-After"] == str(12 * 3600 - 15)
    assert llm.calls == 1
    assert app.quota.tokens_used("alice") == spent
