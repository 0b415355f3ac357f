"""The LLM routing judge: `JudgedRouter` (domain) + `GeminiRoutingJudge` (adapter), driven by
the REAL google-genai client against tests/fakes/gemini.py.

The local router here is the lexicon router (no embedding model): what matters is its
decision and confidence, which each test reads first and then sets the threshold around.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ion.adapters.gemini_judge import GeminiRoutingJudge
from ion.domain.personas import PersonaCatalog, load_catalog
from ion.domain.routing import Router
from ion.services.judge import JudgedRouter, judge_instructions, judge_key
from ion.settings import Settings
from tests.conftest import LearningBackend
from tests.fakes.clock import ManualClock
from tests.fakes.gemini import (
    FakeGemini,
    answer,
    delayed,
    finish_blocked,
    http_error,
    malformed,
    safety_block,
    structured,
)

pytest.importorskip("google.genai")

MODEL = "gemini-judge-test"
API_KEY = "test-api-key-0123456789"
# A message the lexicon router reads as elro with modest confidence.
MESSAGE = "I keep thinking about the refactor of our payment module"
HISTORY = [
    "first turn: hello",
    "second turn: I started a new job",
    "third turn: the codebase is old",
    "fourth turn: nobody documents anything",
    "fifth turn: my lead is on holiday",
]
START = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalog() -> PersonaCatalog:
    return load_catalog()


@pytest.fixture(scope="module")
def local(catalog: PersonaCatalog) -> Router:
    return Router(catalog)


def make_judge(fake: FakeGemini, catalog: PersonaCatalog, **overrides: Any) -> GeminiRoutingJudge:
    options: dict[str, Any] = {
        "persona_ids": catalog.ids,
        "instructions": judge_instructions(catalog),
        "model": MODEL,
        "api_key": API_KEY,
        "base_url": fake.base_url,
        "timeout_s": 2.0,
        "thinking_budget": 0,
    }
    options.update(overrides)
    return GeminiRoutingJudge(**options)


def judged_router(
    fake: FakeGemini, local: Router, *, threshold: float = 1.0, **options: Any
) -> JudgedRouter:
    judge_options = options.pop("judge", {})
    return JudgedRouter(
        local, make_judge(fake, local.catalog, **judge_options), threshold=threshold, **options
    )


def other_than(persona: str, catalog: PersonaCatalog) -> str:
    return next(pid for pid in catalog.ids if pid != persona)


# --- the request -------------------------------------------------------------------------


def test_judge_request_is_structured_deterministic_and_trimmed(
    fake_gemini: FakeGemini, local: Router, catalog: PersonaCatalog
) -> None:
    fake_gemini.enqueue(
        MODEL, structured({"persona": "nana", "secondary": "lua", "main_need": "x needs y"})
    )
    router = judged_router(fake_gemini, local, turns=3)

    router.route(MESSAGE, history=HISTORY, current_persona="elro")

    (sent,) = fake_gemini.requests
    assert sent.model == MODEL and not sent.stream
    config = sent.generation_config
    assert config["temperature"] == 0.0
    assert config["responseMimeType"] == "application/json"
    thinking = config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 0
    schema = sent.response_schema
    assert schema is not None
    assert schema["properties"]["persona"]["enum"] == catalog.ids == ["lua", "elro", "riri", "nana"]
    assert schema["properties"]["secondary"]["enum"] == catalog.ids
    assert sorted(schema["required"]) == ["main_need", "persona"]
    # The charter and the examples are the system prompt; the learner's text is data.
    system = sent.system_instruction or ""
    assert system == judge_instructions(catalog)
    for pid in catalog.ids:
        assert f"| {pid} " in system
    assert MESSAGE not in system
    # Only the last three earlier learner turns go out, oldest first, with the message.
    assert sent.contents == [("user", sent.contents[0][1])]
    assert sent.user_json == {
        "message": MESSAGE,
        "earlier_turns": HISTORY[-3:],
        "current_persona": "elro",
    }


def test_zero_turns_sends_no_history(
    fake_gemini: FakeGemini, local: Router, catalog: PersonaCatalog
) -> None:
    fake_gemini.enqueue(MODEL, structured({"persona": "elro", "main_need": "explain"}))
    judged_router(fake_gemini, local, turns=0).route(MESSAGE, history=HISTORY)
    (sent,) = fake_gemini.requests
    assert sent.user_json["earlier_turns"] == []
    assert sent.user_json["current_persona"] is None


# --- the verdict -------------------------------------------------------------------------


def test_verdict_sets_primary_secondary_and_reason_but_keeps_local_figures(
    fake_gemini: FakeGemini, local: Router
) -> None:
    expected = local.route(MESSAGE).decision
    fake_gemini.enqueue(
        MODEL,
        structured(
            {"persona": "nana", "secondary": "lua", "main_need": "  plan\nthe refactor  work "}
        ),
    )
    decision = judged_router(fake_gemini, local).route(MESSAGE).decision

    assert decision.judged is True
    assert (decision.primary, decision.secondary) == ("nana", "lua")
    assert decision.reason == f"judge: plan the refactor work; local: {expected.reason}"
    assert decision.confidence == expected.confidence
    assert decision.scores == expected.scores
    assert expected.judged is False


def test_secondary_is_optional_and_never_the_primary(
    fake_gemini: FakeGemini, local: Router
) -> None:
    fake_gemini.enqueue(MODEL, structured({"persona": "riri", "main_need": "measure it"}))
    fake_gemini.enqueue(
        MODEL, structured({"persona": "riri", "secondary": "riri", "main_need": "measure it"})
    )
    router = judged_router(fake_gemini, local, cache_size=0)
    first = router.route(MESSAGE).decision
    second = router.route(MESSAGE).decision
    assert (first.primary, first.secondary, first.judged) == ("riri", None, True)
    assert (second.primary, second.secondary, second.judged) == ("riri", None, True)
    assert len(fake_gemini.requests) == 2


# --- failures keep the local decision ---------------------------------------------------


FAILURES = [
    pytest.param(
        delayed(1.5, structured({"persona": "nana", "main_need": "x"})), "timeout", id="timeout"
    ),
    pytest.param(answer("persona: nana"), "invalid output", id="not-json"),
    pytest.param(malformed(), "invalid output", id="malformed-body"),
    pytest.param(structured(["nana"]), "invalid output", id="json-not-an-object"),
    pytest.param(structured({"persona": "nana"}), "invalid output", id="no-main-need"),
    pytest.param(
        structured({"persona": "nana", "main_need": " "}), "invalid output", id="blank-need"
    ),
    pytest.param(
        structured({"persona": "zed", "main_need": "x"}), "unknown persona id", id="unknown-id"
    ),
    pytest.param(
        structured({"persona": "nana", "secondary": "zed", "main_need": "x"}),
        "unknown persona id",
        id="unknown-secondary",
    ),
    pytest.param(safety_block(), "safety block", id="prompt-blocked"),
    pytest.param(finish_blocked("SAFETY"), "safety block", id="answer-withheld"),
    pytest.param(http_error(500), "http 500", id="http-500"),
    pytest.param(http_error(429, retry_after="1"), "http 429", id="http-429"),
]


@pytest.mark.parametrize(("behaviour", "reason"), FAILURES)
def test_failure_keeps_the_local_decision_after_one_attempt(
    fake_gemini: FakeGemini,
    local: Router,
    caplog: pytest.LogCaptureFixture,
    behaviour: Any,
    reason: str,
) -> None:
    expected = local.route(MESSAGE, history=HISTORY).decision
    fake_gemini.enqueue(MODEL, behaviour)
    router = judged_router(fake_gemini, local, judge={"timeout_s": 0.3})

    with caplog.at_level(logging.WARNING, logger="ion.services.judge"):
        decision = router.route(MESSAGE, history=HISTORY).decision

    assert decision == expected
    assert decision.judged is False
    assert len(fake_gemini.requests) == 1  # no retry
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert f"({reason})" in text
    assert judge_key(MESSAGE, HISTORY[-3:], None)[:16] in text
    assert MESSAGE not in caplog.text
    assert all(turn not in caplog.text for turn in HISTORY)
    assert router.cached_verdicts == 0  # a failure is not cached: the next repeat asks again


def test_unconfigured_judge_keeps_the_local_decision(
    fake_gemini: FakeGemini, local: Router, caplog: pytest.LogCaptureFixture
) -> None:
    router = judged_router(fake_gemini, local, judge={"api_key": None})
    with caplog.at_level(logging.WARNING, logger="ion.services.judge"):
        decision = router.route(MESSAGE).decision
    assert decision == local.route(MESSAGE).decision
    assert fake_gemini.requests == []
    assert "(not configured)" in caplog.text


# --- threshold and cache -------------------------------------------------------------------


def test_no_call_at_or_above_the_threshold(fake_gemini: FakeGemini, local: Router) -> None:
    confidence = local.route(MESSAGE).decision.confidence
    assert 0.0 < confidence < 1.0
    fake_gemini.set_default(structured({"persona": "nana", "main_need": "plan"}), model=MODEL)

    at = judged_router(fake_gemini, local, threshold=confidence)
    assert at.route(MESSAGE).decision.judged is False
    above = judged_router(fake_gemini, local, threshold=confidence - 0.001)
    assert above.route(MESSAGE).decision.judged is False
    assert len(fake_gemini.requests) == 0

    below = judged_router(fake_gemini, local, threshold=confidence + 0.001)
    assert below.route(MESSAGE).decision.judged is True
    assert len(fake_gemini.requests) == 1


def test_a_repeat_is_served_from_the_cache(fake_gemini: FakeGemini, local: Router) -> None:
    fake_gemini.set_default(structured({"persona": "nana", "main_need": "plan"}), model=MODEL)
    router = judged_router(fake_gemini, local)

    first = router.route(MESSAGE, history=HISTORY)
    assert len(fake_gemini.requests) == 1
    second = router.route(MESSAGE, history=HISTORY)
    assert len(fake_gemini.requests) == 1  # zero model calls for the repeat
    assert second.decision == first.decision and second.decision.judged is True

    # Another context is another question; so is another persona answering now.
    router.route(MESSAGE, history=HISTORY[:-1])
    router.route(MESSAGE, history=HISTORY, current_persona="lua")
    assert len(fake_gemini.requests) == 3
    # Turns beyond the window do not change what the judge sees: still cached.
    router.route(MESSAGE, history=["an older turn", *HISTORY])
    assert len(fake_gemini.requests) == 3
    assert router.cached_verdicts == 3


def test_the_cache_is_bounded(fake_gemini: FakeGemini, local: Router) -> None:
    fake_gemini.set_default(structured({"persona": "nana", "main_need": "plan"}), model=MODEL)
    router = judged_router(fake_gemini, local, cache_size=2)
    for history in (["a"], ["b"], ["c"]):
        router.route(MESSAGE, history=history)
    assert router.cached_verdicts == 2
    router.route(MESSAGE, history=["c"])  # most recent: cached
    assert len(fake_gemini.requests) == 3
    router.route(MESSAGE, history=["a"])  # evicted: asked again
    assert len(fake_gemini.requests) == 4


# --- disagreements ------------------------------------------------------------------------


def test_disagreement_is_stored_and_logged_without_text(
    learning_backend: LearningBackend,
    fake_gemini: FakeGemini,
    local: Router,
    catalog: PersonaCatalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    local_decision = local.route(MESSAGE, history=HISTORY).decision
    judge_pick = other_than(local_decision.primary, catalog)
    fake_gemini.set_default(
        structured({"persona": judge_pick, "secondary": None, "main_need": "the need"}),
        model=MODEL,
    )
    store = learning_backend.learning
    clock = ManualClock(START, tick=timedelta(seconds=1))
    router = judged_router(fake_gemini, local, disagreements=store, clock=clock, retention_days=30)

    with caplog.at_level(logging.INFO, logger="ion.services.judge"):
        router.route(MESSAGE, history=HISTORY)
        router.route(MESSAGE, history=HISTORY)  # cached: not stored or logged again

    key = judge_key(MESSAGE, HISTORY[-3:], None)
    (row,) = store.list_disagreements(limit=10, now=START + timedelta(days=1))
    assert row.message_hash == key
    assert row.message == MESSAGE
    assert (row.local_persona, row.judge_persona, row.judge_secondary) == (
        local_decision.primary,
        judge_pick,
        None,
    )
    assert row.confidence == local_decision.confidence
    assert row.main_need == "the need"
    assert row.created_at == START + timedelta(seconds=1)
    assert row.expires_at == row.created_at + timedelta(days=30)
    # Past the retention it is gone from the review list.
    assert store.list_disagreements(limit=10, now=row.expires_at) == []

    infos = [r.getMessage() for r in caplog.records if "disagrees" in r.getMessage()]
    assert infos == [
        f"routing judge disagrees: local={local_decision.primary} judge={judge_pick}"
        f" confidence={local_decision.confidence:.3f} (message {key[:16]})"
    ]
    assert MESSAGE not in caplog.text


def test_agreement_is_not_stored(
    sqlite_learning: LearningBackend, fake_gemini: FakeGemini, local: Router
) -> None:
    primary = local.route(MESSAGE).decision.primary
    fake_gemini.enqueue(MODEL, structured({"persona": primary, "main_need": "same"}))
    store = sqlite_learning.learning
    router = judged_router(
        fake_gemini, local, disagreements=store, clock=ManualClock(START, tick=timedelta(seconds=1))
    )
    assert router.route(MESSAGE).decision.judged is True
    assert store.list_disagreements(limit=10, now=START) == []


class BrokenStore:
    def put_disagreement(self, disagreement: Any) -> None:
        raise RuntimeError("store down")

    def list_disagreements(self, *, limit: int, now: datetime, **bounds: Any) -> list[Any]:
        return []


def test_a_failing_store_never_fails_routing(
    fake_gemini: FakeGemini,
    local: Router,
    catalog: PersonaCatalog,
    caplog: pytest.LogCaptureFixture,
) -> None:
    pick = other_than(local.route(MESSAGE).decision.primary, catalog)
    fake_gemini.enqueue(MODEL, structured({"persona": pick, "main_need": "n"}))
    router = judged_router(
        fake_gemini,
        local,
        disagreements=BrokenStore(),
        clock=ManualClock(START, tick=timedelta(seconds=1)),
    )
    with caplog.at_level(logging.WARNING, logger="ion.services.judge"):
        decision = router.route(MESSAGE).decision
    assert (decision.primary, decision.judged) == (pick, True)
    assert "routing disagreement not stored (RuntimeError" in caplog.text


# --- configuration -------------------------------------------------------------------------


def test_from_settings_uses_the_judge_settings(
    fake_gemini: FakeGemini, local: Router, catalog: PersonaCatalog
) -> None:
    settings = Settings(
        _env_file=None,
        routing_judge="gemini",
        routing_judge_model=MODEL,
        routing_judge_thinking_budget=128,
        gemini_base_url=fake_gemini.base_url,
    )
    judge = GeminiRoutingJudge.from_settings(
        settings, api_key=API_KEY, persona_ids=catalog.ids, instructions="charter"
    )
    fake_gemini.enqueue(MODEL, structured({"persona": "lua", "main_need": "feel better"}))
    verdict = judge.judge("hi", earlier_turns=[], current_persona=None)
    assert (verdict.primary, verdict.secondary, verdict.main_need) == ("lua", None, "feel better")
    (sent,) = fake_gemini.requests
    assert sent.api_key == API_KEY
    thinking = sent.generation_config["thinkingConfig"]
    assert thinking.get("thinkingBudget", thinking.get("thinking_budget")) == 128
    assert sent.generation_config["maxOutputTokens"] == 256 + 128
    assert sent.system_instruction == "charter"


def test_the_charter_must_describe_every_persona(catalog: PersonaCatalog) -> None:
    text = judge_instructions(catalog)
    assert "Rules for mixed messages" in text
    smaller = PersonaCatalog([p.model_copy(update={"id": "zed"}) for p in catalog.all()][:1])
    with pytest.raises(ValueError, match="zed"):
        judge_instructions(smaller)
