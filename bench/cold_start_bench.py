"""Cold start of the `chat` function as Cloud Functions runs it (functions-framework).

For each run, starts a fresh `functions-framework --target chat` process (gunicorn,
WORKERS=1 THREADS=4) on a new SQLite data dir and measures, from the process start:

- `health`: the first 200 from GET /health (imports done, worker serving; nothing built)
- `first chat`: the first POST /v1/chat answered (the app is built lazily on this request:
  settings, store, catalog, router), then a second chat on the now-warm instance.

    .venv/bin/python bench/cold_start_bench.py --runs 5
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
from datetime import UTC, datetime, timedelta
from pathlib import Path

import jwt
import requests

ROOT = Path(__file__).resolve().parents[1]
SECRET = "bench-secret-" + "z" * 40


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def one_run() -> tuple[float, float, float]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update(
        {
            "ION_DATA_DIR": tempfile.mkdtemp(prefix="ion-cold-"),
            "ION_JWT_SECRET": SECRET,
            "ION_LOG_LEVEL": "WARNING",
            "WORKERS": "1",
            "THREADS": "4",
        }
    )
    now = datetime.now(UTC)
    token = jwt.encode(
        {"sub": "bench", "iat": now, "exp": now + timedelta(minutes=10)}, SECRET, "HS256"
    )
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("functions-framework")),
            "--target=chat",
            f"--source={ROOT / 'functions' / 'chat' / 'main.py'}",
            f"--port={port}",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        while True:
            try:
                if requests.get(base + "/health", timeout=1).status_code == 200:
                    break
            except requests.ConnectionError:
                time.sleep(0.005)
            if time.perf_counter() - started > 60:
                raise SystemExit("the function did not start")
        health = time.perf_counter() - started
        body = {"message": "How do Python decorators work?"}
        requests.post(base + "/v1/chat", json=body, headers=headers, timeout=30).raise_for_status()
        first = time.perf_counter() - started
        t0 = time.perf_counter()
        body = {"message": "면접이 내일인데 너무 떨려요"}
        requests.post(base + "/v1/chat", json=body, headers=headers, timeout=30).raise_for_status()
        warm = time.perf_counter() - t0
        return health * 1000, first * 1000, warm * 1000
    finally:
        process.terminate()
        process.wait(timeout=10)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    runs = [one_run() for _ in range(args.runs)]
    for label, index in (("health", 0), ("first chat", 1), ("warm chat", 2)):
        values = [run[index] for run in runs]
        print(
            f"cold start {label:10s} ms: median={statistics.median(values):.0f} "
            f"min={min(values):.0f} max={max(values):.0f} (n={len(values)})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
