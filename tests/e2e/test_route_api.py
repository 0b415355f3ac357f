"""The persona_route function through functions-framework's real app."""

from __future__ import annotations

import pytest
from flask.testing import FlaskClient

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
