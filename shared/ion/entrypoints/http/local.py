"""Both HTTP functions on one local port, for `ion serve` and the benchmarks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Flask, Response, request
from werkzeug.routing import Rule
from werkzeug.serving import WSGIRequestHandler

from ion.bootstrap import get_app
from ion.entrypoints.http import chat_api, route_api
from ion.entrypoints.http.api import dispatch, install_json_errors
from ion.entrypoints.http.raw_errors import raw_error
from ion.entrypoints.http.web import WebPages, default_web_dir

__all__ = ["ROUTES", "JsonErrorRequestHandler", "create_local_app", "default_web_dir"]

# /health and /ready exist in both functions; the chat function's copies serve them here.
ROUTES = chat_api.ROUTES + tuple(
    r for r in route_api.ROUTES if r.pattern.pattern not in {"^/health$", "^/ready$"}
)


def create_local_app(*, web_dir: Path | None = None, dev_user: str | None = None) -> Flask:
    """Like functions-framework's app: every method on every path goes to `dispatch`
    (so TRACE, PROPFIND... get our 405), and what Flask answers by itself is JSON too.

    With `web_dir`, GET of the web app's files (`/`, `/operator`, `/app.js`...) answers them
    first; with `dev_user` its config.json hands the page that user's dev tokens (a
    learner's and an operator's; `ion serve` does so on a loopback address only)."""
    app = Flask("ion-local")
    pages = None if web_dir is None else WebPages(web_dir, load_app=get_app, dev_user=dev_user)

    def everything(path: str = "") -> Response:
        if pages is not None:
            page = pages.answer(request)
            if page is not None:
                return page
        return dispatch(ROUTES, request, get_app)

    # Rules without `methods` match every method (Flask's route() would default to GET).
    app.url_map.add(Rule("/", defaults={"path": ""}, endpoint="everything"))
    app.url_map.add(Rule("/<path:path>", endpoint="everything"))
    app.view_functions["everything"] = everything
    install_json_errors(app)
    return app


class JsonErrorRequestHandler(WSGIRequestHandler):
    """werkzeug's development server handler; the errors it answers itself (a request
    line or header line over its limits: 414, 431; a malformed request: 400) carry the
    JSON envelope and the security headers instead of an HTML page."""

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        headers, body = raw_error(code)
        self.log_error("code %d, message %s", code, message)
        self.send_response(code, message)
        self.send_header("Connection", "close")
        for name, value in headers:
            self.send_header(name, value)
        self.end_headers()
        self.close_connection = True
        command: Any = getattr(self, "command", None)
        if command != "HEAD" and code >= 200 and code not in (204, 304):
            self.wfile.write(body)
