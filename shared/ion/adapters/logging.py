"""Logging that never leaks: redaction filter, text lines for a terminal, Cloud Logging's
structured JSON when deployed (`ion.adapters.cloud_logging`), one setup call.

The code itself never logs message text, tokens, secrets or raw user ids (a test holds it
to that); users appear only as `user_hash` (`ion.domain.events.hash_user_id`). `RedactingFilter`
is the second line of defence for what third-party libraries might log (werkzeug's access
log under `ion serve` included): it scrubs JWTs, bearer tokens, API keys and credentials
in query strings, escapes control characters (a `%00` or `%0a` in a path can neither cut
nor forge a line), and turns a `user_id` extra into `user_hash`.

`trace_context()` is the trace of the HTTP request being served (W3C `traceparent`, else
Google's `X-Cloud-Trace-Context`), read once per request; the structured handler writes
it on every line logged while the request is served, streamed answers included.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import IO

import flask

from ion.domain.events import hash_user_id

_SECRET_PATTERNS = (
    # A JWT (header.payload.signature, base64url; headers start with '{"' = eyJ).
    (re.compile(r"eyJ[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]{4,}\.[A-Za-z0-9_-]*"), "[redacted-jwt]"),
    (re.compile(r"(?i)\b(bearer|basic)\s+[A-Za-z0-9._~+/=-]+"), r"\1 [redacted]"),
    # Credentials in URL query strings (?key=..., &access_token=..., ?id_token=...,
    # ?client_secret=..., ?password=..., ?sig=...) and Google API keys anywhere.
    (
        re.compile(
            r"(?i)([?&;][A-Za-z0-9_.-]*(?:key|token|secret|pass(?:word|wd)?|pwd|auth"
            r"|credential|sig(?:nature)?|jwt|session)[A-Za-z0-9_.-]*=)[^&;\s\"']+"
        ),
        r"\1[redacted]",
    ),
    (re.compile(r"AIza[0-9A-Za-z_-]{30,}"), "[redacted-api-key]"),
)

# Extras copied into JSON lines (jsonPayload) when a record carries them. The log-based
# metrics read some: status and code (the SLOs), time_to_meta_ms (the latency SLO).
FIELDS = (
    "request_id",
    "method",
    "path",
    "status",
    "code",
    "latency_ms",
    "time_to_meta_ms",
    "stream_ms",
    "user_hash",
    "bucket",
    "limit",
    "error_code",
)


# C0 controls (tab and, in tracebacks, newline excepted), DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


# What every secret pattern above needs somewhere in the text: most lines have none of it,
# and one search is cheaper than four substitutions.
_MAYBE_SECRET = re.compile(r"(?i)eyj|bearer|basic|[?&;]|aiza")


def redact(text: str) -> str:
    if _MAYBE_SECRET.search(text) is None:
        return text
    for pattern, replacement in _SECRET_PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def escape_controls(text: str, *, keep_newlines: bool = False) -> str:
    """Control characters as visible `\\xNN` escapes: a logged path with `%00`, `%0a` or
    an ANSI escape can neither cut a log line, forge another one nor drive a terminal."""
    pattern = _CONTROL_KEEP_NEWLINE if keep_newlines else _CONTROL
    return pattern.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


def clean(text: str) -> str:
    """What may be written to a log line: secrets redacted, control characters escaped."""
    return escape_controls(redact(text))


class RedactingFilter(logging.Filter):
    """Scrub secrets and control characters from the rendered message, the traceback and
    the string extras (path, method...); hash a `user_id` extra."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            rendered = record.getMessage()
        except (TypeError, ValueError):
            rendered = str(record.msg)
        scrubbed = clean(rendered)
        if scrubbed != rendered or record.args:
            record.msg, record.args = scrubbed, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = escape_controls(redact(record.exc_text), keep_newlines=True)
        for name in FIELDS:
            value = record.__dict__.get(name)
            if isinstance(value, str):
                record.__dict__[name] = clean(value)
        http_request = record.__dict__.get("http_request")
        if isinstance(http_request, Mapping):
            record.http_request = {
                key: clean(value) if isinstance(value, str) else value
                for key, value in http_request.items()
            }
        user_id = record.__dict__.pop("user_id", None)
        if isinstance(user_id, str):
            record.user_hash = hash_user_id(user_id)
        return True


_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


class OneLineFormatter(logging.Formatter):
    """Log lines for a terminal: an exception is summarised on its line, no traceback
    (ION_LOG_LEVEL=DEBUG shows them)."""

    def format(self, record: logging.LogRecord) -> str:
        exc_info, exc_text = record.exc_info, record.exc_text
        record.exc_info = record.exc_text = None
        try:
            text = super().format(record)
        finally:
            record.exc_info, record.exc_text = exc_info, exc_text
        if exc_info and exc_info[1] is not None:
            text += f" ({one_line(exc_info[1])})"
        return text


def one_line(exc: BaseException, limit: int = 300) -> str:
    """`Type: message` on one line, at most `limit` characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= limit else text[: limit - 1] + "…"


_FORMATTERS: dict[str, Callable[[], logging.Formatter]] = {
    "text": lambda: logging.Formatter(_TEXT_FORMAT),
    "terminal": lambda: OneLineFormatter(_TEXT_FORMAT),
}


def make_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stderr handler that redacts; `fmt` is "text" or "terminal" (text with exceptions
    on one line). Cloud Logging's JSON is `ion.adapters.cloud_logging.StructuredHandler`."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(_FORMATTERS[fmt]())
    handler._ion_handler = True  # type: ignore[attr-defined]
    return handler


def configure_logging(
    level: str = "INFO",
    fmt: str = "text",
    *,
    root_level: str | None = None,
    structured: Callable[[], logging.Handler] | None = None,
) -> None:
    """Install the redacting handler on the root logger (once); set the `ion` log level.

    Text: when something else already configured the root logger, its handlers get the
    redaction filter instead of a second handler. "json": the handler `structured` makes
    replaces the plain stdout/stderr handlers found there (functions-framework's), whose
    lines Cloud Logging could not parse. `root_level` quiets (or opens up) third-party
    libraries too; by default they log from INFO.
    """
    root = logging.getLogger()
    ours = any(getattr(h, "_ion_handler", False) for h in root.handlers)
    if fmt == "json" and not ours:
        if structured is None:
            raise ValueError("JSON logs need the structured handler")
        for handler in list(root.handlers):
            if type(handler) is logging.StreamHandler and handler.stream in (
                sys.stdout,
                sys.stderr,
            ):
                root.removeHandler(handler)
        added: logging.Handler | None = structured()
    elif not root.handlers:
        added = make_handler(fmt)
    else:
        added = None
    if added is not None:
        added._ion_handler = True  # type: ignore[attr-defined]
        root.addHandler(added)
        if root_level is None and root.level > logging.INFO:
            root.setLevel(logging.INFO)
    if root_level is not None:
        root.setLevel(root_level.upper())
    install_redaction()
    logging.getLogger("ion").setLevel(level.upper())


def install_redaction() -> None:
    """Add the redaction filter to every handler configured so far, the root's and those of
    libraries that bring their own (werkzeug, gunicorn): every line written is scrubbed."""
    loggers: list[logging.Logger] = [logging.getLogger()]
    loggers += [
        logger
        for logger in logging.Logger.manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]
    for logger in loggers:
        for handler in logger.handlers:
            if not any(isinstance(f, RedactingFilter) for f in handler.filters):
                handler.addFilter(RedactingFilter())


# --- the trace of the request being served -------------------------------------------

_TRACEPARENT = re.compile(
    r"^(?!ff)[0-9a-f]{2}-(?!0{32})([0-9a-f]{32})-(?!0{16})([0-9a-f]{16})-([0-9a-f]{2})(?:-.*)?$"
)
_CLOUD_TRACE = re.compile(r"^(?!0{32})([0-9a-fA-F]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]+))?$")
_CONTEXT_KEY = "ion.trace_context"


@dataclass(frozen=True)
class TraceContext:
    """What ties a log line to its request: the trace and span the caller (the load
    balancer, Cloud Run, a client) sent, and our request id."""

    trace_id: str | None = None
    span_id: str | None = None
    sampled: bool = False
    request_id: str | None = None


def parse_trace(traceparent: str | None, cloud_trace: str | None) -> TraceContext:
    """W3C `traceparent` first, else `X-Cloud-Trace-Context` (TRACE_ID/SPAN_ID;o=1, the
    span id decimal). Anything malformed is ignored, so a caller cannot put arbitrary
    text into the trace field."""
    found = _TRACEPARENT.match((traceparent or "").strip())
    if found:
        return TraceContext(found[1], found[2], bool(int(found[3], 16) & 1))
    found = _CLOUD_TRACE.match((cloud_trace or "").strip())
    if found:
        span = int(found[2]) if found[2] else 0
        span_id = f"{span:016x}" if 0 < span < 2**64 else None
        return TraceContext(found[1].lower(), span_id, found[3] == "1")
    return TraceContext()


def bind_request(request_id: str) -> TraceContext:
    """Read the trace of the request being served (once) and attach our request id: every
    line logged while it is served (its stream too) carries both."""
    request = flask.request
    context = parse_trace(
        request.headers.get("traceparent"), request.headers.get("X-Cloud-Trace-Context")
    )
    context = TraceContext(context.trace_id, context.span_id, context.sampled, request_id)
    request.environ[_CONTEXT_KEY] = context
    return context


def trace_context() -> TraceContext | None:
    """The trace of the HTTP request being served; None outside a request."""
    if not flask.has_request_context():
        return None
    environ = flask.request.environ
    context = environ.get(_CONTEXT_KEY)
    if not isinstance(context, TraceContext):
        # A request that did not go through our dispatcher (a CloudEvent push).
        context = parse_trace(
            flask.request.headers.get("traceparent"),
            flask.request.headers.get("X-Cloud-Trace-Context"),
        )
        environ[_CONTEXT_KEY] = context
    return context
