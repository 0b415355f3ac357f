"""Feedback on assistant messages (chat function) and GET /v1/routing/stats (persona_route),
through functions-framework's real apps on embedded defaults (in-process events)."""

from __future__ import annotations

from typing import Any

import pytest
from flask.testing import FlaskClient

from ion.adapters.outbox import InProcessTransport
from ion.bootstrap import App
from tests.support.openapi_check import CheckedClient


@pytest.fixture
def chat_api(chat_client: FlaskClient) -> CheckedClient:
    return CheckedClient(chat_client)


@pytest.fixture
def route_api(route_client: FlaskClient) -> CheckedClient:
    return CheckedClient(route_client)


def _chat(api: CheckedClient, auth: dict[str, str], message: str) -> dict[str, Any]:
    response = api.post("/v1/chat", json={"message": message}, headers=auth)
    assert response.status_code == 200
    body: dict[str, Any] = response.get_json()
    return body


def _url(reply: dict[str, Any], message_id: str | None = None) -> str:
    mid = message_id or reply["message_id"]
    return f"/v1/conversations/{reply['conversation_id']}/messages/{mid}/feedback"


def _stats_for(body: dict[str, Any], persona: str, key: dict[str, str]) -> tuple[int, int, int]:
    for row in body["stats"]:
        if row["persona"] == persona and row["resonance_key"] == key:
            return row["turns"], row["ups"], row["downs"]
    return (0, 0, 0)


def test_feedback_is_stored_published_and_counted(
    app: App,
    chat_api: CheckedClient,
    route_api: CheckedClient,
    auth: dict[str, str],
    operator_auth: dict[str, str],
) -> None:
    reply = _chat(chat_api, auth, "면접이 내일인데 너무 떨려요")
    persona, key = reply["persona"]["id"], reply["resonance_key"]
    stats = route_api.get("/v1/routing/stats", headers=operator_auth).get_json()
    assert _stats_for(stats, persona, key) == (1, 0, 0)

    first = chat_api.post(_url(reply), json={"rating": "up", "comment": "고마워요!"}, headers=auth)
    assert first.status_code == 201
    assert first.get_json()["rating"] == "up"
    assert first.get_json()["comment"] == "고마워요!"
    assert first.get_json()["persona"] == persona
    stats = route_api.get("/v1/routing/stats", headers=operator_auth).get_json()
    assert _stats_for(stats, persona, key) == (1, 1, 0)

    # Changing the rating replaces it (200) and moves the vote; the same rating again
    # changes nothing and publishes nothing.
    second = chat_api.post(_url(reply), json={"rating": "down"}, headers=auth)
    assert second.status_code == 200
    assert second.get_json()["created_at"] == first.get_json()["created_at"]
    again = chat_api.post(_url(reply), json={"rating": "down"}, headers=auth)
    assert again.status_code == 200
    stats = route_api.get("/v1/routing/stats", headers=operator_auth).get_json()
    assert _stats_for(stats, persona, key) == (1, 0, 1)
    assert stats["totals"][persona] == {"turns": 1, "ups": 0, "downs": 1}

    transport = getattr(app.events, "transport", None)
    assert isinstance(transport, InProcessTransport)
    recorded = [e for e in transport.recent() if e["event_type"] == "feedback.recorded"]
    assert [(e["data"]["rating"], e["data"]["previous_rating"]) for e in recorded] == [
        ("up", None),
        ("down", "up"),
    ]
    text = str(recorded)
    assert "고마워요" not in text and "떨려요" not in text and "alice" not in text


def test_feedback_validation(
    chat_api: CheckedClient, auth: dict[str, str], auth_bob: dict[str, str]
) -> None:
    reply = _chat(chat_api, auth, "how do Python decorators work?")
    url = _url(reply)
    assert chat_api.post(url, json={"rating": "up"}).status_code == 401
    # Someone else's conversation, the learner's own message, an unknown message: 404.
    assert chat_api.post(url, json={"rating": "up"}, headers=auth_bob).status_code == 404
    own = _url(reply, reply["user_message_id"])
    assert chat_api.post(own, json={"rating": "up"}, headers=auth).status_code == 404
    unknown = _url(reply, "nope")
    assert chat_api.post(unknown, json={"rating": "up"}, headers=auth).status_code == 404
    assert chat_api.post(url, json={"rating": "meh"}, headers=auth).status_code == 422
    assert chat_api.post(url, json={"rating": "up", "x": 1}, headers=auth).status_code == 422
    long = {"rating": "up", "comment": "가" * 1001}
    assert chat_api.post(url, json=long, headers=auth).status_code == 422
    control = {"rating": "up", "comment": "bad\x00"}
    assert chat_api.post(url, json=control, headers=auth).status_code == 422
    fits = {"rating": "down", "comment": "가" * 1000}
    assert chat_api.post(url, json=fits, headers=auth).status_code == 201


def test_routing_stats_needs_auth(route_api: CheckedClient) -> None:
    assert route_api.get("/v1/routing/stats").status_code == 401


def test_routing_stats_refuse_learners(route_api: CheckedClient, auth: dict[str, str]) -> None:
    response = route_api.get("/v1/routing/stats", headers=auth)
    assert response.status_code == 403
    error = response.get_json()["error"]
    assert error["code"] == "operator_only"
    assert error["message"] == (
        "this endpoint is for operators: the token's 'ion_role' claim must hold 'operator'"
    )


def test_deleting_a_conversation_erases_its_feedback(
    app: App, chat_api: CheckedClient, auth: dict[str, str]
) -> None:
    reply = _chat(chat_api, auth, "how do python generators work?")
    posted = chat_api.post(_url(reply), json={"rating": "up", "comment": "nice"}, headers=auth)
    assert posted.status_code == 201
    assert app.records is not None
    assert app.records.get_feedback(reply["conversation_id"], reply["message_id"]) is not None
    deleted = chat_api.delete(f"/v1/conversations/{reply['conversation_id']}", headers=auth)
    assert deleted.status_code == 204
    assert app.records.get_feedback(reply["conversation_id"], reply["message_id"]) is None
