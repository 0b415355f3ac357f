"""Time to first byte of streamed chat answers over HTTP (SSE), end to end.

Starts the fake Gemini server (tests/fakes/gemini.py) in-process and the `chat` function
under functions-framework (gunicorn, WORKERS=1 THREADS=4, as Cloud Functions runs it) with
ION_LLM_PROVIDER=gemini pointed at the fake, on a temporary SQLite data dir, then sends
`--runs` streaming POST /v1/chat requests one after another (loopback only). For each it
measures, from sending the request:

- `meta`: the first SSE event (auth, routing, prompt building; before the LLM is called)
- `delta`: the first text of the answer (adds the google-genai request and the fake's
  `--think-ms`)
- `done`: the whole answer stored and the stream finished

In the same run, a bare functions-framework function that streams `meta`, one `delta`
and `done` at once, driven the same way: the floor, so `chat - bare` is our overhead.

The response cache is off (ION_CACHE_TTL_S=0) so every request reaches the fake. The
first (cold) request, which imports google-genai and builds the client in the worker, is
reported separately and excluded from the percentiles.

    .venv/bin/python bench/sse_ttfb_bench.py --runs 200
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime
from pathlib import Path

from _common import (  # first: puts shared/ and the repository root on sys.path
    ROOT,
    floor_ms,
    percentile,
    print_stats,
    scripted_stream,
)
from _server import Source, start, stop, wait_answering

from ion.adapters.tokens import issue_token
from tests.fakes.gemini import FakeGemini

MODEL = "gemini-bench"
SECRET = "bench-secret-" + "x" * 40
MESSAGES = (
    "how do python decorators work?",
    "면접이 내일인데 너무 떨려요",
    "what should I learn next after flask?",
    "is 200 ms p99 good enough for a chat api?",
)


def fresh_message(index: int) -> str:
    """Every request a new text, as real learners send: the embedding cache misses and each
    turn pays the model, which is part of the time to `meta`."""
    return f"{MESSAGES[index % len(MESSAGES)]} (question {index})"


BARE_SSE = '''"""The baseline: a bare functions-framework function streaming three SSE events."""

import functions_framework
from flask import Response


@functions_framework.http
def stream(request):
    def events():
        yield "event: meta\\ndata: {}\\n\\n"
        yield 'event: delta\\ndata: {"text": "hello"}\\n\\n'
        yield "event: done\\ndata: {}\\n\\n"

    return Response(events(), mimetype="text/event-stream")
'''


def bare_streams(tmp: Path, runs: int) -> list[tuple[float, float, float]]:
    folder = Path(tmp) / "bare-sse"
    folder.mkdir()
    (folder / "main.py").write_text(BARE_SSE)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    process = start(Source(folder, "stream", {}), port, {**env, "WORKERS": "1", "THREADS": "4"})
    try:
        wait_answering(f"http://127.0.0.1:{port}/", process)
        one_stream(port, "unused", MESSAGES[0])
        return [one_stream(port, "unused", fresh_message(i)) for i in range(runs)]
    finally:
        stop(process)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("functions-framework exited during start-up")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    raise SystemExit("functions-framework did not become healthy within 60 s")


def one_stream(port: int, token: str, message: str) -> tuple[float, float, float]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    started = time.perf_counter()
    conn.request(
        "POST",
        "/v1/chat",
        body=json.dumps({"message": message, "stream": True}),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"},
    )
    response = conn.getresponse()
    if response.status != 200:
        raise RuntimeError(f"HTTP {response.status}: {response.read()[:300]!r}")
    meta = delta = done = None
    while done is None:
        line = response.readline()
        if not line:
            raise RuntimeError("stream ended without a done event")
        if line.startswith(b"event: "):
            name = line[7:].strip()
            now = time.perf_counter() - started
            if name == b"meta" and meta is None:
                meta = now
            elif name == b"delta" and delta is None:
                delta = now
            elif name == b"done":
                done = now
            elif name == b"error":
                raise RuntimeError(f"error event: {response.readline()!r}")
    conn.close()
    assert meta is not None and delta is not None
    return meta, delta, done


def main() -> None:
    args, behaviour = scripted_stream(__doc__.split("\n\n")[0])
    port = free_port()
    with tempfile.TemporaryDirectory(prefix="ion-sse-bench-") as tmp, FakeGemini() as fake:
        fake.set_default(behaviour)
        env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
        env.update(
            {
                "WORKERS": "1",
                "THREADS": "4",
                "ION_DATA_DIR": str(Path(tmp) / "data"),
                "ION_JWT_SECRET": SECRET,
                "ION_LLM_PROVIDER": "gemini",
                "ION_GEMINI_BASE_URL": fake.base_url,
                "ION_GEMINI_API_KEY": "bench-api-key",
                "ION_GEMINI_MODEL": MODEL,
                "ION_CACHE_TTL_S": "0",
                "ION_RATE_LIMIT_PER_MINUTE": "0",
                "ION_API_RATE_LIMIT_PER_MINUTE": "0",
                "ION_DAILY_TOKEN_BUDGET": "0",
                "ION_LOG_LEVEL": "WARNING",
            }
        )
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "functions-framework"),
                "--target",
                "chat",
                "--source",
                str(ROOT / "functions" / "chat" / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=tmp,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            wait_healthy(f"http://127.0.0.1:{port}", process)
            token = issue_token(SECRET, "bench", now=datetime.now(UTC), ttl_s=3600)
            cold = one_stream(port, token, MESSAGES[0])
            results = [one_stream(port, token, fresh_message(i)) for i in range(args.runs)]
        finally:
            stop(process)
        bare = bare_streams(Path(tmp), args.runs)

    ms = 1000.0
    print(
        f"SSE POST /v1/chat via functions-framework (gunicorn 1x4) + fake Gemini: "
        f"{args.runs} runs, {args.chunks} chunks, {args.chunk_delay_ms:g} ms between chunks, "
        f"{args.think_ms:g} ms think time"
    )
    print(
        f"cold first request: meta {cold[0] * ms:.1f} ms, first delta {cold[1] * ms:.1f} ms, "
        f"done {cold[2] * ms:.1f} ms"
    )
    floor = floor_ms(args)
    for index, (name, base) in enumerate(
        (("meta", 0.0), ("delta", args.think_ms), ("done", floor))
    ):
        values = [r[index] for r in results]
        print_stats(name, values, base)
    print("bare functions-framework function streaming meta, delta, done at once (the floor):")
    for index, name in enumerate(("meta", "delta", "done")):
        print_stats(name, [r[index] for r in bare], 0.0)
    for index, name in enumerate(("meta", "delta")):
        chat_p = [percentile([r[index] for r in results], q) for q in (50, 99)]
        bare_p = [percentile([r[index] for r in bare], q) for q in (50, 99)]
        print(
            f"overhead to {name}: p50 {(chat_p[0] - bare_p[0]) * ms:.2f} ms, p99 "
            f"{(chat_p[1] - bare_p[1]) * ms:.2f} ms over the bare function (target p99 ≤ 20 ms)"
        )


if __name__ == "__main__":
    main()
