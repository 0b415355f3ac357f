"""Log lines in Cloud Logging's structured format: one JSON object per line on stdout,
which Cloud Run (Cloud Functions gen2) turns into a LogEntry.

Every line carries `severity`, `logging.googleapis.com/sourceLocation` (file, line,
function), `logging.googleapis.com/labels` (`python_logger`), and while a request is
served `logging.googleapis.com/trace` (`projects/<project>/traces/<id>`),
`logging.googleapis.com/spanId` and `trace_sampled` from the request's trace header, plus
our `request_id`: Logs Explorer's "show entries for this trace" finds every line of one
request. The request line (ion.entrypoints.http) adds `httpRequest`. Lines at ERROR and
above are Error Reporting events (`@type` ReportedErrorEvent with `serviceContext` and
`context.reportLocation`; an exception's traceback follows the message, where Error
Reporting reads it to group).

The shape is google-cloud-logging's `StructuredLogHandler`'s, written here in one pass:
that handler's filter looks up the Flask request on every line to guess a trace and an
`httpRequest` we always set ourselves, which cost more than the rest of the line. The
redaction filter runs first, before anything is read from the record.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import IO, Any

from ion.adapters.logging import FIELDS, RedactingFilter, trace_context

ERROR_EVENT_TYPE = (
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)

# Fields the LogEntry takes from the top level of the line; a payload never sets them.
# https://cloud.google.com/logging/docs/structured-logging
RESERVED = frozenset(
    {
        "severity",
        "httpRequest",
        "time",
        "timestamp",
        "timestampSeconds",
        "timestampNanos",
        "logging.googleapis.com/insertId",
        "logging.googleapis.com/labels",
        "logging.googleapis.com/operation",
        "logging.googleapis.com/sourceLocation",
        "logging.googleapis.com/spanId",
        "logging.googleapis.com/trace",
        "logging.googleapis.com/trace_sampled",
    }
)


class _Encoder(json.JSONEncoder):
    """Extras that are not JSON types (a datetime...) are written as text, never lost."""

    def default(self, o: Any) -> Any:
        return str(o)


class StructuredHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """Cloud Logging's structured JSON lines, behind our redaction filter."""

    def __init__(self, *, stream: IO[str], project: str | None) -> None:
        super().__init__(stream)
        self._project = project
        # Cloud Run's names for the service and revision: Error Reporting groups by them.
        service_context = {"service": os.environ.get("K_SERVICE", "ion")}
        if os.environ.get("K_REVISION"):
            service_context["version"] = os.environ["K_REVISION"]
        self._service_context = service_context
        self._encoder = _Encoder(ensure_ascii=False)
        self.addFilter(RedactingFilter())
        # The message, then the (redacted) traceback: the shape Error Reporting parses.
        self.setFormatter(logging.Formatter("%(message)s"))

    def format(self, record: logging.LogRecord) -> str:
        return self._encoder.encode(self.entry(record))

    def entry(self, record: logging.LogRecord) -> dict[str, Any]:
        """The line as a mapping: the payload (jsonPayload), then the LogEntry's fields."""
        context = trace_context()
        entry = self._payload(record, context.request_id if context is not None else None)
        trace_id = context.trace_id if context is not None else None
        if trace_id is not None and self._project:
            trace_id = f"projects/{self._project}/traces/{trace_id}"
        http_request = record.__dict__.get("http_request")
        entry["severity"] = record.levelname
        entry["logging.googleapis.com/labels"] = {"python_logger": record.name}
        entry["logging.googleapis.com/trace"] = trace_id or ""
        entry["logging.googleapis.com/spanId"] = (context.span_id if context else None) or ""
        entry["logging.googleapis.com/trace_sampled"] = bool(context and context.sampled)
        entry["logging.googleapis.com/sourceLocation"] = {
            "line": record.lineno,
            "file": record.pathname,
            "function": record.funcName,
        }
        entry["httpRequest"] = http_request if isinstance(http_request, dict) else {}
        return entry

    def _payload(self, record: logging.LogRecord, request_id: str | None) -> dict[str, Any]:
        fields: dict[str, Any] = {
            name: record.__dict__[name] for name in FIELDS if record.__dict__.get(name) is not None
        }
        if request_id is not None:
            fields.setdefault("request_id", request_id)
        if record.levelno >= logging.ERROR:
            fields["@type"] = ERROR_EVENT_TYPE
            fields["serviceContext"] = self._service_context
            fields["context"] = {
                "reportLocation": {
                    "filePath": record.pathname,
                    "lineNumber": record.lineno,
                    "functionName": record.funcName,
                }
            }
        if isinstance(record.msg, Mapping):
            payload: dict[str, Any] = {**record.msg, **fields}
        else:
            message = super().format(record)
            parsed = _json_object(message)
            if parsed is not None:
                payload = {**parsed, **fields}
            else:
                payload = fields
                if message != "None":
                    payload["message"] = message
        for key in RESERVED.intersection(payload):
            del payload[key]
        return payload


def _json_object(message: str) -> dict[str, Any] | None:
    """A message that is itself a JSON object becomes the payload, as Cloud Logging's
    own handler does."""
    if not message.startswith("{"):
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None
