"""GeminiLanguageModel driven by the REAL google-genai client against tests/fakes/gemini.py.

API-key mode with base_url = the fake server; sleeps are injected (no real backoff
waits) and timeouts are tiny, so the whole module runs in a few seconds.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Generator
from typing import Any

import pytest
from pydantic import SecretStr

from ion.adapters.gemini import GeminiLanguageModel, LlmStreamInterrupted
from ion.adapters.gemini_sdk import DEFAULT_SAFETY_SETTINGS, SAFETY_CATEGORIES, LlmRequestRejected
from ion.domain.models import LlmChunk, LlmRequest, LlmTurn, Usage
from ion.errors import LlmBlocked, LlmError
from ion.settings import Settings
from tests.fakes.clock import ManualClock
from tests.fakes.gemini import (
    FakeGemini,
    answer,
    cut_stream,
    delayed,
    empty_candidates,
    finish_blocked,
    http_error,
    malformed,
    safety_block,
)
from tests.support.paths import REPO

pytest.importorskip("google.genai")

PRIMARY = "gemini-test-primary"
FALLBACK = "gemini-test-fallback"
API_KEY = "test-api-key-0123456789"

REQUEST = LlmRequest(
    persona_id="elro",
    system_prompt="You are Elro, a structured mentor.",
    history=[
        LlmTurn(role="user", text="Hi, I am learning Python."),
        LlmTurn(role="assistant", text="Great, where are you stuck?"),
    ],
    message="How do decorators work?",
    temperature=0.4,
    max_output_tokens=2048,
)


def make(fake: FakeGemini, **overrides: Any) -> tuple[GeminiLanguageModel, list[float]]:
    """A model pointed at the fake, recording (not performing) backoff sleeps."""
    sleeps: list[float] = []
    options: dict[str, Any] = {
        "model": PRIMARY,
        "api_key": API_KEY,
        "base_url": fake.base_url,
        "timeout_s": 2.0,
        "max_attempts": 3,
        "total_budget_s": 10.0,
        "sleep": sleeps.append,
        "random": lambda: 1.0,  # full jitter at its upper bound: deterministic delays
    }
    options.update(overrides)
    return GeminiLanguageModel(**options), sleeps


def collect(model: GeminiLanguageModel, request: LlmRequest = REQUEST) -> list[LlmChunk]:
    return list(model.stream(request))


# --- normal answers ------------------------------------------------------------------
def test_generate_sends_persona_history_and_config(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, answer("Decorators wrap functions.", usage=(40, 9, 3)))
    model, sleeps = make(fake_gemini, max_output_tokens=256, thinking_budget=0)

    response = model.generate(REQUEST)

    assert response.text == "Decorators wrap functions."
    assert response.model == PRIMARY
    assert response.finish_reason == "STOP"
    # thinking tokens are billed as output tokens
    assert response.usage == Usage(input_tokens=40, output_tokens=12)
    assert sleeps == []

    (sent,) = fake_gemini.requests
    assert sent.model == PRIMARY and not sent.stream
    assert sent.path.endswith(f"/models/{PRIMARY}:generateContent")
    assert sent.api_key == API_KEY
    assert sent.system_instruction == "You are Elro, a structured mentor."
    assert sent.contents == [
        ("user", "Hi, I am learning Python."),
        ("model", "Great, where are you stuck?"),
        ("user", "How do decorators work?"),
    ]
    config = sent.generation_config
    assert config["temperature"] == pytest.approx(0.4)
    assert config["maxOutputTokens"] == 256  # the configured cap (request asked for more)
    thinking = config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    assert sent.body["safetySettings"] == [
        {"category": c, "threshold": t} for c, t in DEFAULT_SAFETY_SETTINGS
    ]


def test_thinking_config_only_sent_when_budget_set(fake_gemini: FakeGemini) -> None:
    model, _ = make(fake_gemini)
    model.generate(REQUEST.model_copy(update={"max_output_tokens": 100}))
    config = fake_gemini.requests[0].generation_config
    assert "thinkingConfig" not in config
    assert config["maxOutputTokens"] == 100  # the request may ask for fewer than the cap


def test_stream_yields_chunks_in_order_then_final(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, answer("Deco", "rators ", "wrap.", usage=(30, 6, 2)))
    model, _ = make(fake_gemini)

    chunks = collect(model)

    assert [c.text for c in chunks[:-1]] == ["Deco", "rators ", "wrap."]
    assert all(c.final is None for c in chunks[:-1])
    final = chunks[-1].final
    assert final is not None and chunks[-1].text == ""
    assert final.text == "Decorators wrap."
    assert final.model == PRIMARY
    assert final.usage == Usage(input_tokens=30, output_tokens=8)
    assert final.finish_reason == "STOP"
    (sent,) = fake_gemini.requests
    assert sent.stream and sent.query == {"alt": ["sse"]}
    assert sent.system_instruction == REQUEST.system_prompt
    assert sent.contents[-1] == ("user", REQUEST.message)


# --- retries, backoff, fallback --------------------------------------------------------
def test_429_is_retried_after_retry_after(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(429, retry_after="2"), answer("ok"))
    model, sleeps = make(fake_gemini)

    assert model.generate(REQUEST).text == "ok"
    assert len(fake_gemini.requests) == 2
    assert sleeps == [2.0]  # Retry-After (2 s) beats the jittered backoff (<= 0.5 s)


def test_backoff_is_exponential_with_full_jitter(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(500), http_error(504), http_error(503), answer("ok"))
    draws = iter([1.0, 0.5, 0.25])
    model, sleeps = make(fake_gemini, max_attempts=4, random=lambda: next(draws))

    assert model.generate(REQUEST).text == "ok"
    # caps 0.5, 1.0, 2.0 (base 0.5 doubling) scaled by the random draw
    assert sleeps == [0.5, 0.5, 0.5]


def test_persistent_503_falls_back_to_second_model(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(503), times=3)
    fake_gemini.enqueue(FALLBACK, answer("from fallback"))
    model, sleeps = make(fake_gemini, fallback_model=FALLBACK)

    response = model.generate(REQUEST)

    assert response.text == "from fallback"
    assert response.model == FALLBACK
    assert len(fake_gemini.requests_for(PRIMARY)) == 3
    assert len(fake_gemini.requests_for(FALLBACK)) == 1
    assert len(sleeps) == 2  # between the primary's attempts only


def test_persistent_failure_raises_llm_error_with_retry_after(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(http_error(503, "The model is overloaded.", retry_after="7"))
    model, _ = make(fake_gemini, fallback_model=FALLBACK, max_attempts=2)

    with pytest.raises(LlmError) as info:
        model.generate(REQUEST)

    err = info.value
    assert type(err) is LlmError
    assert err.retry_after_s == 7
    assert PRIMARY in err.message and FALLBACK in err.message
    assert "503" in err.message and "overloaded" in err.message
    assert API_KEY not in err.message
    assert len(fake_gemini.requests) == 4


def test_failure_without_hint_gets_default_retry_after(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(http_error(500))
    model, _ = make(fake_gemini, max_attempts=2)
    with pytest.raises(LlmError) as info:
        model.generate(REQUEST)
    assert info.value.retry_after_s == 10


def test_retry_after_beyond_budget_moves_on_without_sleeping(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(429, retry_after="30"))
    fake_gemini.enqueue(FALLBACK, answer("fallback answers now"))
    model, sleeps = make(fake_gemini, fallback_model=FALLBACK, total_budget_s=5.0)

    assert model.generate(REQUEST).model == FALLBACK
    assert sleeps == []  # waiting 30 s would blow the 5 s budget
    assert len(fake_gemini.requests_for(PRIMARY)) == 1


def test_total_time_budget_bounds_attempts(fake_gemini: FakeGemini) -> None:
    clock = ManualClock()  # backoff "takes" time on it without waiting
    fake_gemini.set_default(http_error(503))
    model, _ = make(
        fake_gemini,
        max_attempts=10,
        total_budget_s=3.0,
        backoff_base_s=1.0,
        sleep=clock.advance,
        monotonic=clock.monotonic,
    )
    with pytest.raises(LlmError) as info:
        model.generate(REQUEST)
    # sleeps of 1 s then 2 s fit in 3 s; a third (4 s) would not
    assert len(fake_gemini.requests) == 2
    assert "2 attempts" in info.value.message


def test_timeout_is_retried_then_raises(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(delayed(2.0))
    model, sleeps = make(fake_gemini, timeout_s=0.3, max_attempts=2)

    # Without the 0.3 s timeout the fake would answer after its 2 s delay, and no error.
    with pytest.raises(LlmError) as info:
        model.generate(REQUEST)

    assert len(fake_gemini.requests) == 2
    assert len(sleeps) == 1
    assert "timeout" in info.value.message


def test_timeout_then_success(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, delayed(2.0), answer("patience pays"))
    model, _ = make(fake_gemini, timeout_s=0.3)
    assert model.generate(REQUEST).text == "patience pays"


def test_malformed_response_is_retried_then_raises(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(malformed())
    model, sleeps = make(fake_gemini, max_attempts=2)
    with pytest.raises(LlmError) as info:
        model.generate(REQUEST)
    assert len(fake_gemini.requests) == 2 and len(sleeps) == 1
    assert "malformed" in info.value.message


def test_empty_candidates_is_retried(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, empty_candidates(), answer("second time lucky"))
    model, _ = make(fake_gemini)
    assert model.generate(REQUEST).text == "second time lucky"
    assert len(fake_gemini.requests) == 2


# --- non-retryable -------------------------------------------------------------------
def test_401_is_not_retried(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(http_error(401, "API key not valid."))
    model, sleeps = make(fake_gemini, fallback_model=FALLBACK)

    with pytest.raises(LlmRequestRejected) as info:
        model.generate(REQUEST)

    assert isinstance(info.value, LlmError)
    assert info.value.http_status == 401
    assert "API key" in info.value.message
    assert API_KEY not in info.value.message
    assert len(fake_gemini.requests) == 1 and sleeps == []


def test_400_is_not_retried(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(http_error(400, "Invalid argument."))
    model, _ = make(fake_gemini)
    with pytest.raises(LlmRequestRejected):
        model.generate(REQUEST)
    assert len(fake_gemini.requests) == 1


def test_404_model_skips_to_fallback_without_retry(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, http_error(404, "models/x is not found"))
    model, sleeps = make(fake_gemini, fallback_model=FALLBACK)
    assert model.generate(REQUEST).model == FALLBACK
    assert len(fake_gemini.requests_for(PRIMARY)) == 1 and sleeps == []


def test_404_without_fallback_is_rejected(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(http_error(404, "not found"))
    model, _ = make(fake_gemini)
    with pytest.raises(LlmRequestRejected) as info:
        model.generate(REQUEST)
    assert PRIMARY in info.value.message and info.value.http_status == 404
    assert len(fake_gemini.requests) == 1


@pytest.mark.parametrize(
    "behaviour",
    [
        safety_block(),
        safety_block("PROHIBITED_CONTENT"),
        finish_blocked(),
        finish_blocked("BLOCKLIST"),
    ],
    ids=["prompt-safety", "prompt-prohibited", "finish-safety", "finish-blocklist"],
)
def test_safety_block_raises_llm_blocked(fake_gemini: FakeGemini, behaviour: Any) -> None:
    fake_gemini.set_default(behaviour)
    model, sleeps = make(fake_gemini, fallback_model=FALLBACK)
    with pytest.raises(LlmBlocked):
        model.generate(REQUEST)
    with pytest.raises(LlmBlocked):
        collect(model)
    assert len(fake_gemini.requests) == 2 and sleeps == []  # one each, never retried


# --- streaming failures ----------------------------------------------------------------
def test_stream_cut_mid_way_raises_with_partial_text(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, cut_stream("Part one. ", "Part two. ", "Part three.", after=2))
    model, _ = make(fake_gemini, fallback_model=FALLBACK)

    received: list[str] = []
    with pytest.raises(LlmStreamInterrupted) as info:
        for chunk in model.stream(REQUEST):
            received.append(chunk.text)

    err = info.value
    assert isinstance(err, LlmError)
    assert received == ["Part one. ", "Part two. "]
    assert err.partial_text == "Part one. Part two. "
    assert err.model == PRIMARY
    assert len(fake_gemini.requests) == 1  # no retry once text was yielded


def test_stream_failure_before_first_chunk_is_retried(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, cut_stream("never seen", after=0), http_error(503))
    fake_gemini.enqueue(PRIMARY, answer("all", " good"))
    model, sleeps = make(fake_gemini)

    chunks = collect(model)

    assert [c.text for c in chunks[:-1]] == ["all", " good"]
    assert len(fake_gemini.requests) == 3 and len(sleeps) == 2


def test_stream_timeout_before_first_chunk_falls_back(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, delayed(2.0), times=2)
    fake_gemini.enqueue(FALLBACK, answer("fallback", " stream"))
    model, _ = make(fake_gemini, fallback_model=FALLBACK, timeout_s=0.3, max_attempts=2)

    chunks = collect(model)

    final = chunks[-1].final
    assert final is not None and final.model == FALLBACK and final.text == "fallback stream"


def test_stream_stall_mid_way_raises_interrupted(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, answer("quick ", "then stuck", chunk_delay_s=2.0))
    model, _ = make(fake_gemini, timeout_s=0.3)
    with pytest.raises(LlmStreamInterrupted) as info:
        collect(model)
    assert info.value.partial_text == "quick "
    assert "timeout" in info.value.message


def test_stream_malformed_then_persistent_failure(fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(malformed())
    model, _ = make(fake_gemini, max_attempts=2)
    with pytest.raises(LlmError) as info:
        collect(model)
    assert not isinstance(info.value, LlmStreamInterrupted)
    assert len(fake_gemini.requests) == 2


# --- readiness, construction, settings -----------------------------------------------
def test_readiness_reports_configuration_without_network() -> None:
    unreachable = "http://127.0.0.1:9"  # nothing listens there; readiness must not call it
    ok = GeminiLanguageModel(model=PRIMARY, api_key=API_KEY, base_url=unreachable)
    assert ok.readiness() == (True, f"gemini {PRIMARY} (api key)")

    no_key = GeminiLanguageModel(model=PRIMARY, base_url=unreachable)
    ready, reason = no_key.readiness()
    assert not ready and "ION_GEMINI_API_KEY" in reason

    vertex = GeminiLanguageModel(model=PRIMARY, vertex=True, project="ion-prod")
    assert vertex.readiness() == (True, f"gemini {PRIMARY} (vertex project ion-prod)")

    vertex_no_project = GeminiLanguageModel(model=PRIMARY, vertex=True)
    ready, reason = vertex_no_project.readiness()
    assert not ready and "ION_GCP_PROJECT" in reason


def test_missing_api_key_is_a_configuration_error(fake_gemini: FakeGemini) -> None:
    model, _ = make(fake_gemini, api_key=None)
    with pytest.raises(LlmRequestRejected) as info:
        model.generate(REQUEST)
    assert "ION_GEMINI_API_KEY" in info.value.message
    assert fake_gemini.requests == []


def test_from_settings(fake_gemini: FakeGemini) -> None:
    settings = Settings(
        _env_file=None,
        llm_provider="gemini",
        gemini_model=PRIMARY,
        gemini_fallback_model=FALLBACK,
        gemini_api_key=SecretStr("from-settings"),
        gemini_base_url=fake_gemini.base_url,
        gemini_max_output_tokens=321,
        gemini_thinking_budget=64,
        gemini_safety_threshold="BLOCK_ONLY_HIGH",
        llm_timeout_s=5.0,
        llm_max_attempts=2,
    )
    model = GeminiLanguageModel.from_settings(settings, api_key="from-secret-manager")
    assert model.readiness() == (True, f"gemini {PRIMARY} (api key)")

    model.generate(REQUEST)
    (sent,) = fake_gemini.requests
    assert sent.api_key == "from-secret-manager"  # the explicit key wins
    assert sent.generation_config["maxOutputTokens"] == 321
    thinking = sent.generation_config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 64
    assert sent.body["safetySettings"] == [
        {"category": c, "threshold": "BLOCK_ONLY_HIGH"} for c in SAFETY_CATEGORIES
    ]

    GeminiLanguageModel.from_settings(settings).generate(REQUEST)
    assert fake_gemini.requests[-1].api_key == "from-settings"


def test_module_import_does_not_import_the_sdk() -> None:
    code = (
        "import sys, ion.adapters.gemini as g; "
        "g.GeminiLanguageModel(api_key='k').readiness(); "
        "assert 'google.genai' not in sys.modules, 'google.genai imported eagerly'"
    )
    root = REPO
    subprocess.run(
        [sys.executable, "-c", code], check=True, cwd=root, env={"PYTHONPATH": str(root / "shared")}
    )


def test_consumer_stopping_early_closes_the_stream(fake_gemini: FakeGemini) -> None:
    fake_gemini.enqueue(PRIMARY, answer("one ", "two ", "three", chunk_delay_s=0.05))
    model, _ = make(fake_gemini)
    stream = model.stream(REQUEST)
    assert next(stream).text == "one "
    assert isinstance(stream, Generator)
    stream.close()  # e.g. the browser went away: no error, no retry
    assert len(fake_gemini.requests) == 1


def test_one_instance_serves_concurrent_calls(fake_gemini: FakeGemini) -> None:
    from concurrent.futures import ThreadPoolExecutor

    fake_gemini.set_default(answer("same", chunk_delay_s=0.0, delay_s=0.05))
    model, _ = make(fake_gemini)
    with ThreadPoolExecutor(max_workers=8) as pool:
        texts = list(pool.map(lambda _: model.generate(REQUEST).text, range(16)))
    assert texts == ["same"] * 16
    assert len(fake_gemini.requests) == 16
