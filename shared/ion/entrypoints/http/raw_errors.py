"""The JSON error envelope for answers the web server gives before our code runs.

A request line or a header the server cannot parse (e.g. a header over gunicorn's 8 KB
field limit, answered 431), a path no URL rule matches (a newline in it), or a method the
server does not route would otherwise get the server's own HTML page without the
security headers. Everything here builds the same `{"error": {"code", "message"},
"request_id"}` body with the same headers as `ion.entrypoints.http.api`; it is stdlib-only so the WSGI
servers' hooks can use it without importing Flask.
"""

from __future__ import annotations

import json
import uuid
from http import HTTPStatus

# Same values as ion.entrypoints.http.api.SECURITY_HEADERS (a test keeps them equal).
SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Content-Security-Policy": "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Cache-Control": "no-store",
}

_CODES = {
    400: "bad_request",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    500: "internal",
}


def error_code(status: int) -> str:
    if status in _CODES:
        return _CODES[status]
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        return "http_error"
    return phrase.lower().replace(" ", "_").replace("-", "_")


def error_message(status: int) -> str:
    try:
        described = HTTPStatus(status)
    except ValueError:
        return "the request could not be served"
    return f"{described.phrase}: {described.description[:1].lower()}{described.description[1:]}"


def raw_error(status: int, request_id: str | None = None) -> tuple[list[tuple[str, str]], bytes]:
    """(headers, body) of the JSON error envelope for `status`."""
    request_id = request_id or uuid.uuid4().hex
    body = json.dumps(
        {
            "error": {"code": error_code(status), "message": error_message(status)},
            "request_id": request_id,
        }
    ).encode("utf-8")
    headers = [
        ("Content-Type", "application/json"),
        ("Content-Length", str(len(body))),
        ("X-Request-Id", request_id),
        *SECURITY_HEADERS.items(),
    ]
    return headers, body


def install_gunicorn_error_pages() -> None:
    """Make gunicorn (functions-framework's server) answer its own errors with the JSON
    envelope instead of its HTML page. gunicorn calls `gunicorn.util.write_error` for
    every request it rejects before the app runs; replacing it is the only hook it has."""
    try:
        from gunicorn import util
    except ImportError:  # not on this platform / not installed: nothing to replace
        return
    if getattr(util.write_error, "ion_json", False):
        return

    def write_error(sock: object, status_int: int, reason: str, mesg: str) -> None:
        headers, body = raw_error(int(status_int))
        head = f"HTTP/1.1 {int(status_int)} {reason}\r\nConnection: close\r\n"
        head += "".join(f"{name}: {value}\r\n" for name, value in headers) + "\r\n"
        util.write_nonblock(sock, head.encode("latin-1") + body)

    write_error.ion_json = True  # type: ignore[attr-defined]
    util.write_error = write_error
