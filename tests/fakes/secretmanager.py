"""A tiny fake of Secret Manager's REST API, enough for `access_secret_version`.

Runs a stdlib ThreadingHTTPServer on a free loopback port so the OFFICIAL client (REST
transport) can be exercised end to end without Google or mocks of the SDK.
"""

from __future__ import annotations

import base64
import json
import re
import threading
from collections import Counter
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ion.adapters.secrets import crc32c

_ACCESS = re.compile(r"^/v1/projects/([^/]+)/secrets/([^/]+)/versions/([^/:]+):access$")


class FakeSecretManager:
    """Secrets live in `(project, secret_id) -> {version: value}`; versions count from 1."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[tuple[str, str], dict[int, bytes]] = {}
        self._forbidden: set[tuple[str, str]] = set()
        self._disabled: set[tuple[str, str, int]] = set()
        self._fail_status: int | None = None
        self._corrupt = False
        self.requests: Counter[str] = Counter()  # request path -> count
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- setup ----------------------------------------------------------------------------

    def add_version(self, project: str, secret_id: str, value: str | bytes) -> int:
        """Add a new version (becomes `latest`); returns its number."""
        data = value.encode() if isinstance(value, str) else value
        with self._lock:
            versions = self._secrets.setdefault((project, secret_id), {})
            number = max(versions, default=0) + 1
            versions[number] = data
            return number

    def forbid(self, project: str, secret_id: str) -> None:
        with self._lock:
            self._forbidden.add((project, secret_id))

    def disable(self, project: str, secret_id: str, version: int) -> None:
        with self._lock:
            self._disabled.add((project, secret_id, version))

    def fail_with(self, status: int | None) -> None:
        """Answer every request with this HTTP status (None restores normal behaviour)."""
        with self._lock:
            self._fail_status = status

    def corrupt_checksums(self, corrupt: bool = True) -> None:
        with self._lock:
            self._corrupt = corrupt

    def reset(self) -> None:
        """Forget all secrets, flags and request counts (the server keeps running)."""
        with self._lock:
            self._secrets.clear()
            self._forbidden.clear()
            self._disabled.clear()
            self._fail_status = None
            self._corrupt = False
            self.requests.clear()

    @property
    def request_count(self) -> int:
        return sum(self.requests.values())

    # --- server ---------------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        assert self._server is not None, "not started"
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FakeSecretManager:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                status, body = fake._handle(self.path.split("?", 1)[0])
                raw = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=UTF-8")
                self.send_header("Content-Length", str(len(raw)))
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:  # keep test output clean
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeSecretManager:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- API ------------------------------------------------------------------------------

    def _handle(self, path: str) -> tuple[int, dict[str, Any]]:
        with self._lock:
            self.requests[path] += 1
            if self._fail_status is not None:
                return _error(self._fail_status, "injected failure")
            match = _ACCESS.match(path)
            if match is None:
                return _error(404, f"no such method: {path}")
            project, secret_id, version = match.groups()
            key = (project, secret_id)
            versions = self._secrets.get(key)
            if key in self._forbidden:
                return _error(
                    403,
                    f"Permission 'secretmanager.versions.access' denied for resource "
                    f"'projects/{project}/secrets/{secret_id}/versions/{version}' "
                    "(or it may not exist).",
                )
            if versions is None:
                return _error(404, f"Secret [projects/{project}/secrets/{secret_id}] not found.")
            if version == "latest":
                enabled = [n for n in versions if (project, secret_id, n) not in self._disabled]
                number = max(enabled, default=0)
            else:
                number = int(version) if version.isdigit() else 0
            name = f"projects/{project}/secrets/{secret_id}/versions/{number or version}"
            if number not in versions:
                return _error(404, f"Secret Version [{name}] not found.")
            if (project, secret_id, number) in self._disabled:
                return _error(400, f"Secret Version [{name}] is in DISABLED state.")
            data = versions[number]
            checksum = crc32c(data) ^ (1 if self._corrupt else 0)
            return 200, {
                "name": name,
                "payload": {
                    "data": base64.b64encode(data).decode(),
                    "dataCrc32c": str(checksum),  # int64 travels as a JSON string
                },
            }


_STATUS = {
    400: "FAILED_PRECONDITION",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error(status: int, message: str) -> tuple[int, dict[str, Any]]:
    """A Google-style JSON error body, as the REST client parses it."""
    return status, {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS.get(status, HTTPStatus(status).phrase.upper().replace(" ", "_")),
        }
    }
