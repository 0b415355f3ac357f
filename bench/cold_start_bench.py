"""Cold start of the `chat` function as Cloud Functions runs it, beside a bare function.

For each run, starts a fresh `functions-framework --target chat` process (gunicorn,
WORKERS=1 THREADS=4) from dist/chat.zip unpacked (scripts/package.py) on a new SQLite
data dir and measures, from the process start:

- `health`: the first 200 from GET /health (imports done, the embedding model loaded at
  import, worker serving; no app built yet)
- `first chat`: the first POST /v1/chat answered (the app is built lazily on this request:
  settings, store, catalog, router), then a second chat on the now-warm instance.

In the same run, the same for a bare functions-framework hello function: process start
to its first answered request (the same POST), the floor of any function.

    .venv/bin/python bench/cold_start_bench.py --runs 5
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import requests
from _common import MS  # first: puts shared/ and the repository root on sys.path
from _server import Source, bare_function, clean_env, free_port, packaged_chat, start, stop

from ion.adapters.tokens import issue_token

SECRET = "bench-secret-" + "z" * 40
FIRST = {"message": "How do Python decorators work?"}
SECOND = {"message": "면접이 내일인데 너무 떨려요"}


def first_answer(url: str, started: float, **kwargs: object) -> float:
    """Seconds from `started` until `url` answers 200 (connection refused meanwhile)."""
    while True:
        try:
            response = requests.request(url=url, timeout=30, **kwargs)  # type: ignore[arg-type]
            if response.status_code == 200:
                return time.perf_counter() - started
            raise SystemExit(f"{url} answered {response.status_code}: {response.text[:300]}")
        except requests.ConnectionError:
            time.sleep(0.005)
        if time.perf_counter() - started > 60:
            raise SystemExit("the function did not start within 60 s")


def chat_run(source: Source, tmp: Path) -> tuple[float, float, float]:
    port = free_port()
    env = clean_env(
        {
            "ION_DATA_DIR": tempfile.mkdtemp(prefix="data-", dir=tmp),
            "ION_JWT_SECRET": SECRET,
            # Cloud Logging's JSON lines, as deployed (terraform/functions.tf).
            "ION_LOG_FORMAT": "json",
            "ION_LOG_LEVEL": "WARNING",
            "WORKERS": "1",
            "THREADS": "4",
        }
    )
    token = issue_token(SECRET, "bench", now=datetime.now(UTC), ttl_s=600)
    headers = {"Authorization": f"Bearer {token}"}
    base = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    process = start(source, port, env)
    try:
        health = first_answer(base + "/health", started, method="GET")
        first = first_answer(base + "/v1/chat", started, method="POST", json=FIRST, headers=headers)
        t0 = time.perf_counter()
        requests.post(
            base + "/v1/chat", json=SECOND, headers=headers, timeout=30
        ).raise_for_status()
        warm = time.perf_counter() - t0
        return health * MS, first * MS, warm * MS
    finally:
        stop(process)


def bare_run(source: Source) -> float:
    port = free_port()
    env = clean_env({"WORKERS": "1", "THREADS": "4"})
    started = time.perf_counter()
    process = start(source, port, env)
    try:
        return first_answer(f"http://127.0.0.1:{port}/v1/chat", started, method="POST", json=FIRST) * MS  # fmt: skip
    finally:
        stop(process)


def summary(label: str, values: list[float]) -> None:
    print(
        f"{label:34s} median {statistics.median(values):6.0f} ms  "
        f"min {min(values):6.0f}  max {max(values):6.0f}  (n={len(values)})"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="ion-cold-") as tmp_name:
        tmp = Path(tmp_name)
        chat_source, bare_source = packaged_chat(tmp), bare_function(tmp)
        chat: list[tuple[float, float, float]] = []
        bare: list[float] = []
        for _ in range(args.runs):  # interleaved, so both see the same machine load
            bare.append(bare_run(bare_source))
            chat.append(chat_run(chat_source, tmp))
    print("functions-framework (gunicorn WORKERS=1 THREADS=4), process start ->")
    summary("bare: first answered request", bare)
    summary("chat: /health 200", [run[0] for run in chat])
    summary("chat: first answered chat", [run[1] for run in chat])
    summary("chat: next chat (warm), alone", [run[2] for run in chat])
    ratio = statistics.median([run[1] for run in chat]) / statistics.median(bare)
    print(f"first answered chat / bare first answer: {ratio:.1f}x (target: chat ≤ 2000 ms)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
