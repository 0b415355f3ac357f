"""Time-to-first-chunk of GeminiLanguageModel.stream() against the local fake Gemini.

The fake (tests/fakes/gemini.py) streams `--chunks` SSE events with `--chunk-delay-ms`
between them, after `--think-ms` of simulated model latency. TTFB is measured from the
call to stream() to the first text chunk, so it is the adapter + google-genai + HTTP
overhead on top of `--think-ms`. The first (cold) run, which builds the client, is
reported separately and excluded from the percentiles.

    .venv/bin/python bench/stream_ttfb_bench.py --runs 200
"""

from __future__ import annotations

import time

from _common import (  # first: puts shared/ and the repository root on sys.path
    floor_ms,
    print_stats,
    scripted_stream,
)

from ion.adapters.gemini import GeminiLanguageModel
from ion.domain.models import LlmRequest
from tests.fakes.gemini import FakeGemini

MODEL = "gemini-bench"


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
    args, behaviour = scripted_stream(__doc__.split("\n\n")[0])
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
    floor = floor_ms(args)
    print(
        f"GeminiLanguageModel.stream() vs fake Gemini: {args.runs} runs, {args.chunks} chunks, "
        f"{args.chunk_delay_ms:g} ms between chunks, {args.think_ms:g} ms think time"
    )
    print(
        f"cold first run (builds the client): ttfb {cold_ttfb * ms:.1f} ms, "
        f"total {cold_total * ms:.1f} ms"
    )
    for name, values, base in (("ttfb", ttfbs, args.think_ms), ("total", totals, floor)):
        print_stats(name, values, base)


if __name__ == "__main__":
    main()
