"""Logging that never leaks: redaction filter, JSON lines for Cloud Logging, one setup call.

The code itself never logs message text, tokens, secrets or raw user ids (a test holds it
to that); users appear only as `user_hash` (`ion.domain.events.hash_user_id`). `RedactingFilter`
is the second line of defence for what third-party libraries might log (werkzeug's access
log under `ion serve` included): it scrubs JWTs, bearer tokens, API keys and credentials
in query strings, escapes control characters (a `%00` or `%0a` in a path can neither cut
nor forge a line), and turns a `user_id` extra into `user_hash`.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from typing import IO, Any

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

# Extras copied into JSON lines when a record carries them.
_FIELDS = (
    "request_id",
    "method",
    "path",
    "status",
    "latency_ms",
    "user_hash",
    "bucket",
    "limit",
    "code",
)
_SEVERITY = {"WARNING": "WARNING", "CRITICAL": "CRITICAL", "ERROR": "ERROR", "INFO": "INFO"}


# C0 controls (tab and, in tracebacks, newline excepted), DEL and C1 controls.
_CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f-\x9f]")
_CONTROL_KEEP_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def redact(text: str) -> str:
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
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if isinstance(value, str):
                record.__dict__[name] = clean(value)
        user_id = record.__dict__.pop("user_id", None)
        if isinstance(user_id, str):
            record.user_hash = hash_user_id(user_id)
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line, in the shape Cloud Logging reads from stdout/stderr."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "severity": _SEVERITY.get(record.levelname, "DEBUG"),
            "message": record.getMessage(),
            "logger": record.name,
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
        }
        for name in _FIELDS:
            value = record.__dict__.get(name)
            if value is not None:
                entry[name] = value
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            entry["message"] += "\n" + record.exc_text
        return json.dumps(entry, ensure_ascii=False, default=str)


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
    "json": JsonFormatter,
    "terminal": lambda: OneLineFormatter(_TEXT_FORMAT),
}


def make_handler(fmt: str = "text", stream: IO[str] | None = None) -> logging.Handler:
    """A stderr handler that redacts; `fmt` is "text", "json" (Cloud Logging) or
    "terminal" (text with exceptions on one line)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.addFilter(RedactingFilter())
    handler.setFormatter(_FORMATTERS[fmt]())
    handler._ion_handler = True  # type: ignore[attr-defined]
    return handler


def configure_logging(
    level: str = "INFO", fmt: str = "text", *, root_level: str | None = None
) -> None:
    """Install the redacting handler on the root logger (once); set the `ion` log level.

    When something else already configured the root logger, its handlers get the
    redaction filter instead of a second handler. `root_level` quiets (or opens up)
    third-party libraries too; by default they log from INFO.
    """
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(make_handler(fmt))
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
