"""Routing benchmark: latency of the router chat uses, its memory and its cold start.

Messages are generated deterministically by combining bilingual fragments (feelings,
technical asks, measurements, planning, noise), so the run is reproducible.

    .venv/bin/python bench/route_bench.py [--n 10000] [--seed 7]

Prints, single thread:
- the blended router (lexicons + sentence embeddings + trained head), with the embedding
  cache OFF so that every message pays for model inference (goal: p99 <= 15 ms);
- the lexicon part alone, and the crisis detector, for comparison;
- process RSS after loading the model and routing;
- time from process start to the first routed answer, next to a bare Python process
  that only starts and prints (the baseline), both measured in fresh processes.
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))

from ion.adapters.embeddings import UseEmbedder
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.domain.safety import CrisisDetector, load_rules
from ion.domain.semantic import SemanticLayer, artifact_path, load_artifact

REPO = Path(__file__).resolve().parents[1]
FIRST_ROUTE = """
import sys, time
sys.path.insert(0, {shared!r})
from ion.bootstrap import build_router, load_embedder
from ion.domain.personas import load_catalog
embedder, _ = load_embedder()
router, status = build_router(load_catalog(), embedder)
decision = router.route("I have been stuck on this bug all day and I want to quit").decision
print(decision.primary, status.ok, flush=True)
"""
BARE = "print('ok', flush=True)"

OPENERS = [
    "",
    "ok so ",
    "솔직히 ",
    "ㅋㅋ ",
    "ugh ",
    "질문이요: ",
    "quick one: ",
    "URGENT ",
    "음.. ",
    "hey, ",
    "선배님 ",
    "honestly ",
]
CORES = [
    "I've been stuck on this bug for 6 hours and I want to quit",
    "코딩 공부하다가 번아웃 온 것 같아요",
    "why does my useEffect run twice?",
    "JPA N+1 문제가 왜 생기는 거예요?",
    "how should I design the API for a booking system",
    "게시판 댓글 테이블 구조 어떻게 잡아요?",
    "my API p95 is 1.2s and p50 is 180ms, what does that gap mean",
    "테스트 커버리지 62%면 괜찮은 건가요?",
    "compare Redis vs Memcached latency for my workload",
    "이 정렬 함수 맞게 짠 건지 검증해 주세요",
    "need a 6-week study roadmap for AWS",
    "팀플 역할 분담 어떻게 하죠",
    "prod is down, who do I call first?",
    "다음 주 마감인데 뭐부터 해야 할지 모르겠어요",
    "I GOT THE OFFER!!! 🎉",
    "개발 밈 추천해줘",
    "explain dependency injection like I'm five",
    "is 800ms response time slow?",
]
TAILS = [
    "",
    "?",
    "!!",
    " ㅠㅠ",
    " lol",
    " 🥲",
    "... 어떻게 해야 할까요",
    " please help",
    " (context: junior dev, 3 months in, small team, Java + Spring)",
    " 그리고 시간도 별로 없어요",
    " thanks in advance",
    " ㄹㅇ",
]
FOLLOW_UPS = ["그럼 그건요?", "and the second one?", "왜요?", "more detail please", "예시요"]


def messages(n: int, seed: int) -> list[tuple[str, str | None]]:
    rng = random.Random(seed)
    ids = ["lua", "elro", "riri", "nana"]
    out: list[tuple[str, str | None]] = []
    for i in range(n):
        if i % 10 == 9:
            out.append((rng.choice(FOLLOW_UPS), rng.choice(ids)))
            continue
        text = rng.choice(OPENERS) + rng.choice(CORES) + rng.choice(TAILS)
        if i % 25 == 0:
            text = (text + " ") * rng.randint(5, 20)  # occasional long message
        out.append((text, None))
    return out


def _percentiles(values: list[float]) -> str:
    q = statistics.quantiles(values, n=100)
    return f"p50={q[49]:.3f}ms p90={q[89]:.3f}ms p99={q[98]:.3f}ms max={max(values):.3f}ms"


def _timed(label: str, route: Callable[[str, str | None], object], msgs: list[Any]) -> None:
    for text, cur in msgs[:200]:  # warm-up
        route(text, cur)
    wall: list[float] = []
    cpu: list[float] = []
    start = time.perf_counter()
    for text, cur in msgs:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        route(text, cur)
        cpu.append((time.thread_time() - c0) * 1000.0)
        wall.append((time.perf_counter() - t0) * 1000.0)
    elapsed = time.perf_counter() - start
    print(f"{label}: {_percentiles(wall)} throughput={len(msgs) / elapsed:,.0f} msg/s")
    print(f"{label} cpu: {_percentiles(cpu)}")


def _process_start_to_output(code: str, runs: int = 3) -> float:
    """Median seconds from spawning a fresh Python to its first line of output."""
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        proc = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        )
        times.append(time.perf_counter() - t0)
        assert proc.stdout.strip(), proc.stderr
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=10_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    catalog = load_catalog()
    t0 = time.perf_counter()
    # cache_size=0: every message is embedded, as a stream of distinct learner messages is.
    embedder = UseEmbedder(cache_size=0)
    semantic = SemanticLayer(embedder, load_artifact(artifact_path("routing")))
    router = Router(catalog, semantic)
    router.route("first call after loading the model")
    print(f"model load + first route={(time.perf_counter() - t0) * 1000:.0f}ms ({embedder.name})")
    lexicon = Router(catalog)
    detector = CrisisDetector(
        load_rules(), SemanticLayer(embedder, load_artifact(artifact_path("safety")))
    )
    msgs = messages(max(args.n, 1_000), args.seed)
    counts: dict[str, int] = {}
    for text, cur in msgs:
        primary = router.route(text, current_persona=cur).decision.primary
        counts[primary] = counts.get(primary, 0) + 1
    print(f"messages={len(msgs)} personas={counts}")
    _timed("blended router", lambda t, c: router.route(t, current_persona=c), msgs)
    _timed("lexicon part alone", lambda t, c: lexicon.route(t, current_persona=c), msgs)
    _timed("crisis detector", lambda t, _c: detector.assess(t), msgs)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"process max RSS after load and {3 * len(msgs):,} calls: {rss_mb:.0f} MB")

    first = _process_start_to_output(FIRST_ROUTE.format(shared=str(REPO / "shared")))
    bare = _process_start_to_output(BARE)
    print(
        f"process start -> first routed answer: {first:.2f}s"
        f" (bare Python start -> output: {bare:.2f}s, same run)"
    )


if __name__ == "__main__":
    main()
