"""The learner web chat and the operator page, served by `ion serve` at `/`.

Deployed, the same files live in a Cloud Storage bucket behind the load balancer
(terraform/web.tf) with the same Content Security Policy; there `config.json` is written by
Terraform. Locally `ion serve` writes `config.json` per request: the API is this server, and
(on a loopback address, in secret mode) the page gets fresh dev tokens, a learner's and an
operator's, so `make run` is a working chat with no sign-in step.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from flask import Request, Response

from ion.bootstrap import App

# Scripts and styles only from the page's own origin: no inline script, no CDN. The API is
# same-origin under `ion serve`; deployed, Terraform adds its origin (and the identity
# provider's) to connect-src.
PAGE_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:;"
    " connect-src 'self'; manifest-src 'self'; base-uri 'none'; form-action 'none';"
    " frame-ancestors 'none'"
)

CONTENT_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
    ".json": "application/json",
}
# Pretty paths of the two pages.
ALIASES = {"/": "index.html", "/operator": "operator.html"}


def default_web_dir() -> Path:
    """The repository's web/ folder (shared/ion/entrypoints/http/web.py → repo root)."""
    return Path(__file__).resolve().parents[4] / "web"


class WebPages:
    """Answers GET/HEAD for the web app's files; `None` for every other request."""

    def __init__(
        self,
        directory: Path,
        *,
        load_app: Callable[[], App],
        dev_user: str | None,
    ) -> None:
        self._dir = directory
        self._load_app = load_app
        self._dev_user = dev_user
        # Only the files present at start are served: a fixed allow-list, no path walking.
        self._files = (
            {
                f"/{p.name}": p
                for p in directory.iterdir()
                if p.is_file() and p.suffix in CONTENT_TYPES and p.name != "config.json"
            }
            if directory.is_dir()
            else {}
        )

    def answer(self, request: Request) -> Response | None:
        if request.method not in ("GET", "HEAD"):
            return None
        path = request.path
        if path == "/config.json":
            return self._config()
        name = ALIASES.get(path)
        found = self._files.get(f"/{name}" if name else path)
        if found is None:
            return None
        response = Response(found.read_bytes(), content_type=CONTENT_TYPES[found.suffix])
        return _page_headers(response)

    def _config(self) -> Response:
        app = self._load_app()
        config: dict[str, Any] = {"api_base": "", "page_size": app.settings.page_size}
        user = self._dev_user
        if user is not None and app.jwt_secret is not None:
            config["auth"] = {
                "mode": "dev",
                "token": app.dev_token(user),
                "operator_token": app.dev_token(user, operator=True),
            }
        else:
            config["auth"] = {"mode": "none"}
        response = Response(json.dumps(config), content_type="application/json")
        _page_headers(response)
        response.headers["Cache-Control"] = "no-store"  # holds tokens
        return response


def _page_headers(response: Response) -> Response:
    response.headers["Content-Security-Policy"] = PAGE_CSP
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["X-Frame-Options"] = "DENY"
    response.headers["Referrer-Policy"] = "no-referrer"
    return response
