"""Throughput and tail latency under load, the packaged `chat` function beside a bare one.

Both run under functions-framework (gunicorn's gthread worker, as Cloud Functions runs
them) and are loaded by `wrk` (Debian package `wrk`) with `--connections` connections
for `--duration` seconds after a warm-up, with bench/chat_load.lua: an authenticated
POST /v1/chat whose message is new on every request (so a new conversation each time).
`chat` is dist/chat.zip (scripts/package.py) unpacked, offline LLM, SQLite, limits off,
JSON logs at INFO (to /dev/null); the bare function answers "hello" to the same request.

For each WORKERS x THREADS pair (`--configs`, the variables functions-framework reads),
prints requests/s, p50, p99, p99/p50, non-2xx answers and the memory of the server's
process tree after the run (RSS summed over gunicorn's master and workers, and PSS,
which counts the pages the workers share with the master once).

Then the leak check (`--leak-config`): a fresh chat server, RSS after at least
`--leak-requests` answered requests and after twice as many (wrk runs of 5 s until the
count is reached), and the growth between the two.

    .venv/bin/python bench/load_bench.py [--configs 1x4,1x8,2x4,2x8] [--duration 10]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from _common import ROOT  # first: puts shared/ and the repository root on sys.path
from _server import (
    Source,
    bare_function,
    clean_env,
    free_port,
    memory_mb,
    packaged_chat,
    pss_split_mb,
    start,
    stop,
    wait_answering,
)

from ion.adapters.tokens import issue_token

SECRET = "bench-secret-" + "l" * 40
LUA = ROOT / "bench" / "chat_load.lua"
CHAT_ENV = {
    "ION_JWT_SECRET": SECRET,
    "ION_LLM_PROVIDER": "offline",
    "ION_LOG_FORMAT": "json",
    "ION_LOG_LEVEL": "INFO",
    "ION_RATE_LIMIT_PER_MINUTE": "0",
    "ION_API_RATE_LIMIT_PER_MINUTE": "0",
    "ION_DAILY_TOKEN_BUDGET": "0",
    # As deployed (terraform/functions.tf): two glibc malloc arenas for all request threads.
    "MALLOC_ARENA_MAX": "2",
}
_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


@dataclass(frozen=True)
class WrkResult:
    requests_per_s: float
    p50_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int


def parse_wrk(output: str) -> WrkResult:
    def latency(pct: str) -> float:
        match = re.search(rf"^\s+{pct}%\s+([\d.]+)(us|ms|s)\s*$", output, re.M)
        if match is None:
            raise RuntimeError(f"no {pct}% latency in wrk's output:\n{output}")
        return float(match.group(1)) * _UNITS[match.group(2)]

    rate = re.search(r"Requests/sec:\s+([\d.]+)", output)
    total = re.search(r"(\d+) requests in", output)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output)  # fmt: skip
    if rate is None or total is None:
        raise RuntimeError(f"unexpected wrk output:\n{output}")
    if int(total.group(1)) == 0:
        raise RuntimeError(f"wrk completed no request:\n{output}")
    return WrkResult(
        requests_per_s=float(rate.group(1)),
        p50_ms=latency("50"),
        p99_ms=latency("99"),
        requests=int(total.group(1)),
        non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
        socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
    )


def wrk(port: int, token: str, *, connections: int, duration_s: float) -> WrkResult:
    threads = 2
    result = subprocess.run(
        [
            "wrk",
            f"--threads={threads}",
            f"--connections={connections}",
            f"--duration={duration_s:g}s",
            "--timeout=30s",
            "--latency",
            f"--script={LUA}",
            f"http://127.0.0.1:{port}/v1/chat",
        ],
        env={**os.environ, "BENCH_TOKEN": token, "BENCH_RUN": str(time.time_ns())},
        capture_output=True,
        text=True,
        check=True,
    )
    return parse_wrk(result.stdout)


@dataclass(frozen=True)
class Row:
    name: str
    workers: int
    threads: int
    result: WrkResult
    rss_mb: float
    pss_mb: float


def measure(
    name: str, source: Source, workers: int, threads: int, args: argparse.Namespace, tmp: Path
) -> Row:
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="data-", dir=tmp)
    env = clean_env({**CHAT_ENV, "ION_DATA_DIR": data_dir, "WORKERS": str(workers), "THREADS": str(threads)})  # fmt: skip
    process = start(source, port, env)
    try:
        wait_answering(f"http://127.0.0.1:{port}/health", process)
        token = bench_token()
        first_chats(port, token, 4 * workers)
        wrk(port, token, connections=args.connections, duration_s=args.warmup)
        result = wrk(port, token, connections=args.connections, duration_s=args.duration)
        rss, pss = memory_mb(process.pid)
    finally:
        stop(process)
    return Row(name, workers, threads, result, rss, pss)


def first_chats(port: int, token: str, count: int) -> None:
    """A few chats one at a time: each gunicorn worker builds its app lazily on its first
    chat (seconds on a busy machine), which must not count as load."""
    for index in range(count):
        request = urllib.request.Request(
            f"http://127.0.0.1:{port}/v1/chat",
            data=json.dumps({"message": f"warm-up message {index}"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, timeout=120) as response:
            response.read()


def bench_token() -> str:
    return issue_token(SECRET, "load-bench", now=datetime.now(UTC), ttl_s=24 * 3600)


def leak_check(source: Source, workers: int, threads: int, args: argparse.Namespace, tmp: Path) -> None:  # fmt: skip
    port = free_port()
    data_dir = tempfile.mkdtemp(prefix="leak-", dir=tmp)
    env = clean_env({**CHAT_ENV, "ION_DATA_DIR": data_dir, "WORKERS": str(workers), "THREADS": str(threads)})  # fmt: skip
    process = start(source, port, env)
    token = bench_token()
    try:
        wait_answering(f"http://127.0.0.1:{port}/health", process)
        first_chats(port, token, 4 * workers)
        done1, failed1 = drive(port, token, args.leak_requests, args.connections)
        rss1, pss1 = memory_mb(process.pid)
        anon1, file1 = pss_split_mb(process.pid)
        more, failed2 = drive(port, token, args.leak_requests, args.connections)
        rss2, pss2 = memory_mb(process.pid)
        anon2, file2 = pss_split_mb(process.pid)
    finally:
        stop(process)
    done2 = done1 + more
    failed = failed1 + failed2
    print(
        f"\nleak check, chat WORKERS={workers} THREADS={threads}, {args.connections} "
        f"connections ({failed} failed requests):"
    )
    print(f"  after {done1:>6} requests: RSS {rss1:6.1f} MB, PSS {pss1:6.1f} MB")
    print(f"  after {done2:>6} requests: RSS {rss2:6.1f} MB, PSS {pss2:6.1f} MB")
    print(
        f"  growth over the last {done2 - done1} requests: RSS {rss2 - rss1:+.1f} MB, "
        f"PSS {pss2 - pss1:+.1f} MB (target: RSS ≤ 256 MB, no growth)"
    )
    print(
        f"  of which anonymous (heap) PSS {anon1:.1f} -> {anon2:.1f} MB ({anon2 - anon1:+.1f}),"
        f" file-backed (mapped model table, libraries) {file1:.1f} -> {file2:.1f} MB"
        f" ({file2 - file1:+.1f})"
    )


def drive(port: int, token: str, requests: int, connections: int) -> tuple[int, int]:
    """wrk runs of a few seconds until at least `requests` were answered (wrk stops on a
    duration, not a count); how many were answered and how many failed."""
    done = failed = 0
    while done < requests:
        result = wrk(port, token, connections=connections, duration_s=5)
        done += result.requests
        failed += result.non_2xx + result.socket_errors
    return done, failed


def parse_config(text: str) -> tuple[int, int]:
    workers, threads = text.lower().split("x")
    return int(workers), int(threads)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", default="1x4,1x8,2x4,2x8", help="WORKERSxTHREADS,...")
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--duration", type=float, default=10.0, help="seconds per run")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds before each run")
    parser.add_argument("--leak-config", default="1x8", help="WORKERSxTHREADS; '' skips")
    parser.add_argument("--leak-requests", type=int, default=5000)
    args = parser.parse_args()
    # Stopped from outside (kill PID): the servers are stopped by the `finally` blocks.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if shutil.which("wrk") is None:
        raise SystemExit("wrk not found: apt-get install wrk")
    configs = [parse_config(c) for c in args.configs.split(",") if c]

    with tempfile.TemporaryDirectory(prefix="ion-load-") as tmp_name:
        tmp = Path(tmp_name)
        sources = {"bare": bare_function(tmp), "chat": packaged_chat(tmp)}
        print(
            f"wrk: {args.connections} connections, 2 threads, {args.duration:g} s per run after "
            f"{args.warmup:g} s of warm-up; os.cpu_count()={os.cpu_count()}; "
            f"load average before: {os.getloadavg()[0]:.2f}"
        )
        print(
            f"\n{'function':8} {'W':>2} {'T':>2} {'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} "
            f"{'p99/p50':>7} {'non-2xx':>7} {'RSS MB':>7} {'PSS MB':>7}"
        )
        for workers, threads in configs:
            for name, source in sources.items():
                row = measure(name, source, workers, threads, args, tmp)
                r = row.result
                print(
                    f"{name:8} {workers:>2} {threads:>2} {r.requests_per_s:8.1f} "
                    f"{r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.p99_ms / r.p50_ms:7.2f} "
                    f"{r.non_2xx + r.socket_errors:>7} {row.rss_mb:7.1f} {row.pss_mb:7.1f}",
                    flush=True,
                )
        print(f"load average after: {os.getloadavg()[0]:.2f}")
        if args.leak_config:
            workers, threads = parse_config(args.leak_config)
            leak_check(sources["chat"], workers, threads, args, tmp)
    return 0


if __name__ == "__main__":
    sys.exit(main())
