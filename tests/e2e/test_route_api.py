"""The persona_route function through functions-framework's real app."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from tests.support.app import TEST_JWT_SECRET, function_client
from tests.support.openapi_check import CheckedClient


@pytest.fixture
def api(route_client: FlaskClient) -> CheckedClient:
    return CheckedClient(route_client)


def test_route_returns_decision_without_llm(api: CheckedClient, auth: dict[str, str]) -> None:
    response = api.post(
        "/v1/route",
        json={"message": "모델 정확도는 95%인데 recall이 0.3이래요. 좋은 건가요?"},
        headers=auth,
    )
    assert response.status_code == 200
    body = response.get_json()
    assert body["persona"]["id"] == "riri"
    assert body["language"] == "ko"
    assert body["routing"]["primary"] == "riri"
    assert 0.0 <= body["routing"]["confidence"] <= 1.0
    assert body["routing"]["reason"]


def test_route_uses_history(api: CheckedClient, auth: dict[str, str]) -> None:
    history = ["How does the Python GIL work with threads?"]
    body = api.post(
        "/v1/route", json={"message": "and the second one?", "history": history}, headers=auth
    ).get_json()
    assert body["persona"]["id"] == "elro"


def test_personas(api: CheckedClient, auth: dict[str, str]) -> None:
    personas = api.get("/v1/personas", headers=auth).get_json()["personas"]
    assert [p["id"] for p in personas] == ["lua", "elro", "riri", "nana"]
    assert {p["name_ko"] for p in personas} == {"루아", "엘로", "리리", "나나"}


def test_route_needs_auth_and_valid_body(api: CheckedClient, auth: dict[str, str]) -> None:
    assert api.post("/v1/route", json={"message": "hi"}).status_code == 401
    assert api.get("/v1/personas").status_code == 401
    assert api.post("/v1/route", json={"message": ""}, headers=auth).status_code == 422
    assert (
        api.post("/v1/route", json={"message": "x", "history": [1]}, headers=auth).status_code
        == 422
    )
    too_many = {"message": "x", "history": ["a"] * 21}
    assert api.post("/v1/route", json=too_many, headers=auth).status_code == 422
    assert (
        api.post("/v1/route", data="nope", content_type="text/plain", headers=auth).status_code
        == 415
    )


def test_health(api: CheckedClient) -> None:
    assert api.get("/health").status_code == 200
    assert api.get("/ready").status_code == 200


def test_the_route_function_builds_no_chat_service_publisher_or_model(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """persona_route gets its own RouteApp: routing, safety, quota, statistics, operator
    reports; building it never constructs a ChatService, an event publisher or an LLM."""
    from ion.adapters.outbox import ReliablePublisher
    from ion.adapters.tokens import issue_token
    from ion.bootstrap import RouteApp, get_route_app, set_app, set_route_app
    from ion.bootstrap import apps as bootstrap_apps
    from ion.services.chat import ChatService

    def forbidden(*args: object, **kwargs: object) -> None:
        raise AssertionError("persona_route must not build this")

    monkeypatch.setattr(ChatService, "__init__", forbidden)
    monkeypatch.setattr(ReliablePublisher, "__init__", forbidden)
    monkeypatch.setattr(bootstrap_apps, "build_llm", forbidden)
    monkeypatch.setenv("ION_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("ION_JWT_SECRET", TEST_JWT_SECRET)
    set_app(None)
    try:
        api = CheckedClient(function_client("persona_route"))
        ready = api.get("/ready")
        assert ready.status_code == 200
        assert set(ready.get_json()["checks"]) == {"store", "auth", "routing", "safety"}
        route_app = get_route_app()
        assert type(route_app) is RouteApp
        assert {f.name for f in dataclasses.fields(route_app)} == {
            "settings",
            "verifier",
            "store",
            "catalog",
            "router",
            "detector",
            "crisis_policy",
            "quota",
            "statistics",
            "operator",
            "routing_status",
            "safety_status",
        }
        settings = route_app.settings
        token = issue_token(
            TEST_JWT_SECRET,
            "alice",
            now=datetime.now(UTC),
            ttl_s=300,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            algorithm=route_app.verifier.algorithms[0],
        )
        response = api.post(
            "/v1/route",
            json={"message": "I feel like giving up on coding, nothing works"},
            headers={"Authorization": f"Bearer {token}"},
        )
        assert response.status_code == 200
        assert response.get_json()["persona"]["id"] == "lua"
    finally:
        set_route_app(None)
