"""Both HTTP functions on one local port, for `ion serve` and the benchmarks."""

from __future__ import annotations

from flask import Flask, Response, request

from ion.http import chat_api, route_api
from ion.http.api import dispatch

_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS", "HEAD"]

# /health and /ready exist in both functions; the chat function's copies serve them here.
ROUTES = chat_api.ROUTES + tuple(
    r for r in route_api.ROUTES if r.pattern.pattern not in {"^/health$", "^/ready$"}
)


def create_local_app() -> Flask:
    app = Flask("ion-local")

    @app.route("/", defaults={"path": ""}, methods=_METHODS)
    @app.route("/<path:path>", methods=_METHODS)
    def everything(path: str) -> Response:
        return dispatch(ROUTES, request)

    return app
