"""Local chat latency through the real HTTP server (`ion serve`) with the offline provider.

Prints p50/p99 request latency, requests/s and, for streaming, time to the first delta.
Usage: python bench/chat_bench.py [--requests 400] [--concurrency 4]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import requests

MESSAGES = [
    "How do Python decorators work under the hood?",
    "면접이 내일인데 너무 떨려요",
    "My API p95 is 800ms, is that slow?",
    "다음 주까지 과제 세 개, 어떻게 나눠서 해야 할까요?",
    "what's the difference between a process and a thread?",
    "테스트 커버리지 70%면 충분한가요?",
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))
    return ordered[index]


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--stream-requests", type=int, default=100)
    args = parser.parse_args()

    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="ion-bench-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    # The bench measures the server, not the abuse limits: lift them for this one user.
    env.update(
        {
            "ION_DATA_DIR": data_dir,
            "ION_LOG_LEVEL": "WARNING",
            "ION_RATE_LIMIT_PER_MINUTE": "0",
            "ION_API_RATE_LIMIT_PER_MINUTE": "0",
            "ION_DAILY_TOKEN_BUDGET": "0",
            "ION_CACHE_TTL_S": "0",
        }
    )
    ion = str(Path(sys.executable).with_name("ion"))
    server = subprocess.Popen(
        [ion, "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert server.stdout is not None
        lines = [server.stdout.readline() for _ in range(3)]
        token = lines[2].strip()
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(base + "/health", timeout=1).ok:
                    break
            except requests.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not start")
            time.sleep(0.1)
        headers = {"Authorization": f"Bearer {token}"}

        def one(i: int) -> float:
            started = time.perf_counter()
            response = requests.post(
                base + "/v1/chat",
                json={"message": MESSAGES[i % len(MESSAGES)]},
                headers=headers,
                timeout=30,
            )
            response.raise_for_status()
            return (time.perf_counter() - started) * 1000

        for i in range(20):  # warm-up
            one(i)
        started = time.perf_counter()
        with ThreadPoolExecutor(args.concurrency) as pool:
            latencies = list(pool.map(one, range(args.requests)))
        elapsed = time.perf_counter() - started

        ttfb: list[float] = []
        for i in range(args.stream_requests):
            t0 = time.perf_counter()
            with requests.post(
                base + "/v1/chat",
                json={"message": MESSAGES[i % len(MESSAGES)], "stream": True},
                headers=headers,
                stream=True,
                timeout=30,
            ) as response:
                response.raise_for_status()
                first = None
                for line in response.iter_lines():
                    if first is None and line.startswith(b"event: delta"):
                        first = (time.perf_counter() - t0) * 1000
                ttfb.append(first if first is not None else float("nan"))

        print(f"chat requests={args.requests} concurrency={args.concurrency} provider=offline")
        print(
            f"chat latency_ms p50={statistics.median(latencies):.2f} "
            f"p99={percentile(latencies, 99):.2f}"
        )
        print(f"chat throughput req_per_s={args.requests / elapsed:.1f}")
        print(
            f"stream ttfb_ms p50={statistics.median(ttfb):.2f} p99={percentile(ttfb, 99):.2f} "
            f"n={len(ttfb)}"
        )
    finally:
        server.terminate()
        server.wait(timeout=10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
