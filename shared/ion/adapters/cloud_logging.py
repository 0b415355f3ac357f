"""Log lines in Cloud Logging's structured format, written by google-cloud-logging's
`StructuredLogHandler`: one JSON object per line on stdout, which Cloud Run (Cloud
Functions gen2) turns into a LogEntry.

Every line carries `severity`, `logging.googleapis.com/sourceLocation` (file, line,
function), and while a request is served `logging.googleapis.com/trace`
(`projects/<project>/traces/<id>`), `logging.googleapis.com/spanId` and `trace_sampled`
from the request's trace header, plus our `request_id`: Logs Explorer's "show entries for
this trace" finds every line of one request. The request line (ion.entrypoints.http)
adds `httpRequest`. Lines at ERROR and above are Error Reporting events
(`@type` ReportedErrorEvent with `serviceContext` and `context.reportLocation`; an
exception's traceback follows the message, where Error Reporting reads it to group).

The redaction filter runs first, before the library reads anything from the record; the
library's own guesses from the Flask request (its URL, query string included) are never
used: each line gets exactly the trace and `httpRequest` set here.
"""

from __future__ import annotations

import json
import logging
import os
from typing import IO, Any

from google.cloud.logging_v2.handlers import StructuredLogHandler

from ion.adapters.logging import FIELDS, RedactingFilter, trace_context

# The logger google-cloud-logging writes its diagnostic entry with.
_DIAGNOSTIC = "google.cloud.logging_v2.handlers.structured_log"
ERROR_EVENT_TYPE = (
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)


class _Encoder(json.JSONEncoder):
    """Extras that are not JSON types (a datetime...) are written as text, never lost."""

    def default(self, o: Any) -> Any:
        return str(o)


class CloudFields(logging.Filter):
    """Set what the library's filter and format read: trace, span, httpRequest, and the
    jsonPayload fields (our extras, the Error Reporting shape)."""

    def __init__(self, project: str | None) -> None:
        super().__init__()
        self._project = project
        # Cloud Run's names for the service and revision: Error Reporting groups by them.
        service_context = {"service": os.environ.get("K_SERVICE", "ion")}
        if os.environ.get("K_REVISION"):
            service_context["version"] = os.environ["K_REVISION"]
        self._service_context = service_context

    def filter(self, record: logging.LogRecord) -> bool:
        context = trace_context()
        trace_id = context.trace_id if context is not None else None
        if trace_id is not None and self._project:
            record.trace = f"projects/{self._project}/traces/{trace_id}"
        else:
            record.trace = trace_id
        record.span_id = context.span_id if context is not None else None
        record.trace_sampled = bool(context and context.sampled)
        http_request = record.__dict__.get("http_request")
        record.http_request = http_request if isinstance(http_request, dict) else None

        fields: dict[str, Any] = {
            name: record.__dict__[name] for name in FIELDS if record.__dict__.get(name) is not None
        }
        if context is not None and context.request_id is not None:
            fields.setdefault("request_id", context.request_id)
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
        record.json_fields = fields
        return True


class StructuredHandler(StructuredLogHandler):
    """google-cloud-logging's structured handler behind our redaction filter."""

    def __init__(self, *, stream: IO[str], project: str | None) -> None:
        super().__init__(  # type: ignore[no-untyped-call]
            stream=stream, project_id=project, json_encoder_cls=_Encoder
        )
        # Ours before the library's filter (added by its constructor), which reads the
        # trace and httpRequest we set and would otherwise guess them from the request.
        self.filters[:0] = [RedactingFilter(), CloudFields(project)]
        # The message, then the (redacted) traceback: the shape Error Reporting parses.
        self.setFormatter(logging.Formatter("%(message)s"))

    def emit_instrumentation_info(self) -> None:
        # The library logs its one-off diagnostic entry through a logger it gives this
        # handler, which also propagates to the root, where this handler is: written twice.
        logging.getLogger(_DIAGNOSTIC).propagate = False
        super().emit_instrumentation_info()  # type: ignore[no-untyped-call]
