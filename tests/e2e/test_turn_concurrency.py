"""Concurrent chat requests through the real chat function, on SQLite and on the Firestore
emulator: one turn at a time per conversation (losers get 409 with no model call), and a
daily token budget that concurrent requests cannot overrun.

The model is a counting fake whose calls wait at a gate until every request has either
reached the model or been answered, so "the losers never called the model" and "every
request was admitted or refused before any answer was settled" hold causally, without
timing assumptions.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ion.bootstrap import App, build_app, set_app
from ion.domain.models import Usage
from ion.services.quota import QuotaGuard, QuotaLimits, estimate_tokens
from tests.fakes.clock import ManualClock
from tests.fakes.llm import GatedLlm
from tests.support.app import function_client, make_settings
from tests.support.openapi_check import CheckedClient

FIXED_USAGE = Usage(input_tokens=100, output_tokens=150)  # 250 tokens an answer
ANSWER = ["A fixed ", "answer ", "in three pieces."]


@dataclass
class Backend:
    app: App
    llm: GatedLlm
    api: CheckedClient

    def auth(self, user: str = "alice") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.app.dev_token(user)}"}


def _backend(data_dir: Path, **settings: Any) -> Iterator[Backend]:
    app = build_app(
        make_settings(
            data_dir,
            cache_ttl_s=0,
            rate_limit_per_minute=1000,
            api_rate_limit_per_minute=1000,
            **settings,
        )
    )
    llm = GatedLlm(answer=ANSWER, usage=FIXED_USAGE)
    app.chat._llm = llm
    set_app(app)
    try:
        yield Backend(app, llm, CheckedClient(function_client("chat")))
    finally:
        set_app(None)


@pytest.fixture
def sqlite_backend(clean_env: Path) -> Iterator[Backend]:
    yield from _backend(clean_env / "data")


@pytest.fixture
def firestore_backend(
    clean_env: Path, firestore_reset: None, pubsub_topic: Any
) -> Iterator[Backend]:
    from tests.conftest import FIRESTORE_TEST_PROJECT

    yield from _backend(
        clean_env / "data",
        backend="gcp",
        gcp_project=FIRESTORE_TEST_PROJECT,
        events_topic=pubsub_topic.topic,
        jwt_issuer="https://auth.ion.example",
        jwt_audience="ion-mentoring",
    )


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def backend(request: pytest.FixtureRequest) -> Backend:
    chosen: Backend = request.getfixturevalue(f"{request.param}_backend")
    return chosen


def _race(backend: Backend, bodies: list[dict[str, Any]]) -> list[Any]:
    """POST every body at once; the model's gate opens when all are decided."""
    backend.llm.gate.clear()
    backend.llm.finished = 0
    backend.llm.requests.clear()
    barrier = threading.Barrier(len(bodies))
    headers = backend.auth()

    def one(body: dict[str, Any]) -> Any:
        barrier.wait()
        try:
            response = backend.api.post("/v1/chat", json=body, headers=headers)
            response.get_data()  # a stream runs to its end here
            return response
        finally:
            backend.llm.done()

    with ThreadPoolExecutor(len(bodies)) as pool:
        futures = [pool.submit(one, body) for body in bodies]
        backend.llm.open_when_all_decided(len(bodies))
        return [future.result(timeout=120) for future in futures]


def _assert_ordered(backend: Backend, conversation_id: str, count: int) -> None:
    detail = backend.api.get(f"/v1/conversations/{conversation_id}", headers=backend.auth())
    body = detail.get_json()
    assert body["message_count"] == count
    stamps = [datetime.fromisoformat(m["created_at"]) for m in body["messages"]]
    assert len(stamps) == count
    assert all(a < b for a, b in itertools.pairwise(stamps)), stamps
    assert datetime.fromisoformat(body["updated_at"]) >= stamps[-1]


# ---- one turn at a time per conversation ----------------------------------------------

N = 10


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_concurrent_turns_one_model_call_per_stored_turn(backend: Backend, stream: bool) -> None:
    first = backend.api.post(
        "/v1/chat", json={"message": "what is a closure?"}, headers=backend.auth()
    )
    assert first.status_code == 200
    cid = first.get_json()["conversation_id"]

    responses = _race(
        backend,
        [
            {"message": f"and example {k}?", "conversation_id": cid, "stream": stream}
            for k in range(N)
        ],
    )

    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [409] * (N - 1)
    assert backend.llm.calls == 1  # exactly the turns stored
    for loser in (r for r in responses if r.status_code == 409):
        assert loser.get_json()["error"]["code"] == "conflict"
        assert loser.headers["Retry-After"] == "2"
        assert loser.mimetype == "application/json"  # refused before any stream began
    (winner,) = [r for r in responses if r.status_code == 200]
    if stream:
        text = winner.get_data(as_text=True)
        assert "event: done" in text and "event: error" not in text
    _assert_ordered(backend, cid, 4)
    # The turn released its lease: the next message is answered at once.
    backend.llm.gate.set()
    after = backend.api.post(
        "/v1/chat", json={"message": "thanks", "conversation_id": cid}, headers=backend.auth()
    )
    assert after.status_code == 200
    _assert_ordered(backend, cid, 6)


def test_concurrent_retries_of_an_unanswered_message_answer_it_once(backend: Backend) -> None:
    from ion.errors import LlmError

    healthy = backend.llm
    backend.app.chat._llm = GatedLlm(failure=LlmError("model down"))
    failed = backend.api.post(
        "/v1/chat", json={"message": "explain monads"}, headers=backend.auth()
    )
    assert failed.status_code == 503
    cid = failed.get_json()["conversation_id"]
    backend.app.chat._llm = healthy

    responses = _race(
        backend, [{"message": "explain monads", "conversation_id": cid} for _ in range(N)]
    )
    assert sorted(r.status_code for r in responses) == [200] + [409] * (N - 1)
    assert healthy.calls == 1
    detail = backend.api.get(f"/v1/conversations/{cid}", headers=backend.auth()).get_json()
    assert [(m["role"], m["status"]) for m in detail["messages"]] == [
        ("user", "complete"),
        ("assistant", "complete"),
    ]
    _assert_ordered(backend, cid, 2)


def test_a_failed_turn_releases_the_conversation(backend: Backend) -> None:
    from ion.errors import LlmError

    first = backend.api.post(
        "/v1/chat", json={"message": "what is a monad?"}, headers=backend.auth()
    )
    cid = first.get_json()["conversation_id"]

    healthy = backend.llm
    backend.app.chat._llm = GatedLlm(failure=LlmError("model down"))
    body = {"message": "and a functor?", "conversation_id": cid}
    assert backend.api.post("/v1/chat", json=body, headers=backend.auth()).status_code == 503
    backend.app.chat._llm = healthy
    assert backend.api.post("/v1/chat", json=body, headers=backend.auth()).status_code == 200


def test_an_instance_with_a_slow_clock_still_stores_messages_in_time_order(
    backend: Backend,
) -> None:
    first = backend.api.post(
        "/v1/chat", json={"message": "what is a closure?"}, headers=backend.auth()
    )
    cid = first.get_json()["conversation_id"]
    behind = backend.app.clock.now() - timedelta(minutes=5)
    # another instance on the same store, its clock 5 minutes behind
    other = build_app(
        backend.app.settings, clock=ManualClock(behind, tick=timedelta(milliseconds=1))
    )
    other.chat._llm = backend.llm
    set_app(other)
    body = {"message": "and an example?", "conversation_id": cid}
    assert backend.api.post("/v1/chat", json=body, headers=backend.auth()).status_code == 200
    _assert_ordered(backend, cid, 4)


# ---- the daily token budget under concurrency -----------------------------------------


def test_concurrent_requests_overshoot_the_budget_by_less_than_one_request(
    backend: Backend,
) -> None:
    """40 concurrent first messages, all admitted or refused before any answer settles.

    Each reserves E = estimate_tokens(request). With a budget of 2E + 1 the three requests
    that find 0, E and 2E reserved are admitted and the rest refused; the three answers
    then settle to their real 3 × 250 tokens."""
    message = "how do I structure a small Flask project?"
    probe = backend.app.chat.prepare("probe", message)
    estimate = estimate_tokens(probe.request)
    backend.app.chat.abandon(probe)
    budget = 2 * estimate + 1
    guard = QuotaGuard(
        backend.app.quota._store,
        backend.app.clock,
        QuotaLimits(chat_per_minute=1000, api_per_minute=1000, daily_tokens=budget),
    )
    backend.app.quota = guard

    responses = _race(backend, [{"message": message} for _ in range(40)])

    assert sorted(r.status_code for r in responses) == [200] * 3 + [429] * 37
    assert backend.llm.calls == 3
    assert all(estimate_tokens(r) == estimate for r in backend.llm.requests)
    for refused in (r for r in responses if r.status_code == 429):
        assert refused.get_json()["error"]["code"] == "budget_exhausted"
    assert guard.tokens_used("alice") == 3 * 250
    # The reservations were settled and the refused ones given back: 750 < 2E + 1 left
    # room, so the next request is admitted.
    backend.llm.gate.set()
    assert (
        backend.api.post("/v1/chat", json={"message": message}, headers=backend.auth()).status_code
        == 200
    )
    assert guard.tokens_used("alice") == 4 * 250
