"""A tiny fake of the Firestore Admin REST API: exportDocuments and operations.get.

The Firestore emulator has no managed export, so the OFFICIAL FirestoreAdminClient (REST
transport, anonymous credentials) is exercised against this stdlib server instead. It
records each export request and lets a test decide how each operation ends.
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote

_EXPORT = re.compile(r"^/v1/(projects/[^/]+/databases/[^/:]+):exportDocuments$")
_OPERATION = re.compile(r"^/v1/(projects/[^/]+/databases/[^/]+/operations/[^/]+)$")


class FakeFirestoreAdmin:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.exports: list[dict[str, Any]] = []  # {"database", "body"}
        self.operations: dict[str, dict[str, Any]] = {}  # name -> Operation JSON
        self._server: ThreadingHTTPServer | None = None

    def finish(self, name: str, *, error: tuple[int, str] | None = None) -> None:
        with self._lock:
            operation = self.operations[name]
            operation["done"] = True
            if error is not None:
                operation["error"] = {"code": error[0], "message": error[1]}

    @property
    def endpoint(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> FakeFirestoreAdmin:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def _send(self, status: int, body: dict[str, Any]) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:
                path = unquote(self.path.split("?", 1)[0])
                match = _EXPORT.match(path)
                if match is None:
                    self._send(404, {"error": {"code": 404, "message": path}})
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                with fake._lock:
                    name = f"{match.group(1)}/operations/export-{len(fake.exports) + 1}"
                    fake.exports.append({"database": match.group(1), "body": body})
                    fake.operations[name] = {"name": name, "done": False}
                    response = dict(fake.operations[name])
                self._send(200, response)

            def do_GET(self) -> None:
                path = unquote(self.path.split("?", 1)[0])
                match = _OPERATION.match(path)
                with fake._lock:
                    operation = fake.operations.get(match.group(1)) if match else None
                    response = None if operation is None else dict(operation)
                if response is None:
                    self._send(404, {"error": {"code": 404, "message": "no such operation"}})
                else:
                    self._send(200, response)

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
