"""A small local fake of the Gemini REST API (API-key mode), for tests and benches.

It speaks just enough of `generativelanguage.googleapis.com` for the real google-genai
client pointed at it with `HttpOptions(base_url=...)`:

- ``POST /{version}/models/{model}:generateContent`` -> one JSON response
- ``POST /{version}/models/{model}:streamGenerateContent?alt=sse`` -> SSE events
  ``data: {json}\\r\\n\\r\\n`` over HTTP/1.1 chunked transfer encoding (chunked so that
  cutting the connection mid-stream is visible to the client as an incomplete body)

Behaviour is scripted per model with a FIFO queue of `Behaviour`s; when a model's queue
is empty the default behaviour (a normal answer) is used. Every request is recorded.
Stdlib only, so it can also run outside pytest (see bench/stream_ttfb_bench.py).
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(r"^/(?P<version>v1[a-z0-9]*)/models/(?P<model>[^/:]+):(?P<method>[A-Za-z]+)$")


@dataclass(frozen=True)
class Behaviour:
    """What the fake does for one request. Build these with the helpers below."""

    status: int = 200
    chunks: tuple[str, ...] = ("Hello from the fake Gemini.",)
    # prompt, candidates, thoughts token counts reported in usageMetadata
    usage: tuple[int, int, int] = (12, 7, 0)
    finish_reason: str | None = "STOP"
    delay_s: float = 0.0  # before the status line (exceeds a client timeout when large)
    chunk_delay_s: float = 0.0  # between streamed chunks (before each one after the first)
    cut_after: int | None = None  # stream: send this many chunks, then drop the connection
    retry_after: str | None = None  # Retry-After header on error responses
    error_message: str = "fake error"
    block_reason: str | None = None  # promptFeedback.blockReason (prompt blocked)
    raw_body: bytes | None = None  # sent verbatim with status 200 (malformed responses)
    no_candidates: bool = False  # "candidates": [] (empty response)
    # stream: before each chunk after the first, take one permit (10 s at most, then cut):
    # lets a test prove that a chunk was received before the next one even existed.
    gate: threading.Semaphore | None = None


def answer(
    *chunks: str,
    usage: tuple[int, int, int] = (12, 7, 0),
    finish_reason: str = "STOP",
    chunk_delay_s: float = 0.0,
    delay_s: float = 0.0,
    gate: threading.Semaphore | None = None,
) -> Behaviour:
    """A normal answer; for streams each chunk is one SSE event (usage on the last)."""
    return Behaviour(
        chunks=chunks or Behaviour.chunks,
        usage=usage,
        finish_reason=finish_reason,
        chunk_delay_s=chunk_delay_s,
        delay_s=delay_s,
        gate=gate,
    )


def structured(value: Any, *, usage: tuple[int, int, int] = (40, 12, 0)) -> Behaviour:
    """A structured-output answer: `value` serialised as the JSON text of the reply (what
    Gemini sends for `response_mime_type="application/json"`)."""
    return answer(json.dumps(value, ensure_ascii=False), usage=usage)


def http_error(status: int, message: str = "", *, retry_after: str | None = None) -> Behaviour:
    """A Google-style JSON error body with this HTTP status (e.g. 429, 500, 503, 401)."""
    return Behaviour(
        status=status, error_message=message or f"fake {status}", retry_after=retry_after
    )


def delayed(seconds: float, then: Behaviour | None = None) -> Behaviour:
    """Wait `seconds` before answering (use a value beyond the client's timeout)."""
    return replace(then or Behaviour(), delay_s=seconds)


def cut_stream(*chunks: str, after: int | None = None) -> Behaviour:
    """Stream `chunks` (or the first `after` of them), then drop the connection mid-body."""
    return Behaviour(chunks=chunks, cut_after=len(chunks) if after is None else after)


def safety_block(reason: str = "SAFETY") -> Behaviour:
    """The prompt itself is blocked: promptFeedback.blockReason and no candidates."""
    return Behaviour(block_reason=reason, chunks=(), finish_reason=None)


def finish_blocked(finish_reason: str = "SAFETY") -> Behaviour:
    """A candidate with this finish reason and no content (answer withheld)."""
    return Behaviour(chunks=(), finish_reason=finish_reason)


def malformed() -> Behaviour:
    """HTTP 200 whose body is not JSON."""
    return Behaviour(raw_body=b'{"candidates": [ this is not json')


def empty_candidates() -> Behaviour:
    """HTTP 200 with `"candidates": []` and nothing else useful."""
    return Behaviour(no_candidates=True)


@dataclass(frozen=True)
class RecordedRequest:
    model: str
    method: str  # "generateContent" or "streamGenerateContent"
    path: str
    query: dict[str, list[str]]
    headers: dict[str, str]  # lower-cased names
    body: dict[str, Any]

    @property
    def api_key(self) -> str | None:
        return self.headers.get("x-goog-api-key")

    @property
    def stream(self) -> bool:
        return self.method == "streamGenerateContent"

    @property
    def system_instruction(self) -> str | None:
        si = self.body.get("systemInstruction") or self.body.get("system_instruction")
        if not si:
            return None
        return "".join(p.get("text", "") for p in si.get("parts", []))

    @property
    def contents(self) -> list[tuple[str, str]]:
        """(role, text) for each content entry, in order."""
        return [
            (c.get("role", ""), "".join(p.get("text", "") for p in c.get("parts", [])))
            for c in self.body.get("contents", [])
        ]

    @property
    def generation_config(self) -> dict[str, Any]:
        cfg = self.body.get("generationConfig") or self.body.get("generation_config") or {}
        return dict(cfg)

    @property
    def response_schema(self) -> dict[str, Any] | None:
        """The structured-output schema the client asked for (None when plain text)."""
        cfg = self.generation_config
        schema = cfg.get("responseSchema") or cfg.get("response_schema")
        return dict(schema) if schema else None

    @property
    def user_json(self) -> Any:
        """The last user turn parsed as JSON (a structured request such as the judge's)."""
        role, text = self.contents[-1]
        assert role == "user", role
        return json.loads(text)


@dataclass
class _State:
    lock: threading.Lock = field(default_factory=threading.Lock)
    queues: dict[str, deque[Behaviour]] = field(default_factory=dict)
    defaults: dict[str, Behaviour] = field(default_factory=dict)
    default: Behaviour = field(default_factory=Behaviour)
    requests: list[RecordedRequest] = field(default_factory=list)
    stopping: threading.Event = field(default_factory=threading.Event)


class FakeGemini:
    """The fake server. Start with `start()` (or use as a context manager)."""

    def __init__(self) -> None:
        self._state = _State()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- scripting -------------------------------------------------------------------
    def enqueue(self, model: str, *behaviours: Behaviour, times: int = 1) -> FakeGemini:
        """Queue behaviours for the next requests to `model` (each repeated `times`)."""
        with self._state.lock:
            q = self._state.queues.setdefault(model, deque())
            for b in behaviours:
                q.extend([b] * times)
        return self

    def set_default(self, behaviour: Behaviour, model: str | None = None) -> FakeGemini:
        """Behaviour used when the queue is empty (for one model, or for all models)."""
        with self._state.lock:
            if model is None:
                self._state.default = behaviour
            else:
                self._state.defaults[model] = behaviour
        return self

    def reset(self) -> None:
        with self._state.lock:
            self._state.queues.clear()
            self._state.defaults.clear()
            self._state.default = Behaviour()
            self._state.requests.clear()

    # --- inspection ------------------------------------------------------------------
    @property
    def requests(self) -> list[RecordedRequest]:
        with self._state.lock:
            return list(self._state.requests)

    def requests_for(self, model: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.model == model]

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeGemini is not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    # --- lifecycle -------------------------------------------------------------------
    def start(self) -> FakeGemini:
        handler = type("_BoundHandler", (_Handler,), {"state": self._state})
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True  # a handler stuck in a delay must not block shutdown
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._state.stopping.set()  # wakes handlers sleeping in a scripted delay
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeGemini:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def _usage_json(b: Behaviour) -> dict[str, Any]:
    prompt, cands, thoughts = b.usage
    usage: dict[str, Any] = {
        "promptTokenCount": prompt,
        "candidatesTokenCount": cands,
        "totalTokenCount": prompt + cands + thoughts,
    }
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def _response_json(
    b: Behaviour, model: str, text: str | None, *, finish: bool, usage: bool
) -> dict[str, Any]:
    body: dict[str, Any] = {"modelVersion": model, "responseId": "fake-response"}
    if b.block_reason:
        body["promptFeedback"] = {"blockReason": b.block_reason}
        body["usageMetadata"] = _usage_json(replace(b, usage=(b.usage[0], 0, 0)))
        return body
    if b.no_candidates:
        body["candidates"] = []
        return body
    candidate: dict[str, Any] = {"index": 0}
    if text:
        candidate["content"] = {"role": "model", "parts": [{"text": text}]}
    if finish and b.finish_reason:
        candidate["finishReason"] = b.finish_reason
    body["candidates"] = [candidate]
    if usage:
        body["usageMetadata"] = _usage_json(b)
    return body


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive + chunked streaming, like the real API
    disable_nagle_algorithm = True  # small writes (headers, SSE events) go out at once
    state: _State  # bound per server in FakeGemini.start()

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def handle(self) -> None:
        # Clients drop keep-alive connections at will (timeouts, abandoned streams):
        # not an error worth a traceback on stderr.
        with contextlib.suppress(ConnectionError):
            super().handle()

    def do_POST(self) -> None:
        url = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        m = _PATH.match(url.path)
        if m is None or m["method"] not in ("generateContent", "streamGenerateContent"):
            self._send_json(
                404, {"error": {"code": 404, "message": "not found", "status": "NOT_FOUND"}}
            )
            return
        try:
            body = json.loads(raw or b"{}")
        except ValueError:
            body = {"_unparsed": raw.decode("utf-8", "replace")}
        model, method = m["model"], m["method"]
        state = self.state
        with state.lock:
            state.requests.append(
                RecordedRequest(
                    model=model,
                    method=method,
                    path=url.path,
                    query=parse_qs(url.query),
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=body,
                )
            )
            q = state.queues.get(model)
            b = q.popleft() if q else state.defaults.get(model, state.default)

        if b.delay_s and state.stopping.wait(b.delay_s):
            return
        try:
            if b.status != 200:
                self._send_error(b)
            elif b.raw_body is not None:
                self._send_raw(200, b.raw_body, "application/json")
            elif method == "generateContent":
                text = "".join(b.chunks) or None
                self._send_json(200, _response_json(b, model, text, finish=True, usage=True))
            else:
                self._stream(b, model)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True  # the client gave up (e.g. its timeout fired)

    def _stream(self, b: Behaviour, model: str) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        events = list(_events(b, model))
        for i, event in enumerate(events):
            if b.cut_after is not None and i >= b.cut_after:
                self._cut()
                return
            if i and b.chunk_delay_s and self.state.stopping.wait(b.chunk_delay_s):
                return
            if i and b.gate is not None and not b.gate.acquire(timeout=10.0):
                self._cut()
                return
            data = b"data: " + json.dumps(event).encode() + b"\r\n\r\n"
            self._write_chunk(data)
        if b.cut_after is not None:
            self._cut()
            return
        self._write_chunk(b"")  # terminating chunk: the body is complete

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _cut(self) -> None:
        # Drop the connection without the terminating chunk: an incomplete body.
        self.close_connection = True
        self.wfile.flush()
        with contextlib.suppress(OSError):  # the client may already be gone
            self.connection.shutdown(socket.SHUT_RDWR)

    def _send_error(self, b: Behaviour) -> None:
        statuses = {
            400: "INVALID_ARGUMENT",
            401: "UNAUTHENTICATED",
            403: "PERMISSION_DENIED",
            404: "NOT_FOUND",
            429: "RESOURCE_EXHAUSTED",
            500: "INTERNAL",
            503: "UNAVAILABLE",
            504: "DEADLINE_EXCEEDED",
        }
        payload = {
            "error": {
                "code": b.status,
                "message": b.error_message,
                "status": statuses.get(b.status, "UNKNOWN"),
            }
        }
        extra = {"Retry-After": b.retry_after} if b.retry_after is not None else {}
        self._send_json(b.status, payload, extra)

    def _send_json(
        self, status: int, payload: dict[str, Any], extra: dict[str, str] | None = None
    ) -> None:
        self._send_raw(status, json.dumps(payload).encode(), "application/json", extra)

    def _send_raw(
        self, status: int, data: bytes, ctype: str, extra: dict[str, str] | None = None
    ) -> None:
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        for k, v in (extra or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()


def _events(b: Behaviour, model: str) -> Iterator[dict[str, Any]]:
    """The SSE events of a streamed answer: one per chunk, finish + usage on the last."""
    if b.block_reason or b.no_candidates or not b.chunks:
        yield _response_json(b, model, None, finish=True, usage=True)
        return
    last = len(b.chunks) - 1
    for i, text in enumerate(b.chunks):
        yield _response_json(b, model, text, finish=i == last, usage=i == last)
