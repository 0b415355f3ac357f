"""The one log line per answered request: `METHOD path -> status in N ms`, with the request
id, status, error code, latency, the user's hash and Cloud Logging's `httpRequest`.

The SLO metrics (terraform/slo.tf) count these lines by `status` and `code`; the
structured handler (ion.adapters.cloud_logging) lifts `httpRequest` into the LogEntry.
Nothing of the body is logged; the URL is redacted and escaped like every other field.
"""

from __future__ import annotations

import json
import logging
from typing import Any

from flask import Request, Response

from ion.adapters.logging import clean
from ion.domain.events import hash_user_id

log = logging.getLogger("ion.http")


def log_request(
    request: Request,
    response: Response,
    *,
    request_id: str,
    latency_s: float,
    user_id: str | None = None,
    note: str = "",
) -> None:
    """Log the answered request (INFO; the failure itself, if any, was logged where it
    happened). A streamed answer's latency is the time to its first byte."""
    latency_ms = round(latency_s * 1000, 1)
    # The decoded path may hold anything (%00, %0a, a token): escaped and redacted here as
    # well as by the logging filter, so no handler setup can let it through raw.
    method, path = clean(request.method), clean(request.path)
    log.info(
        "%s %s -> %s in %.1f ms%s",
        method,
        path,
        response.status_code,
        latency_ms,
        note,
        extra={
            "request_id": request_id,
            "method": method,
            "path": path,
            "status": response.status_code,
            "code": error_code(response),
            "latency_ms": latency_ms,
            "user_hash": hash_user_id(user_id) if user_id else None,
            "http_request": http_request(request, response, latency_s),
        },
    )


def http_request(request: Request, response: Response, latency_s: float) -> dict[str, Any]:
    """Cloud Logging's HttpRequest (sizes are int64, written as strings in JSON)."""
    entry: dict[str, Any] = {
        "requestMethod": clean(request.method),
        "requestUrl": clean(request_url(request)),
        "status": response.status_code,
        "latency": f"{latency_s:.6f}s",
        "userAgent": clean(request.headers.get("User-Agent", "")),
        "remoteIp": client_ip(request),
        "protocol": clean(str(request.environ.get("SERVER_PROTOCOL", ""))),
    }
    if request.content_length is not None:
        entry["requestSize"] = str(request.content_length)
    size = None if response.is_streamed else response.calculate_content_length()
    if size is not None:
        entry["responseSize"] = str(size)
    return entry


def request_url(request: Request) -> str:
    """The requested URL. Without a query it is put together from the request's parts:
    werkzeug's `request.url` quotes and decodes it again, a cost on every request. A query
    is left to werkzeug, whose decoding is what the redaction of secrets in it reads."""
    if request.environ.get("QUERY_STRING"):
        return request.url
    return f"{request.scheme}://{request.host}{request.root_path}{request.path}"


def client_ip(request: Request) -> str:
    """The caller's address. Google's load balancer appends `<client>,<load balancer>` to
    X-Forwarded-For (after whatever the client sent, which proves nothing), so the client
    is the second entry from the end; without a proxy, the socket's peer."""
    forwarded = [part.strip() for part in request.headers.get("X-Forwarded-For", "").split(",")]
    forwarded = [part for part in forwarded if part]
    if len(forwarded) >= 2:
        return clean(forwarded[-2])
    if forwarded:
        return clean(forwarded[0])
    return clean(request.remote_addr or "")


def error_code(response: Response) -> str | None:
    """The `error.code` of a JSON error answer (what the client read); None otherwise."""
    if (
        response.status_code < 400
        or response.is_streamed
        or response.mimetype != "application/json"
    ):
        return None
    try:
        body = json.loads(response.get_data())
    except ValueError:
        return None
    error = body.get("error") if isinstance(body, dict) else None
    code = error.get("code") if isinstance(error, dict) else None
    return code if isinstance(code, str) else None
