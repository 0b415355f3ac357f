"""The operator role and the operator endpoints (persona_route function): the role is a
JWT claim checked on the server; learners get 403; the series and pages the operator page
draws, with their time ranges and cursors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from flask.testing import FlaskClient

from ion.adapters.tokens import TokenVerifier, issue_token
from ion.bootstrap import App
from ion.ports import RoutingDisagreement
from tests.support.app import TEST_JWT_SECRET
from tests.support.openapi_check import CheckedClient

CRISIS_EN = "I want to kill myself tonight"
OPERATOR_ONLY = "this endpoint is for operators: the token's 'ion_role' claim must hold 'operator'"


@pytest.fixture
def route_api(route_client: FlaskClient) -> CheckedClient:
    return CheckedClient(route_client)


@pytest.fixture
def chat_api(chat_client: FlaskClient) -> CheckedClient:
    return CheckedClient(chat_client)


@pytest.mark.parametrize(
    "path", ["/v1/routing/stats", "/v1/operator/daily", "/v1/operator/disagreements"]
)
def test_learners_are_refused_every_operator_endpoint(
    route_api: CheckedClient, auth: dict[str, str], path: str
) -> None:
    response = route_api.get(path, headers=auth)
    assert response.status_code == 403
    assert response.get_json()["error"] == {"code": "operator_only", "message": OPERATOR_ONLY}
    assert route_api.get(path).status_code == 401


def test_daily_series_count_turns_ratings_and_crises(
    app: App,
    chat_api: CheckedClient,
    route_api: CheckedClient,
    auth: dict[str, str],
    operator_auth: dict[str, str],
) -> None:
    first = chat_api.post(
        "/v1/chat", json={"message": "how do Python decorators work?"}, headers=auth
    ).get_json()
    crisis = chat_api.post("/v1/chat", json={"message": CRISIS_EN}, headers=auth).get_json()
    assert crisis["safety"]["crisis"] is True
    url = f"/v1/conversations/{first['conversation_id']}/messages/{first['message_id']}/feedback"
    assert chat_api.post(url, json={"rating": "up"}, headers=auth).status_code == 201

    response = route_api.get("/v1/operator/daily", headers=operator_auth)
    assert response.status_code == 200
    body = response.get_json()
    today = datetime.now(UTC).date()
    assert body["to"] == today.isoformat()
    assert body["from"] == (today - timedelta(days=27)).isoformat()
    assert len(body["days"]) == 28 and body["days"][-1] == today.isoformat()
    assert set(body["turns"]) == {"lua", "elro", "riri", "nana"}
    persona = first["persona"]["id"]
    turns_today = {p: series[-1] for p, series in body["turns"].items()}
    expected = {"lua": 0, "elro": 0, "riri": 0, "nana": 0}
    expected[persona] += 1
    expected["lua"] += 1  # the crisis turn is answered by Lua
    assert turns_today == expected
    assert sum(sum(series) for series in body["turns"].values()) == 2
    assert body["ups"][persona][-1] == 1
    assert sum(sum(series) for series in body["downs"].values()) == 0
    assert body["crises"][-1] == 1 and sum(body["crises"]) == 1

    # A range that ends yesterday has none of today's counts.
    yesterday = (today - timedelta(days=1)).isoformat()
    earlier = route_api.get(
        f"/v1/operator/daily?from={yesterday}&to={yesterday}", headers=operator_auth
    ).get_json()
    assert earlier["days"] == [yesterday]
    assert earlier["crises"] == [0]
    assert all(series == [0] for series in earlier["turns"].values())


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("from=2026-02-01&to=2026-01-01", "query parameter from must not be after to"),
        ("from=2026-01-01&to=2026-04-03", "a range spans at most 92 days"),
        ("to=2026-13-01", "query parameter to must be a date like 2026-01-31"),
        ("from=2026-W05-1&to=2026-02-01", "query parameter from must be a date like 2026-01-31"),
        ("to=0001-01-05", "query parameters from and to must be real dates"),
    ],
)
def test_ranges_are_checked(
    route_api: CheckedClient, operator_auth: dict[str, str], query: str, message: str
) -> None:
    response = route_api.get(f"/v1/operator/daily?{query}", headers=operator_auth)
    assert response.status_code == 422
    assert response.get_json()["error"]["message"] == message


def _disagreement(n: int, at: datetime) -> RoutingDisagreement:
    return RoutingDisagreement(
        message_hash=f"{n:064x}",
        message=f"메시지 {n}",
        local_persona="elro",
        judge_persona="nana",
        confidence=0.31,
        main_need="a plan",
        created_at=at,
        expires_at=at + timedelta(days=30),
    )


def test_disagreements_page_through_the_range(
    app: App, route_api: CheckedClient, operator_auth: dict[str, str]
) -> None:
    now = datetime.now(UTC)
    for n in range(5):
        app.records.put_disagreement(_disagreement(n, now - timedelta(minutes=n)))
    app.records.put_disagreement(_disagreement(9, now - timedelta(days=40)))  # out of range

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        query = "limit=2" + (f"&cursor={cursor}" if cursor else "")
        response = route_api.get(f"/v1/operator/disagreements?{query}", headers=operator_auth)
        assert response.status_code == 200
        body: dict[str, Any] = response.get_json()
        seen += [d["message"] for d in body["disagreements"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break
    assert seen == [f"메시지 {n}" for n in range(5)]
    assert pages == 3

    bad = route_api.get("/v1/operator/disagreements?cursor=nonsense", headers=operator_auth)
    assert bad.status_code == 400
    assert bad.get_json()["error"]["code"] == "bad_request"


def test_the_role_claim_may_be_a_list_and_its_name_a_setting() -> None:
    verifier = TokenVerifier(TEST_JWT_SECRET, role_claim="roles")
    now = int(datetime.now(UTC).timestamp())
    claims = {"sub": "olivia", "iat": now, "exp": now + 60, "roles": ["editor", "operator"]}
    principal = verifier.principal(jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256"))
    assert principal.user_id == "olivia"
    assert principal.roles == frozenset({"editor", "operator"})
    # The default claim name is not read when another one is configured.
    other = issue_token(
        TEST_JWT_SECRET, "olivia", now=datetime.now(UTC), ttl_s=60, role=("ion_role", "operator")
    )
    assert verifier.principal(other).roles == frozenset()
    # A role claim of another shape holds no role.
    claims["roles"] = {"operator": True}
    odd = jwt.encode(claims, TEST_JWT_SECRET, algorithm="HS256")
    assert verifier.principal(odd).roles == frozenset()


def test_dev_tokens_cannot_overwrite_registered_claims() -> None:
    with pytest.raises(ValueError, match="registered claim"):
        issue_token(
            TEST_JWT_SECRET, "mallory", now=datetime.now(UTC), ttl_s=60, role=("sub", "admin")
        )


def test_operator_claim_setting_is_used_by_the_app(clean_env: Path) -> None:
    from ion.bootstrap import build_app
    from tests.support.app import make_settings

    app = build_app(
        make_settings(clean_env / "data", operator_claim="roles", operator_role="ops-team")
    )
    token = app.dev_token("olivia", operator=True)
    claims = jwt.decode(token, options={"verify_signature": False})
    assert claims["roles"] == "ops-team"
    assert app.verifier.principal(token).roles == frozenset({"ops-team"})
