"""Cloud Logging's structured JSON (ION_LOG_FORMAT=json, `ion.adapters.cloud_logging`), read
back from the lines a served function writes on stdout: the trace and span from the
request's trace header, httpRequest on the request line, the source location, severity,
the error code, time_to_meta_ms of a streamed turn, Error Reporting's shape for errors,
and nothing of what the learner wrote; written without google-cloud-logging."""

from __future__ import annotations

import io
import json
import logging
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from ion.adapters.cloud_logging import ERROR_EVENT_TYPE, StructuredHandler
from ion.adapters.tokens import issue_token
from ion.bootstrap import App, setup_logging
from ion.domain.events import hash_user_id
from ion.errors import LlmError
from tests.support.app import TEST_JWT_SECRET, function_client
from tests.support.paths import REPO

PROJECT = "ion-test"
TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"
SPAN_ID = "00f067aa0ba902b7"
CLOUD_TRACE_ID = "105445aa7843bc8bf206b12000100000"
USER = "learner-42@example.com"
SECRET_TEXT = "a-private-worry-nobody-may-read-7781"


@dataclass
class Served:
    url: str
    log_path: Path

    def call(
        self, method: str, path: str, *, headers: dict[str, str], body: Any = None
    ) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(self.url + path, data=data, method=method)
        for name, value in headers.items():
            request.add_header(name, value)
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return int(response.status), response.read()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read()

    def lines(self) -> list[dict[str, Any]]:
        """Every JSON line written so far (all of stdout must be JSON)."""
        text = self.log_path.read_text(encoding="utf-8")
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def wait_for(self, wanted: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        """The lines `wanted` picks, once there is one: a stream's line is written when
        the server finishes the stream, maybe after the client read its end."""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            found = [line for line in self.lines() if wanted(line)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError("no such log line")

    def request_line(self, request_id: str) -> dict[str, Any]:
        found = self.wait_for(
            lambda line: line.get("request_id") == request_id and bool(line.get("httpRequest"))
        )
        assert len(found) == 1
        return found[0]


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """The chat function under functions-framework, as Cloud Run runs it: JSON logs on
    stdout (kept in a file), stderr apart."""
    where = tmp_path_factory.mktemp("served-chat")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = int(sock.getsockname()[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env |= {
        "ION_DATA_DIR": str(where / "data"),
        "ION_JWT_SECRET": TEST_JWT_SECRET,
        "ION_LOG_FORMAT": "json",
        "ION_GCP_PROJECT": PROJECT,
        "K_SERVICE": "ion-chat",
        "K_REVISION": "ion-chat-00007-abc",
    }
    log_path = where / "stdout.jsonl"
    with log_path.open("wb") as stdout, (where / "stderr.txt").open("wb") as stderr:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "functions_framework",
                "--target",
                "chat",
                "--source",
                str(REPO / "functions" / "chat" / "main.py"),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
            ],
            cwd=where,
            env=env,
            stdout=stdout,
            stderr=stderr,
        )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, (where / "stderr.txt").read_text(errors="replace")
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "the function did not start in 120 s"
                time.sleep(0.1)
        yield Served(f"http://127.0.0.1:{port}", log_path)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _token() -> str:
    return issue_token(TEST_JWT_SECRET, USER, now=datetime.now(UTC), ttl_s=3600)


def test_request_line_carries_trace_span_http_request_and_source_location(
    served: Served,
) -> None:
    status, _ = served.call(
        "GET",
        "/health?access_token=opaque-secret-1",
        headers={
            "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-01",
            "X-Request-Id": "req-trace-0001",
            "User-Agent": "smoke/1.0",
            "X-Forwarded-For": "203.0.113.9, 198.51.100.7, 35.191.0.1",
        },
    )
    assert status == 200
    line = served.request_line("req-trace-0001")
    assert line["severity"] == "INFO"
    assert line["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert line["logging.googleapis.com/spanId"] == SPAN_ID
    assert line["logging.googleapis.com/trace_sampled"] is True
    assert line["message"].startswith("GET /health -> 200 in ")
    assert line["status"] == 200
    assert "code" not in line
    http = line["httpRequest"]
    latency = http.pop("latency")
    assert latency.endswith("s") and float(latency[:-1]) >= 0
    response_size = int(http.pop("responseSize"))
    assert response_size > 0
    assert http == {
        "requestMethod": "GET",
        "requestUrl": f"{served.url}/health?access_token=[redacted]",
        "status": 200,
        "userAgent": "smoke/1.0",
        "remoteIp": "198.51.100.7",  # what the load balancer appended, not the client's claim
        "protocol": "HTTP/1.1",
    }
    source = line["logging.googleapis.com/sourceLocation"]
    assert source["file"].endswith("ion/entrypoints/http/request_log.py")
    assert source["function"] == "log_request"
    assert isinstance(source["line"], int)
    assert line["logging.googleapis.com/labels"] == {"python_logger": "ion.http"}
    assert "opaque-secret-1" not in served.log_path.read_text(encoding="utf-8")


def test_streamed_turn_logs_time_to_meta_under_the_cloud_trace_header(served: Served) -> None:
    status, body = served.call(
        "POST",
        "/v1/chat",
        headers={
            "Authorization": f"Bearer {_token()}",
            "X-Cloud-Trace-Context": f"{CLOUD_TRACE_ID}/12345;o=1",
            "X-Request-Id": "req-stream-0001",
        },
        body={"message": f"{SECRET_TEXT} how do I start?", "stream": True},
    )
    assert status == 200 and b"event: done" in body
    request_line = served.request_line("req-stream-0001")
    assert request_line["status"] == 200
    assert request_line["user_hash"] == hash_user_id(USER)
    assert request_line["httpRequest"]["requestSize"] == str(
        len(json.dumps({"message": f"{SECRET_TEXT} how do I start?", "stream": True}))
    )
    assert "responseSize" not in request_line["httpRequest"]  # a stream: unknown up front
    streams = served.wait_for(
        lambda line: line.get("request_id") == "req-stream-0001" and "time_to_meta_ms" in line
    )
    lines = [line for line in served.lines() if line.get("request_id") == "req-stream-0001"]
    assert len(streams) == 1
    stream = streams[0]
    assert stream["severity"] == "INFO"
    assert stream["message"].startswith("chat stream req-stream-0001: meta after ")
    assert 0 <= stream["time_to_meta_ms"] <= stream["stream_ms"]
    assert "status" not in stream and "code" not in stream  # not a second request line
    for line in lines:
        assert line["logging.googleapis.com/trace"] == (
            f"projects/{PROJECT}/traces/{CLOUD_TRACE_ID}"
        )
        assert line["logging.googleapis.com/spanId"] == f"{12345:016x}"
    assert SECRET_TEXT not in served.log_path.read_text(encoding="utf-8")


def test_error_answer_puts_its_code_on_the_request_line(served: Served) -> None:
    status, body = served.call(
        "GET",
        "/v1/conversations",
        headers={"Authorization": "Bearer not-a-token", "X-Request-Id": "req-error-0001"},
    )
    assert status == 401
    line = served.request_line("req-error-0001")
    assert line["code"] == json.loads(body)["error"]["code"] == "invalid_token"
    assert line["status"] == line["httpRequest"]["status"] == 401
    # No trace header: no trace, nothing made up.
    assert line["logging.googleapis.com/trace"] == ""
    assert line["logging.googleapis.com/spanId"] == ""


def test_malformed_trace_headers_are_ignored(served: Served) -> None:
    served.call(
        "GET",
        "/health",
        headers={
            "traceparent": "00-not-hex-at-all-01",
            "X-Cloud-Trace-Context": 'forged"trace/1;o=1',
            "X-Request-Id": "req-forged-0001",
        },
    )
    line = served.request_line("req-forged-0001")
    assert line["logging.googleapis.com/trace"] == ""
    assert line["logging.googleapis.com/trace_sampled"] is False


def test_every_stdout_line_is_json_with_a_severity(served: Served) -> None:
    served.call("GET", "/health", headers={})
    lines = served.lines()
    assert lines
    assert all(line["severity"] in {"DEBUG", "INFO", "WARNING", "ERROR"} for line in lines)


def test_every_field_the_terraform_log_metrics_read_is_written(served: Served) -> None:
    """The log-based metrics and SLOs (terraform/*.tf) filter on jsonPayload fields: each
    one they name appears in what the served function writes for a streamed turn and an
    error answer."""
    status, _ = served.call(
        "POST",
        "/v1/chat",
        headers={"Authorization": f"Bearer {_token()}"},
        body={"message": "hello", "stream": True},
    )
    assert status == 200
    assert served.call("GET", "/v1/conversations", headers={})[0] == 401
    served.wait_for(lambda line: "time_to_meta_ms" in line)
    served.wait_for(lambda line: bool(line.get("code")))
    named = {
        name
        for path in (REPO / "terraform").glob("*.tf")
        for name in re.findall(r"jsonPayload\.(\w+)", path.read_text(encoding="utf-8"))
    }
    assert named >= {"status", "code", "time_to_meta_ms", "message"}
    written = {key for line in served.lines() for key in line}
    assert named - written == set()


# --- in process, through functions-framework's test client ------------------------------


@pytest.fixture
def json_log(app: App, monkeypatch: pytest.MonkeyPatch) -> Iterator[io.StringIO]:
    """The structured handler on the root logger, writing to a buffer, in service ion-chat."""
    monkeypatch.setenv("K_SERVICE", "ion-chat")
    monkeypatch.delenv("K_REVISION", raising=False)
    stream = io.StringIO()
    handler = StructuredHandler(stream=stream, project=PROJECT)
    root = logging.getLogger()
    root.addHandler(handler)
    logging.getLogger("ion").setLevel(logging.INFO)  # restored by conftest's fixture
    try:
        yield stream
    finally:
        root.removeHandler(handler)


def _json_lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_unhandled_error_is_an_error_reporting_event_with_its_traceback(
    app: App, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    leaked = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJlLXZhbHVl"

    def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"store exploded holding {leaked}")

    monkeypatch.setattr(app.chat, "list_conversations", broken)
    client = function_client("chat")
    response = client.get(
        "/v1/conversations",
        headers={
            "Authorization": f"Bearer {app.dev_token(USER)}",
            "traceparent": f"00-{TRACE_ID}-{SPAN_ID}-00",
            "X-Request-Id": "req-crash-0001",
        },
    )
    assert response.status_code == 500
    lines = [x for x in _json_lines(json_log) if x.get("request_id") == "req-crash-0001"]
    errors = [x for x in lines if x["severity"] == "ERROR"]
    assert len(errors) == 1
    error = errors[0]
    assert error["@type"] == ERROR_EVENT_TYPE
    assert error["serviceContext"] == {"service": "ion-chat"}
    assert error["message"].startswith("unhandled error serving GET /v1/conversations\n")
    assert "Traceback (most recent call last):" in error["message"]
    assert "RuntimeError: store exploded holding [redacted-jwt]" in error["message"]
    assert leaked not in json_log.getvalue()
    location = error["context"]["reportLocation"]
    assert location["filePath"].endswith("ion/entrypoints/http/api.py")
    assert location["functionName"] == "dispatch"
    assert error["logging.googleapis.com/trace"] == f"projects/{PROJECT}/traces/{TRACE_ID}"
    assert error["logging.googleapis.com/trace_sampled"] is False
    request_line = next(x for x in lines if x.get("httpRequest"))
    assert (request_line["status"], request_line["code"]) == (500, "internal")
    assert "@type" not in request_line  # the request line is INFO, not a second event


def test_llm_unavailable_answer_is_the_code_the_slo_excludes(
    app: App, json_log: io.StringIO, monkeypatch: pytest.MonkeyPatch
) -> None:
    def unavailable(*args: Any, **kwargs: Any) -> Any:
        raise LlmError("gemini unreachable after retries")

    monkeypatch.setattr(app.chat, "answer", unavailable)
    client = function_client("chat")
    response = client.post(
        "/v1/chat",
        json={"message": SECRET_TEXT},
        headers={"Authorization": f"Bearer {app.dev_token(USER)}", "X-Request-Id": "req-llm-0001"},
    )
    assert response.status_code == 503
    request_line = next(
        x
        for x in _json_lines(json_log)
        if x.get("request_id") == "req-llm-0001" and x.get("httpRequest")
    )
    # terraform/slo.tf: jsonPayload.status=503 AND jsonPayload.code="llm_unavailable"
    assert (request_line["status"], request_line["code"]) == (503, "llm_unavailable")
    assert SECRET_TEXT not in json_log.getvalue()


def test_json_setup_replaces_plain_std_handlers_once(monkeypatch: pytest.MonkeyPatch) -> None:
    """functions-framework may have put a plain stderr handler on the root logger: its
    lines would reach Cloud Logging unstructured, so the structured handler replaces it;
    set up again (the second function of an instance), nothing is added twice."""
    root = logging.getLogger()
    plain = logging.StreamHandler(sys.stderr)
    elsewhere = logging.StreamHandler(io.StringIO())
    monkeypatch.setattr(root, "handlers", [plain, elsewhere])
    setup_logging("INFO", "json", project=PROJECT)
    setup_logging("INFO", "json", project=PROJECT)
    assert plain not in root.handlers and elsewhere in root.handlers
    assert len([h for h in root.handlers if isinstance(h, StructuredHandler)]) == 1


def test_json_logs_import_no_google_client_library() -> None:
    """The structured lines are written by our handler: a function instance does not pay
    google-cloud-logging's import (about 0.1 s beside Firestore's, 0.3 s alone), nor the
    Google client machinery when its store is SQLite."""
    code = (
        "import sys, io\n"
        "from ion.bootstrap import setup_logging\n"
        "setup_logging('INFO', 'json', project='p')\n"
        "import logging; logging.getLogger('ion.x').info('hello')\n"
        "heavy = ('google.cloud.logging', 'google.api_core', 'google.protobuf', 'grpc')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert done.stdout.splitlines()[-1] == "[]"
    assert json.loads(done.stdout.splitlines()[0])["message"] == "hello"
