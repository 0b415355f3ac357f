"""Time-to-first-chunk of GeminiLanguageModel.stream() against the local fake Gemini.

The fake (tests/fake_gemini.py) streams `--chunks` SSE events with `--chunk-delay-ms`
between them, after `--think-ms` of simulated model latency. TTFB is measured from the
call to stream() to the first text chunk, so it is the adapter + google-genai + HTTP
overhead on top of `--think-ms`. The first (cold) run, which builds the client, is
reported separately and excluded from the percentiles.

    .venv/bin/python bench/stream_ttfb_bench.py --runs 200
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # reuse the fake server without a tests package
sys.path.insert(0, str(ROOT / "shared"))

from fake_gemini import FakeGemini, answer  # noqa: E402

from ion.adapters.gemini import GeminiLanguageModel  # noqa: E402
from ion.ports import LlmRequest  # noqa: E402

MODEL = "gemini-bench"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def run_once(model: GeminiLanguageModel, request: LlmRequest, chunks: int) -> tuple[float, float]:
    started = time.perf_counter()
    ttfb: float | None = None
    texts = 0
    for chunk in model.stream(request):
        if chunk.text and ttfb is None:
            ttfb = time.perf_counter() - started
        texts += bool(chunk.text)
        if chunk.final is not None:
            assert chunk.final.finish_reason == "STOP"
    total = time.perf_counter() - started
    if ttfb is None or texts != chunks:
        raise RuntimeError(f"expected {chunks} text chunks, got {texts}")
    return ttfb, total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--chunks", type=int, default=20)
    parser.add_argument("--chunk-delay-ms", type=float, default=5.0)
    parser.add_argument("--think-ms", type=float, default=0.0)
    args = parser.parse_args()

    pieces = tuple(f"piece {i:02d} of the mentor's answer. " for i in range(args.chunks))
    behaviour = answer(
        *pieces, chunk_delay_s=args.chunk_delay_ms / 1000, delay_s=args.think_ms / 1000
    )
    request = LlmRequest(
        persona_id="elro",
        system_prompt="You are Elro, a structured mentor.",
        message="How do decorators work?",
    )
    with FakeGemini() as fake:
        fake.set_default(behaviour)
        model = GeminiLanguageModel(
            model=MODEL, api_key="bench-api-key", base_url=fake.base_url, timeout_s=10.0
        )
        cold_ttfb, cold_total = run_once(model, request, args.chunks)
        ttfbs: list[float] = []
        totals: list[float] = []
        for _ in range(args.runs):
            ttfb, total = run_once(model, request, args.chunks)
            ttfbs.append(ttfb)
            totals.append(total)

    ms = 1000.0
    floor = (args.chunks - 1) * args.chunk_delay_ms + args.think_ms
    print(
        f"GeminiLanguageModel.stream() vs fake Gemini: {args.runs} runs, {args.chunks} chunks, "
        f"{args.chunk_delay_ms:g} ms between chunks, {args.think_ms:g} ms think time"
    )
    print(
        f"cold first run (builds the client): ttfb {cold_ttfb * ms:.1f} ms, "
        f"total {cold_total * ms:.1f} ms"
    )
    for name, values, base in (("ttfb", ttfbs, args.think_ms), ("total", totals, floor)):
        print(
            f"{name:>5}: p50 {percentile(values, 50) * ms:7.2f} ms  "
            f"p90 {percentile(values, 90) * ms:7.2f} ms  "
            f"p99 {percentile(values, 99) * ms:7.2f} ms  "
            f"max {max(values) * ms:7.2f} ms  "
            f"mean {statistics.fmean(values) * ms:7.2f} ms  (scripted floor {base:g} ms)"
        )


if __name__ == "__main__":
    main()
