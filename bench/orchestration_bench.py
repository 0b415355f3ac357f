"""Single, duo and clarify turns: added latency and LLM calls per turn, and a duo made by one
composed call against a duo made by two calls.

Part 1 runs whole chat turns in process (`ChatService.send`, SQLite, offline provider, a
counting wrapper around the model) and prints per turn type the p50/p95 latency and the
LLM calls per turn.

Part 2 sends the duo messages to the local fake Gemini server (tests/fake_gemini.py, through
google-genai) with a fixed model latency per call (`--model-latency-ms`, standing in for a
real model's time to answer), both ways:
  composed: one call, the primary's prompt asking for the secondary's marked part;
  two calls: the primary's answer, then a second call in the secondary's voice that is
             given the first answer (it must not repeat it), streamed one after the other.
It prints calls, prompt characters sent (the billed input) and latency per duo turn.

Usage: python bench/orchestration_bench.py [--rounds 5] [--model-latency-ms 400]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from ion.bootstrap import build_app  # noqa: E402
from ion.domain.models import LlmChunk, LlmRequest, LlmResponse, LlmTurn  # noqa: E402
from ion.services.quota import estimate_tokens  # noqa: E402
from ion.settings import Settings  # noqa: E402

TURNS = {
    "single": [
        "How do database indexes work internally? B-tree or hash?",
        "면접이 내일인데 너무 불안해서 잠이 안 와요",
        "My API p95 is 800ms, is that slow?",
    ],
    "duo": [
        "I have 3 assignments due this week and I'm totally burned out, what order should I do"
        " them in?",
        "코테 또 떨어져서 우울한데 다음 달까지 공부 계획을 어떻게 짜야 할까요",
        "응답 시간 측정해 보니 2초 넘게 나와요. 캐시 계층을 어디에 두는 게 좋은 설계일까요?",
    ],
    "clarify": ["help", "질문 있어요", "I have a question about my project"],
}


class CountingModel:
    """Wraps a LanguageModel and counts its calls."""

    def __init__(self, inner: object) -> None:
        self._inner = inner
        self.calls = 0

    @property
    def name(self) -> str:
        return self._inner.name  # type: ignore[attr-defined,no-any-return]

    def generate(self, request: LlmRequest) -> LlmResponse:
        self.calls += 1
        return self._inner.generate(request)  # type: ignore[attr-defined,no-any-return]

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        self.calls += 1
        return self._inner.stream(request)  # type: ignore[attr-defined,no-any-return]

    def readiness(self) -> tuple[bool, str]:
        return self._inner.readiness()  # type: ignore[attr-defined,no-any-return]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(p / 100 * len(ordered)) - 1))]


def settings(data_dir: str, **extra: object) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=Path(data_dir),
        jwt_secret="bench-" + "x" * 40,
        cache_ttl_s=0,
        **extra,  # type: ignore[arg-type]
    )


def part_one(rounds: int) -> None:
    app = build_app(settings(tempfile.mkdtemp(prefix="ion-orch-bench-")))
    counting = CountingModel(app.llm)
    app.chat._llm = counting  # the bench counts calls
    app.chat.send("warmup", "warm up the router please")
    print("part 1: whole turns in process (SQLite, offline provider)")
    print(f"{'mode':8} {'turns':>5} {'p50 ms':>8} {'p95 ms':>8} {'LLM calls/turn':>15}")
    baseline = 0.0
    for mode, messages in TURNS.items():
        latencies: list[float] = []
        counting.calls = 0
        turns = 0
        for r in range(rounds):
            for i, text in enumerate(messages):
                started = time.perf_counter()
                reply = app.chat.send(f"bench-{mode}-{r}-{i}", text)
                latencies.append((time.perf_counter() - started) * 1000)
                assert reply.mode == mode, (mode, reply.mode, text)
                turns += 1
        p50 = statistics.median(latencies)
        if mode == "single":
            baseline = p50
        added = "" if mode == "single" else f"  (p50 {p50 - baseline:+.1f} ms vs single)"
        print(
            f"{mode:8} {turns:>5} {p50:>8.1f} {pct(latencies, 95):>8.1f}"
            f" {counting.calls / turns:>15.2f}{added}"
        )


def _prompt_chars(request: LlmRequest) -> int:
    """What a call sends (system prompt, history, message): the input a provider bills."""
    return estimate_tokens(request) - request.max_output_tokens


def part_two(rounds: int, model_latency_ms: int) -> None:
    from tests.fakes.gemini import Behaviour, FakeGemini

    with FakeGemini() as fake:
        fake.set_default(
            Behaviour(
                chunks=("A first part of the answer. ", "And the rest of it."),
                delay_s=model_latency_ms / 1000,
            )
        )
        app = build_app(
            settings(
                tempfile.mkdtemp(prefix="ion-orch-bench-"),
                llm_provider="gemini",
                gemini_api_key="bench-key",
                gemini_base_url=fake.base_url,
                gemini_model="gemini-bench",
                llm_max_attempts=1,
            )
        )
        print(
            f"\npart 2: a duo turn against the fake Gemini server ({model_latency_ms} ms per call)"
        )
        results: dict[str, tuple[list[float], list[int], list[int]]] = {
            "composed": ([], [], []),
            "two calls": ([], [], []),
        }
        for r in range(rounds):
            for i, text in enumerate(TURNS["duo"]):
                turn = app.chat.prepare(f"bench-duo-{r}-{i}", text)
                app.chat.abandon(turn)
                assert turn.plan.mode == "duo"
                secondary = app.catalog.require(turn.plan.personas[1])
                # One composed call (what the service does).
                before = len(fake.requests)
                started = time.perf_counter()
                "".join(c.text for c in app.llm.stream(turn.request))
                elapsed = (time.perf_counter() - started) * 1000
                latencies, calls, tokens = results["composed"]
                latencies.append(elapsed)
                calls.append(len(fake.requests) - before)
                tokens.append(_prompt_chars(turn.request))
                # Two calls: the primary alone, then the secondary given the first answer.
                primary_request = turn.request.model_copy(
                    update={
                        "system_prompt": app.catalog.require(turn.persona.id).system_prompt[
                            turn.request.language
                        ],
                        "duo_persona_id": None,
                        "duo_marker": None,
                    }
                )
                before = len(fake.requests)
                started = time.perf_counter()
                first = "".join(c.text for c in app.llm.stream(primary_request))
                second_request = primary_request.model_copy(
                    update={
                        "persona_id": secondary.id,
                        "system_prompt": secondary.system_prompt[turn.request.language]
                        + "\n\nAnother mentor already answered (below, last turn). Add only a"
                        " short part (two to four sentences) from your side; do not repeat it.",
                        "history": [
                            *primary_request.history,
                            LlmTurn(role="user", text=text),
                            LlmTurn(role="assistant", text=first),
                        ],
                        "message": "(add your short part)",
                    }
                )
                "".join(c.text for c in app.llm.stream(second_request))
                elapsed = (time.perf_counter() - started) * 1000
                latencies, calls, tokens = results["two calls"]
                latencies.append(elapsed)
                calls.append(len(fake.requests) - before)
                tokens.append(_prompt_chars(primary_request) + _prompt_chars(second_request))
        print(f"{'duo by':10} {'p50 ms':>8} {'LLM calls':>10} {'prompt chars':>13}")
        for name, (latencies, calls, tokens) in results.items():
            print(
                f"{name:10} {statistics.median(latencies):>8.1f}"
                f" {statistics.mean(calls):>10.1f} {statistics.mean(tokens):>13.0f}"
            )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--model-latency-ms", type=int, default=400)
    args = parser.parse_args()
    part_one(args.rounds)
    part_two(args.rounds, args.model_latency_ms)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
