"""Streaming through real servers: `functions-framework` (gunicorn, as Cloud Functions runs
it) and the `ion chat` command, both with ION_LLM_PROVIDER=gemini against the fake Gemini.

The fake's `gate` holds each streamed chunk until the test lets it go, so "the first delta
arrived before the second chunk existed" is proved causally, without timing assertions.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.tokens import issue_token
from ion.domain.models import Message
from tests.fakes.gemini import FakeGemini, answer
from tests.support.app import TEST_JWT_SECRET
from tests.support.emulators import free_port
from tests.support.paths import REPO

pytest.importorskip("google.genai")

MODEL = "gemini-stream-e2e"
BIN = Path(sys.executable).parent


def gemini_env(data_dir: Path, fake: FakeGemini) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update(
        {
            "ION_DATA_DIR": str(data_dir),
            "ION_JWT_SECRET": TEST_JWT_SECRET,
            "ION_LLM_PROVIDER": "gemini",
            "ION_GEMINI_BASE_URL": fake.base_url,
            "ION_GEMINI_API_KEY": "test",
            "ION_GEMINI_MODEL": MODEL,
            "ION_LLM_TIMEOUT_S": "15",
            "ION_LLM_BACKOFF_BASE_S": "0",
            "ION_CACHE_TTL_S": "0",  # every request must reach the fake
        }
    )
    return env


@dataclass
class Server:
    url: str
    data_dir: Path
    fake: FakeGemini
    process: subprocess.Popen[bytes]


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """functions-framework serving the chat function (gunicorn, 1 worker, 4 threads)."""
    workdir = tmp_path_factory.mktemp("ff")
    port = free_port()
    with FakeGemini() as fake:
        env = gemini_env(workdir / "data", fake)
        env.update({"WORKERS": "1", "THREADS": "4"})
        log = (workdir / "server.log").open("wb")
        process = subprocess.Popen(
            [
                str(BIN / "functions-framework"),
                "--target",
                "chat",
                "--source",
                str(REPO / "functions" / "chat" / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        url = f"http://127.0.0.1:{port}"
        try:
            _wait_healthy(url, process, workdir / "server.log")
            yield Server(url=url, data_dir=workdir / "data", fake=fake, process=process)
        finally:
            process.terminate()  # gunicorn's arbiter stops its worker on SIGTERM
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
            log.close()


def _wait_healthy(url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            pytest.fail(f"functions-framework exited:\n{log.read_text()}", pytrace=False)
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=2) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.1)
    pytest.fail(f"functions-framework did not become healthy:\n{log.read_text()}", pytrace=False)


def open_stream(
    server: Server, message: str
) -> tuple[http.client.HTTPConnection, Iterator[tuple[str, dict[str, Any]]]]:
    token = issue_token(TEST_JWT_SECRET, "alice", now=datetime.now(UTC), ttl_s=600)
    host, port = server.url.removeprefix("http://").split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=20)
    conn.request(
        "POST",
        "/v1/chat",
        body=json.dumps({"message": message, "stream": True}),
        headers={
            "Authorization": f"Bearer {token}",
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        },
    )
    response = conn.getresponse()
    assert response.status == 200
    assert response.getheader("Content-Type", "").startswith("text/event-stream")
    return conn, _events(response)


def _events(response: http.client.HTTPResponse) -> Iterator[tuple[str, dict[str, Any]]]:
    """SSE events, parsed as their bytes arrive (one event per blank-line-ended block)."""
    fields: dict[str, str] = {}
    while True:
        line = response.readline()
        if not line:
            return
        text = line.decode("utf-8").rstrip("\r\n")
        if text:
            name, _, value = text.partition(": ")
            fields[name] = value
        elif fields:
            yield fields["event"], json.loads(fields["data"])
            fields = {}


def stored_messages(server: Server, conversation_id: str) -> list[Message]:
    from ion.adapters.sqlite.conversations import SqliteStore

    store = SqliteStore(server.data_dir / "ion.sqlite3")
    try:
        return store.list_messages(conversation_id)
    finally:
        store.close()


def test_sse_streams_through_functions_framework_as_chunks_arrive(server: Server) -> None:
    gate = threading.Semaphore(0)
    pieces = ("First, ", "decorators ", "wrap ", "functions.")
    server.fake.enqueue(MODEL, answer(*pieces, gate=gate, usage=(21, 8, 0)))
    conn, events = open_stream(server, "how do python decorators work?")
    try:
        name, meta = next(events)
        assert name == "meta"  # sent before the model has produced anything
        received = []
        for expected in pieces:
            name, data = next(events)
            assert (name, data["text"]) == ("delta", expected)
            received.append(data["text"])
            gate.release()  # only now may the fake produce the next chunk
        name, done = next(events)
        assert (name, done["model"], done["finish_reason"]) == ("done", MODEL, "STOP")
        assert done["usage"] == {"input_tokens": 21, "output_tokens": 8}
        assert next(events, None) is None
    finally:
        conn.close()
    _, assistant = stored_messages(server, meta["conversation_id"])
    assert (assistant.text, assistant.status, assistant.model) == (
        "".join(pieces),
        "complete",
        MODEL,
    )
    assert assistant.usage is not None and assistant.usage.output_tokens == 8


def test_client_disconnect_keeps_the_partial_answer_incomplete(server: Server) -> None:
    gate = threading.Semaphore(0)
    pieces = tuple(f"part {i}. " for i in range(40))
    server.fake.enqueue(MODEL, answer(*pieces, gate=gate))
    conn, events = open_stream(server, "explain python generators step by step")
    name, meta = next(events)
    assert name == "meta"
    assert next(events) == ("delta", {"text": pieces[0]})
    conn.close()  # the learner goes away mid-answer
    gate.release(len(pieces))  # the model goes on; writing to the closed socket fails

    deadline = time.monotonic() + 20
    stored: list[Message] = []
    while time.monotonic() < deadline:
        stored = stored_messages(server, meta["conversation_id"])
        if len(stored) == 2:
            break
        time.sleep(0.05)
    assert [(m.role, m.status) for m in stored] == [
        ("user", "complete"),
        ("assistant", "incomplete"),
    ]
    partial = stored[1].text
    full = "".join(pieces)
    assert partial.startswith(pieces[0]) and full.startswith(partial) and partial != full
    assert stored[1].id == meta["message_id"]


def test_ion_chat_prints_gemini_tokens_as_they_arrive(tmp_path: Path) -> None:
    gate = threading.Semaphore(0)
    pieces = ("Lists ", "are ", "ordered.")
    with FakeGemini() as fake:
        fake.enqueue(MODEL, answer(*pieces, gate=gate, usage=(10, 3, 0)))
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ion.entrypoints.cli.main",
                "chat",
                "what",
                "is",
                "a",
                "python",
                "list?",
            ],
            env=gemini_env(tmp_path / "data", fake),
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert process.stdout is not None
        seen = b""
        try:
            for piece in pieces:
                # Each piece is on stdout before the fake may produce the next one.
                while piece.encode() not in seen:
                    data = os.read(process.stdout.fileno(), 4096)
                    if not data:
                        break
                    seen += data
                assert piece.encode() in seen
                gate.release()
            rest, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    output = (seen + rest).decode()
    assert process.returncode == 0, err.decode()
    assert "Lists are ordered." in output
    assert f"[model {MODEL} · 3 tokens]" in output
    assert output.strip().splitlines()[-1].startswith("conversation: ")
    assert fake.requests[0].stream


def test_gunicorn_rejections_are_the_json_envelope(server: Server) -> None:
    """A header over gunicorn's 8 KB field limit is refused before the app runs: still JSON,
    still with the security headers (functions-framework's real server)."""
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request("GET", "/health", headers={"X-Big": "a" * 9_000})
        response = connection.getresponse()
        body = json.loads(response.read())
    finally:
        connection.close()
    assert response.status == 431
    assert response.getheader("Content-Type") == "application/json"
    assert body["error"]["code"] == "request_header_fields_too_large"
    assert set(body) == {"error", "request_id"}
    assert response.getheader("X-Content-Type-Options") == "nosniff"
    assert response.getheader("Cache-Control") == "no-store"
    assert response.getheader("Strict-Transport-Security") == "max-age=63072000; includeSubDomains"
