"""How `ion serve` serves the web app (files, config.json with dev tokens, headers) and
what the files may contain: no inline script, nothing from a CDN."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from ion.bootstrap import App
from ion.entrypoints.cli.serve import is_loopback
from ion.entrypoints.http.local import create_local_app
from ion.entrypoints.http.web import PAGE_CSP
from tests.support.paths import REPO

WEB = REPO / "web"


@pytest.fixture
def local(app: App) -> FlaskClient:
    return create_local_app(web_dir=WEB, dev_user="learner").test_client()


def test_pages_are_served_with_a_strict_csp(local: FlaskClient) -> None:
    for path, kind in [
        ("/", "text/html"),
        ("/operator", "text/html"),
        ("/chat.js", "text/javascript"),
        ("/style.css", "text/css"),
    ]:
        response = local.get(path)
        assert response.status_code == 200, path
        assert response.mimetype == kind
        assert response.headers["Content-Security-Policy"] == PAGE_CSP
        assert response.headers["X-Frame-Options"] == "DENY"
        assert response.headers["X-Content-Type-Options"] == "nosniff"
    assert b'<script type="module" src="chat.js">' in local.get("/").data
    assert b'<script type="module" src="operator.js">' in local.get("/operator").data


def test_only_the_web_files_are_served(local: FlaskClient) -> None:
    for path in ("/../pyproject.toml", "/web/index.html", "/.env", "/operator.html/x"):
        response = local.get(path)
        assert response.status_code == 404, path
        assert response.get_json()["error"]["code"] == "not_found"
    # Not a file the API answers for: a POST to / is the API's 404/405, not the page.
    assert local.post("/").status_code == 404


def test_config_hands_the_page_dev_tokens(app: App, local: FlaskClient) -> None:
    response = local.get("/config.json")
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store"
    config = response.get_json()
    assert config["api_base"] == ""
    assert config["page_size"] == app.settings.page_size
    auth = config["auth"]
    assert auth["mode"] == "dev"
    learner = app.verifier.principal(auth["token"])
    operator = app.verifier.principal(auth["operator_token"])
    assert (learner.user_id, learner.roles) == ("learner", frozenset())
    assert (operator.user_id, operator.roles) == ("learner", frozenset({"operator"}))


def test_without_a_dev_user_the_page_gets_no_token(app: App) -> None:
    client = create_local_app(web_dir=WEB).test_client()
    assert client.get("/config.json").get_json()["auth"] == {"mode": "none"}


def test_dev_tokens_only_on_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.4")


def test_the_page_may_call_its_own_origin_only(local: FlaskClient, auth: dict[str, str]) -> None:
    same = local.get("/v1/personas", headers={**auth, "Origin": "http://localhost"})
    assert same.status_code == 200
    assert "Access-Control-Allow-Origin" not in same.headers
    other = local.get("/v1/personas", headers={**auth, "Origin": "https://evil.example"})
    assert other.status_code == 403
    assert other.get_json()["error"]["code"] == "origin_not_allowed"


def _web_files(*suffixes: str) -> list[Path]:
    return sorted(p for p in WEB.iterdir() if p.suffix in suffixes)


def test_no_inline_script_or_style_and_no_cdn() -> None:
    for page in _web_files(".html"):
        html = page.read_text(encoding="utf-8")
        scripts = re.findall(r"<script\b[^>]*>", html)
        assert scripts and all(" src=" in tag for tag in scripts), page.name
        assert not re.search(r"<script\b[^>]*>\s*[^<\s]", html), page.name  # no inline body
        assert not re.search(r"\son[a-z]+\s*=", html), page.name  # no inline handlers
        assert " style=" not in html, page.name
        assert not re.search(r"(src|href)=\"(https?:)?//", html), page.name
    for script in _web_files(".js"):
        source = script.read_text(encoding="utf-8")
        assert not re.search(r"from\s+[\"']https?:", source), script.name
        assert "innerHTML" not in source, script.name  # text only: no HTML injection
        assert "eval(" not in source and "new Function" not in source, script.name
