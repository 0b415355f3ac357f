"""Routing latency benchmark: routes >= 10,000 varied messages and prints p50/p99 and msg/s.

Messages are generated deterministically by combining bilingual fragments (feelings,
technical asks, measurements, planning, noise), so the run is reproducible.

    .venv/bin/python bench/route_bench.py [--n 20000] [--seed 7]

Besides wall-clock latency it prints per-call CPU time (thread time), which is what routing
itself costs even when other processes compete for the cores.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "shared"))

from ion.domain.personas import load_catalog
from ion.domain.routing import Router

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--n", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()

    t_first = time.perf_counter()
    router = Router(load_catalog())
    router.route("first call after loading the catalog")
    print(f"catalog load + first route={(time.perf_counter() - t_first) * 1000:.1f}ms")
    msgs = messages(max(args.n, 10_000), args.seed)
    for text, cur in msgs[:200]:  # warm-up
        router.route(text, current_persona=cur)

    latencies: list[float] = []
    cpu: list[float] = []
    counts: dict[str, int] = {}
    start = time.perf_counter()
    for text, cur in msgs:
        t0 = time.perf_counter()
        c0 = time.thread_time()
        result = router.route(text, current_persona=cur)
        cpu.append((time.thread_time() - c0) * 1000.0)
        latencies.append((time.perf_counter() - t0) * 1000.0)
        counts[result.decision.primary] = counts.get(result.decision.primary, 0) + 1
    wall = time.perf_counter() - start

    q = statistics.quantiles(latencies, n=100)
    print(f"messages={len(msgs)} personas={counts}")
    print(
        f"p50={q[49]:.3f}ms p90={q[89]:.3f}ms p99={q[98]:.3f}ms max={max(latencies):.3f}ms "
        f"throughput={len(msgs) / wall:,.0f} msg/s"
    )
    c = statistics.quantiles(cpu, n=100)
    print(f"cpu: p50={c[49]:.3f}ms p90={c[89]:.3f}ms p99={c[98]:.3f}ms max={max(cpu):.3f}ms")


if __name__ == "__main__":
    main()
