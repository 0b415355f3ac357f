"""The deployed set-up in a real browser: the page on its own origin with the Content
Security Policy terraform/web.tf sets, the API on another origin allowing it through
ION_CORS_ORIGINS, learners signing in with Firebase Auth (its REST endpoints answered here,
as Firebase would) and the API verifying their ID tokens through a JWKS endpoint, the
operator role coming from a custom claim."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs

import pytest

from ion.bootstrap import build_app, set_app
from tests.fakes.jwks_server import Signer, serve_jwks
from tests.support.app import make_settings
from tests.support.browser import WEB, Tab, chromium, open_tab, playwright_api, serving
from tests.support.paths import REPO

playwright_api()  # fails collection, saying what to install, without the browser

PROJECT = "demo-ion"
ISSUER = f"https://securetoken.google.com/{PROJECT}"
API_KEY = "AIza-test-web-key"
PASSWORD = "correct horse battery staple"
SIGN_IN = "https://identitytoolkit.googleapis.com/v1/accounts:signInWithPassword"
REFRESH = "https://securetoken.googleapis.com/v1/token"


def deployed_csp(api_origin: str) -> str:
    """local.web_csp of terraform/web.tf with the API's origin filled in."""
    text = (REPO / "terraform" / "web.tf").read_text(encoding="utf-8")
    block = re.search(r"web_csp = join\(\" \", \[(.*?)\]\)", text, re.S)
    assert block, "terraform/web.tf: local.web_csp not found"
    parts = re.findall(r'"([^"]+)"', block.group(1))
    return " ".join(parts).replace("${local.api_origin}", api_origin)


@dataclass
class Deployment:
    web: str
    api: str
    signer: Signer
    operators: set[str] = field(default_factory=set)
    refreshes: list[dict[str, list[str]]] = field(default_factory=list)

    def id_token(self, user: str) -> str:
        claims: dict[str, Any] = {"iss": ISSUER, "aud": PROJECT}
        if user in self.operators:
            claims["ion_role"] = "operator"  # a Firebase custom claim
        return self.signer.token(sub=user.replace("@", "_at_"), lifetime_s=3600, **claims)


def static_site(pages: Any, *, csp: str, config: dict[str, Any]) -> Any:
    """What the bucket behind the load balancer answers (terraform/web.tf): the same files,
    Terraform's config.json, and the backend bucket's Content-Security-Policy."""

    def wsgi(environ: dict[str, Any], start_response: Any) -> Any:
        if environ["PATH_INFO"] == "/config.json":
            start_response("200 OK", [("Content-Type", "application/json")])
            return [json.dumps(config).encode()]

        def start(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            kept = [(k, v) for k, v in headers if k.lower() != "content-security-policy"]
            return start_response(status, [*kept, ("Content-Security-Policy", csp)], exc_info)

        return pages(environ, start)

    return wsgi


@pytest.fixture(scope="module")
def deployment(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    from ion.entrypoints.http.local import create_local_app

    signer = Signer.rsa("firebase-key-1")
    data = tmp_path_factory.mktemp("signin") / "data"
    with (
        pytest.MonkeyPatch.context() as patch,
        serve_jwks(signer) as jwks,
        serving(create_local_app()) as api,
    ):
        config = {"api_base": api, "auth": {"mode": "firebase", "api_key": API_KEY}}
        site = static_site(create_local_app(web_dir=WEB), csp=deployed_csp(api), config=config)
        with serving(site) as web:
            for name in list(os.environ):
                if name.startswith("ION_"):
                    patch.delenv(name)
            settings = make_settings(
                data,
                jwt_secret=None,
                jwks_url=jwks.url,
                jwt_issuer=ISSUER,
                jwt_audience=PROJECT,
                cors_origins=[web],
            )
            set_app(build_app(settings))
            try:
                yield Deployment(web=web, api=api, signer=signer, operators={"olivia@ion.example"})
            finally:
                set_app(None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def tab(browser: Any, deployment: Deployment) -> Iterator[Tab]:
    opened = open_tab(browser, viewport={"width": 1280, "height": 800})
    page = opened.page

    def identity_toolkit(route: Any) -> None:
        request = route.request
        assert request.url == f"{SIGN_IN}?key={API_KEY}"
        body = json.loads(request.post_data or "{}")
        if body.get("password") != PASSWORD or body.get("returnSecureToken") is not True:
            error = {"error": {"code": 400, "message": "INVALID_LOGIN_CREDENTIALS"}}
            route.fulfill(status=400, content_type="application/json", body=json.dumps(error))
            return
        answer = {
            "idToken": deployment.id_token(body["email"]),
            "refreshToken": f"refresh-{body['email']}",
            # Under the page's one-minute margin: its next call refreshes the token first.
            "expiresIn": "30",
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    def secure_token(route: Any) -> None:
        form = parse_qs(route.request.post_data or "")
        deployment.refreshes.append(form)
        email = form["refresh_token"][0].removeprefix("refresh-")
        answer = {
            "id_token": deployment.id_token(email),
            "refresh_token": f"refresh-{email}",
            "expires_in": "3600",
        }
        route.fulfill(status=200, content_type="application/json", body=json.dumps(answer))

    page.route(f"{SIGN_IN}*", identity_toolkit)
    page.route(f"{REFRESH}*", secure_token)
    deployment.refreshes.clear()
    yield opened
    page.context.close()
    assert opened.problems == []


def sign_in(tab: Tab, deployment: Deployment, email: str, password: str = PASSWORD) -> None:
    page = tab.page
    page.goto(deployment.web + "/")
    page.get_by_role("heading", name="Sign in").wait_for()
    assert not page.get_by_label("Your message").is_visible()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()


def test_a_learner_signs_in_with_firebase_and_chats_across_origins(
    tab: Tab, deployment: Deployment
) -> None:
    page = tab.page
    sign_in(tab, deployment, "minji@ion.example", password="wrong")
    error = page.locator("#signin-error")
    error.wait_for()
    assert error.inner_text() == "Sign-in failed: check your email and password."

    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Sign in").click()
    page.get_by_label("Your message").wait_for()
    # The first API call found the 30-second token about to expire and refreshed it.
    assert deployment.refreshes[0] == {
        "grant_type": ["refresh_token"],
        "refresh_token": ["refresh-minji@ion.example"],
    }
    with page.expect_response(lambda r: r.url == f"{deployment.api}/v1/chat") as caught:
        page.get_by_label("Your message").fill("how do I read a stack trace?")
        page.get_by_label("Your message").press("Enter")
    chat = caught.value
    assert chat.status == 200
    assert chat.headers["access-control-allow-origin"] == deployment.web
    answer = page.locator("article.assistant").last
    answer.locator(".feedback").wait_for()
    assert answer.locator(".text").text_content()
    assert page.locator("#conversation-list .title").first.inner_text() == (
        "how do I read a stack trace?"
    )


def test_the_operator_role_comes_from_a_custom_claim(tab: Tab, deployment: Deployment) -> None:
    page = tab.page
    sign_in(tab, deployment, "olivia@ion.example")
    page.get_by_label("Your message").wait_for()
    page.get_by_role("link", name="Operator page").click()
    page.wait_for_selector("body[data-loaded]")
    assert page.locator("body").get_attribute("data-loaded") == "true"
    assert page.locator("#chart-routing figcaption").inner_text() == (
        "Routing distribution over time"
    )


def test_a_learner_signed_in_with_firebase_is_refused_the_operator_page(
    tab: Tab, deployment: Deployment
) -> None:
    page = tab.page
    sign_in(tab, deployment, "minji@ion.example")
    page.get_by_label("Your message").wait_for()
    with page.expect_response(lambda r: r.url.startswith(f"{deployment.api}/v1/routing")) as caught:
        page.get_by_role("link", name="Operator page").click()
    assert caught.value.status == 403
    page.wait_for_selector("body[data-loaded='refused']")
    assert page.get_by_role("alert").inner_text() == (
        "This page is for operators. Your account does not have the operator role."
    )
