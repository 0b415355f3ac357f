"""The security suite: one exact expected status (and code) per hostile or edge-case request.

Runs the real functions (functions-framework apps, validated against openapi.yaml) on an
app configured like production: issuer, audience, a CORS allow-list.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from flask.testing import FlaskClient

from ion.bootstrap import App, build_app, set_app
from ion.entrypoints.http.local import create_local_app
from tests.fakes.jwks_server import JwksServer, Signer, serve_jwks, unsigned_token
from tests.support.app import TEST_JWT_SECRET, function_client, make_settings
from tests.support.openapi_check import CheckedClient

ISSUER = "https://auth.ion.example"
AUDIENCE = "ion-mentoring"
ORIGIN = "https://app.ion.example"
LIMIT = 4000


@pytest.fixture
def secure_app(clean_env: Path) -> Iterator[App]:
    application = build_app(
        make_settings(
            clean_env / "data",
            jwt_issuer=ISSUER,
            jwt_audience=AUDIENCE,
            cors_origins=ORIGIN,
            rate_limit_per_minute=0,
            api_rate_limit_per_minute=0,
        )
    )
    set_app(application)
    yield application
    set_app(None)


@pytest.fixture
def api(secure_app: App) -> CheckedClient:
    return CheckedClient(function_client("chat"))


@pytest.fixture
def route_api(secure_app: App) -> CheckedClient:
    return CheckedClient(function_client("persona_route"))


@pytest.fixture
def alice(secure_app: App) -> dict[str, str]:
    return {"Authorization": f"Bearer {secure_app.dev_token('alice')}"}


@pytest.fixture
def bob(secure_app: App) -> dict[str, str]:
    return {"Authorization": f"Bearer {secure_app.dev_token('bob')}"}


def code(response: Any) -> str:
    body = response.get_json()
    assert set(body) >= {"error", "request_id"}
    return str(body["error"]["code"])


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hs_token(secret: str = TEST_JWT_SECRET, algorithm: str = "HS256", **override: Any) -> str:
    now = datetime.now(UTC)
    claims: dict[str, Any] = {
        "sub": "alice",
        "iss": ISSUER,
        "aud": AUDIENCE,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(minutes=5)).timestamp()),
    }
    claims.update(override)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode(claims, secret, algorithm=algorithm)


HOUR = 3600


def _now() -> int:
    return int(datetime.now(UTC).timestamp())


# ---- authentication ------------------------------------------------------------------

AUTH_CASES: list[tuple[str, Any, str]] = [
    ("missing", lambda: {}, "missing_token"),
    ("empty bearer", lambda: {"Authorization": "Bearer "}, "invalid_token"),
    ("basic scheme", lambda: {"Authorization": "Basic YWxpY2U6cHc="}, "invalid_token"),
    ("malformed", lambda: bearer("not-a-jwt"), "invalid_token"),
    ("three garbage parts", lambda: bearer("a.b.c"), "invalid_token"),
    ("expired", lambda: bearer(hs_token(exp=_now() - HOUR)), "token_expired"),
    ("not yet valid", lambda: bearer(hs_token(nbf=_now() + HOUR)), "token_not_yet_valid"),
    ("issued in the future", lambda: bearer(hs_token(iat=_now() + HOUR)), "token_not_yet_valid"),
    ("wrong audience", lambda: bearer(hs_token(aud="someone-else")), "invalid_audience"),
    ("no audience", lambda: bearer(hs_token(aud=None)), "invalid_token"),
    ("wrong issuer", lambda: bearer(hs_token(iss="https://evil.example")), "invalid_issuer"),
    ("bad signature", lambda: bearer(hs_token(secret="x" * 48)), "invalid_signature"),
    ("no exp", lambda: bearer(hs_token(exp=None)), "invalid_token"),
    ("no iat", lambda: bearer(hs_token(iat=None)), "invalid_token"),
    (
        "100-year lifetime",
        lambda: bearer(hs_token(exp=_now() + 100 * 365 * 24 * HOUR)),
        "token_lifetime_too_long",
    ),
    ("no sub", lambda: bearer(hs_token(sub=None)), "invalid_token"),
    ("sub with bad characters", lambda: bearer(hs_token(sub="a/b c")), "invalid_token"),
    (
        "alg none",
        lambda: bearer(
            unsigned_token(
                {"sub": "alice", "iss": ISSUER, "aud": AUDIENCE, "iat": 1, "exp": _now() + HOUR}
            )
        ),
        "invalid_algorithm",
    ),
    (
        "algorithm not on the list (HS512)",
        lambda: bearer(hs_token(secret=TEST_JWT_SECRET * 2, algorithm="HS512")),
        "invalid_algorithm",
    ),
]


@pytest.mark.parametrize(
    ("name", "headers", "expected"), AUTH_CASES, ids=[c[0] for c in AUTH_CASES]
)
def test_bad_tokens_are_401_with_a_precise_code(
    api: CheckedClient, name: str, headers: Any, expected: str
) -> None:
    response = api.post("/v1/chat", json={"message": "hi"}, headers=headers())
    assert response.status_code == 401
    assert code(response) == expected
    assert response.headers["WWW-Authenticate"] == (
        f'Bearer error="invalid_token", error_description="{expected}"'
    )
    text = response.get_data(as_text=True)
    assert TEST_JWT_SECRET not in text and "Traceback" not in text


def test_valid_token_is_accepted(api: CheckedClient, alice: dict[str, str]) -> None:
    assert api.get("/v1/conversations", headers=alice).status_code == 200


def test_every_v1_endpoint_needs_a_token(api: CheckedClient, route_api: CheckedClient) -> None:
    statuses = [
        api.get("/v1/conversations").status_code,
        api.get("/v1/conversations/abc").status_code,
        api.delete("/v1/conversations/abc").status_code,
        route_api.post("/v1/route", json={"message": "hi"}).status_code,
        route_api.get("/v1/personas").status_code,
    ]
    assert statuses == [401] * 5


# ---- JWKS mode: key confusion and unknown keys ------------------------------------------

RSA = Signer.rsa("rsa-key-1")


@pytest.fixture
def jwks() -> Iterator[JwksServer]:
    with serve_jwks(RSA) as server:
        yield server


@pytest.fixture
def jwks_api(clean_env: Path, jwks: JwksServer) -> Iterator[CheckedClient]:
    settings = make_settings(
        clean_env / "data",
        jwt_secret=None,
        jwks_url=jwks.url,
        jwt_issuer=ISSUER,
        jwt_audience=AUDIENCE,
    )
    set_app(build_app(settings))
    yield CheckedClient(function_client("chat"))
    set_app(None)


def _hs256_with_public_key(kid: str) -> str:
    """The classic confusion attack: HS256 'signed' with the RSA public key as the secret."""
    pem = RSA.private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = jwt.utils.base64url_encode(
        json.dumps({"alg": "HS256", "typ": "JWT", "kid": kid}).encode()
    )
    claims = {"sub": "mallory", "iss": ISSUER, "aud": AUDIENCE, "iat": 1, "exp": _now() + HOUR}
    payload = jwt.utils.base64url_encode(json.dumps(claims).encode())
    hmac = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    signature = hmac.sign(header + b"." + payload, pem)
    return (header + b"." + payload + b"." + jwt.utils.base64url_encode(signature)).decode()


def test_jwks_mode_accepts_the_providers_token(jwks_api: CheckedClient) -> None:
    token = RSA.token(iss=ISSUER, aud=AUDIENCE)
    assert jwks_api.get("/v1/conversations", headers=bearer(token)).status_code == 200


def test_hs_rs_confusion_is_refused(jwks_api: CheckedClient) -> None:
    response = jwks_api.get("/v1/conversations", headers=bearer(_hs256_with_public_key(RSA.kid)))
    assert (response.status_code, code(response)) == (401, "invalid_algorithm")


def test_unknown_kid_is_refused(jwks_api: CheckedClient, jwks: JwksServer) -> None:
    stranger = Signer.rsa("not-published")
    token = stranger.token(iss=ISSUER, aud=AUDIENCE)
    response = jwks_api.get("/v1/conversations", headers=bearer(token))
    assert (response.status_code, code(response)) == (401, "unknown_key")


def test_dev_tokens_fail_clearly_in_jwks_mode(jwks_api: CheckedClient) -> None:
    from ion.bootstrap import get_app
    from ion.errors import ConfigurationError

    with pytest.raises(ConfigurationError, match="identity provider"):
        get_app().dev_token("alice")


# ---- authorisation: other people's conversations -----------------------------------------


def test_another_users_conversation_is_404_everywhere(
    api: CheckedClient, alice: dict[str, str], bob: dict[str, str]
) -> None:
    mine = api.post("/v1/chat", json={"message": "what is a closure?"}, headers=alice)
    cid = mine.get_json()["conversation_id"]
    statuses = [
        api.get(f"/v1/conversations/{cid}", headers=bob).status_code,
        api.delete(f"/v1/conversations/{cid}", headers=bob).status_code,
        api.post(
            "/v1/chat", json={"message": "mine now", "conversation_id": cid}, headers=bob
        ).status_code,
    ]
    assert statuses == [404, 404, 404]
    assert api.get(f"/v1/conversations/{cid}", headers=alice).status_code == 200


# ---- hostile but valid text: stored and returned verbatim --------------------------------

VERBATIM = {
    "sql": "'; DROP TABLE messages; -- \" OR 1=1 /*",
    "nosql": '{"$gt": ""} {"$where": "sleep(1000)"} db.users.drop()',
    "shell": "$(rm -rf /) `id` | cat /etc/passwd; echo $HOME && ${IFS}",
    "xss": "<script>alert(1)</script><img src=x onerror=alert(1)> javascript:alert(1)",
    "template": "{{7*7}} ${7*7} <%= 7*7 %> {% raw %}",
    "path": "../../../../etc/passwd %00 ..\\..\\windows",
    "zero width": "pass\u200bword\u200c\u200d\ufeff end",
    "rtl": "abc \u202eevil.exe\u202c \u200f\u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627",
    "emoji": "😀👩‍💻🇰🇷 👍🏽 ❤️‍🔥",
    "korean": "면접이 내일인데 너무 떨려요",
    "tab and newline": "line 1\n\tline 2",
}


@pytest.mark.parametrize("kind", list(VERBATIM))
def test_hostile_text_is_stored_and_returned_verbatim(
    api: CheckedClient, alice: dict[str, str], kind: str
) -> None:
    text = VERBATIM[kind]
    response = api.post("/v1/chat", json={"message": text}, headers=alice)
    assert response.status_code == 200
    assert response.mimetype == "application/json"
    cid = response.get_json()["conversation_id"]
    detail = api.get(f"/v1/conversations/{cid}", headers=alice).get_json()
    assert detail["messages"][0]["text"] == text


def test_text_is_nfc_normalised_and_line_endings_unified(
    api: CheckedClient, alice: dict[str, str]
) -> None:
    response = api.post("/v1/chat", json={"message": "cafe\u0301\r\nnext"}, headers=alice)
    assert response.status_code == 200
    cid = response.get_json()["conversation_id"]
    detail = api.get(f"/v1/conversations/{cid}", headers=alice).get_json()
    assert detail["messages"][0]["text"] == "caf\u00e9\nnext"


# ---- malformed input: one exact status each --------------------------------------------

BAD_BODIES: list[tuple[str, dict[str, Any], int, str]] = [
    ("null byte", {"json": {"message": "a\x00b"}}, 422, "validation_failed"),
    ("escape character", {"json": {"message": "a\x1b[31mred"}}, 422, "validation_failed"),
    ("C1 control", {"json": {"message": "a\x85b"}}, 422, "validation_failed"),
    ("lone surrogate", {"data": '{"message": "a\\ud800b"}'}, 422, "validation_failed"),
    ("only zero-width", {"json": {"message": "\u200b\u200d\ufeff"}}, 422, "validation_failed"),
    ("only spaces", {"json": {"message": " \n\t "}}, 422, "validation_failed"),
    ("empty", {"json": {"message": ""}}, 422, "validation_failed"),
    ("missing message", {"json": {"stream": False}}, 422, "validation_failed"),
    ("extra field", {"json": {"message": "hi", "admin": True}}, 422, "validation_failed"),
    ("message not a string", {"json": {"message": ["hi"]}}, 422, "validation_failed"),
    ("message null", {"json": {"message": None}}, 422, "validation_failed"),
    ("stream not a bool", {"json": {"message": "hi", "stream": "yes"}}, 422, "validation_failed"),
    ("array body", {"json": [{"message": "hi"}]}, 422, "validation_failed"),
    ("string body", {"json": "hi"}, 422, "validation_failed"),
    (
        "bad conversation id",
        {"json": {"message": "hi", "conversation_id": "../x"}},
        422,
        "validation_failed",
    ),
    ("invalid JSON", {"data": '{"message": "hi"'}, 400, "invalid_json"),
    ("not UTF-8", {"data": b'{"message": "\xff\xfe"}'}, 400, "invalid_json"),
    ("UTF-16", {"data": '{"message": "hi"}'.encode("utf-16")}, 400, "invalid_json"),
    ("UTF-8 BOM", {"data": b'\xef\xbb\xbf{"message": "hi"}'}, 400, "invalid_json"),
    ("deeply nested", {"data": "[" * 5_000 + "]" * 5_000}, 400, "invalid_json"),
    ("huge integer", {"data": '{"message": "hi", "n": ' + "9" * 5000 + "}"}, 400, "invalid_json"),
    ("NaN", {"data": '{"message": "hi", "stream": NaN}'}, 422, "validation_failed"),
]


@pytest.mark.parametrize(
    ("name", "kwargs", "status", "expected"), BAD_BODIES, ids=[c[0] for c in BAD_BODIES]
)
def test_bad_bodies(
    api: CheckedClient,
    alice: dict[str, str],
    name: str,
    kwargs: dict[str, Any],
    status: int,
    expected: str,
) -> None:
    if "data" in kwargs:
        kwargs = {**kwargs, "content_type": "application/json"}
    response = api.post("/v1/chat", headers=alice, **kwargs)
    assert response.status_code == status, response.data
    assert code(response) == expected


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None],
)
def test_wrong_content_type_is_415(
    api: CheckedClient, alice: dict[str, str], content_type: str | None
) -> None:
    kwargs: dict[str, Any] = {"data": '{"message": "hi"}'}
    if content_type:
        kwargs["content_type"] = content_type
    response = api.post("/v1/chat", headers=alice, **kwargs)
    assert (response.status_code, code(response)) == (415, "unsupported_media_type")


@pytest.mark.parametrize(
    ("text", "status"),
    [
        ("a" * LIMIT, 200),
        ("a" * (LIMIT + 1), 422),
        ("😀" * LIMIT, 200),  # the limit counts characters, not bytes
        ("😀" * (LIMIT + 1), 422),
        ("e\u0301" * LIMIT, 200),  # 8000 code points that NFC makes 4000
    ],
    ids=["limit", "limit+1", "emoji limit", "emoji limit+1", "nfc shrinks to the limit"],
)
def test_message_length_boundaries(
    api: CheckedClient, alice: dict[str, str], text: str, status: int
) -> None:
    response = api.post("/v1/chat", json={"message": text}, headers=alice)
    assert response.status_code == status
    if status == 422:
        assert f"limit of {LIMIT} characters" in response.get_json()["error"]["message"]


def test_oversized_body_is_413(api: CheckedClient, alice: dict[str, str], secure_app: App) -> None:
    body = json.dumps({"message": "x" * (secure_app.settings.max_body_bytes + 1)})
    response = api.post("/v1/chat", data=body, content_type="application/json", headers=alice)
    assert (response.status_code, code(response)) == (413, "payload_too_large")


def test_route_history_items_are_checked_too(
    route_api: CheckedClient, alice: dict[str, str]
) -> None:
    response = route_api.post(
        "/v1/route", json={"message": "hi", "history": ["ok", "bad\x00"]}, headers=alice
    )
    assert (response.status_code, code(response)) == (422, "validation_failed")


@pytest.mark.parametrize(
    ("path", "status"),
    [
        ("/v1/conversations/" + "a" * 65, 400),
        ("/v1/conversations/bad.id", 400),
        ("/v1/conversations/%E2%80%AEabc", 400),
        ("/v1/conversations/a%00b", 400),
        ("/v1/conversations/..%2F..%2Fetc", 404),
    ],
    ids=["too long", "dot", "rtl override", "null byte", "encoded slashes"],
)
def test_path_ids_are_validated(
    api: CheckedClient, alice: dict[str, str], path: str, status: int
) -> None:
    assert api.get(path, headers=alice).status_code == status


@pytest.mark.parametrize(
    ("query", "status"),
    [("limit=0", 422), ("limit=-1", 422), ("limit=1e3", 422), ("cursor=%00%ff", 400)],
)
def test_query_parameters_are_validated(
    api: CheckedClient, alice: dict[str, str], query: str, status: int
) -> None:
    assert api.get(f"/v1/conversations?{query}", headers=alice).status_code == status


def test_unexpected_errors_are_a_bare_500(
    api: CheckedClient, alice: dict[str, str], secure_app: App, monkeypatch: pytest.MonkeyPatch
) -> None:
    def explode(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("db password is hunter2")

    monkeypatch.setattr(secure_app.chat, "list_conversations", explode)
    response = api.client.get("/v1/conversations", headers=alice)
    assert (response.status_code, code(response)) == (500, "internal")
    assert "hunter2" not in response.get_data(as_text=True)


# ---- transport: security headers and CORS ---------------------------------------------

SECURITY_HEADERS = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


@pytest.fixture(params=["function", "local"])
def raw_client(request: pytest.FixtureRequest, secure_app: App) -> FlaskClient:
    """The chat function as deployed, and `ion serve`'s combined local app."""
    if request.param == "function":
        return function_client("chat")
    return create_local_app().test_client()


def _responses(client: FlaskClient, alice: dict[str, str]) -> dict[str, Any]:
    chat = client.post("/v1/chat", json={"message": "hello"}, headers=alice)
    cid = chat.get_json()["conversation_id"]
    return {
        "200 json": chat,
        "200 sse": client.post("/v1/chat", json={"message": "hi", "stream": True}, headers=alice),
        "204": client.delete(f"/v1/conversations/{cid}", headers=alice),
        "401": client.get("/v1/conversations"),
        "404": client.get("/v1/nowhere", headers=alice),
        "405": client.put("/v1/chat", headers=alice),
        "422": client.post("/v1/chat", json={}, headers=alice),
        "health": client.get("/health"),
        "preflight": client.options(
            "/v1/chat", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
        ),
    }


def test_security_headers_on_every_response(raw_client: FlaskClient, alice: dict[str, str]) -> None:
    for name, response in _responses(raw_client, alice).items():
        missing = {
            header: response.headers.get(header)
            for header, value in SECURITY_HEADERS.items()
            if response.headers.get(header) != value
        }
        assert missing == {}, name
        csp = response.headers["Content-Security-Policy"]
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, name


def test_preflight_from_an_allowed_origin(raw_client: FlaskClient) -> None:
    response = raw_client.options(
        "/v1/chat",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, idempotency-key",
        },
    )
    assert response.status_code == 204
    assert response.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert response.headers["Access-Control-Allow-Methods"] == "POST, OPTIONS"
    allowed = {
        h.strip().lower() for h in response.headers["Access-Control-Allow-Headers"].split(",")
    }
    assert {"authorization", "content-type", "idempotency-key"} <= allowed
    assert int(response.headers["Access-Control-Max-Age"]) > 0
    assert "Origin" in response.headers["Vary"]
    assert "Access-Control-Allow-Credentials" not in response.headers
    assert response.data == b""


def test_preflight_from_another_origin_is_403(raw_client: FlaskClient) -> None:
    response = raw_client.options(
        "/v1/chat",
        headers={"Origin": "https://evil.example", "Access-Control-Request-Method": "POST"},
    )
    assert (response.status_code, code(response)) == (403, "origin_not_allowed")
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize(
    ("path", "method", "status"),
    [
        ("/v1/nowhere", "GET", 404),
        ("/v1/chat", "DELETE", 405),
        ("/v1/conversations/abc", "DELETE", 204),
    ],
)
def test_preflight_answers_per_path(
    raw_client: FlaskClient, path: str, method: str, status: int
) -> None:
    response = raw_client.options(
        path, headers={"Origin": ORIGIN, "Access-Control-Request-Method": method}
    )
    assert response.status_code == status


def test_cors_on_actual_requests(raw_client: FlaskClient, alice: dict[str, str]) -> None:
    allowed = raw_client.get("/v1/conversations", headers={**alice, "Origin": ORIGIN})
    assert allowed.status_code == 200
    assert allowed.headers["Access-Control-Allow-Origin"] == ORIGIN
    assert "Retry-After" in allowed.headers["Access-Control-Expose-Headers"]
    assert "Access-Control-Allow-Credentials" not in allowed.headers
    no_origin = raw_client.get("/v1/conversations", headers=alice)
    assert "Access-Control-Allow-Origin" not in no_origin.headers


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "null", f"{ORIGIN}.evil.example", "http://app.ion.example"]
)
def test_requests_from_other_origins_are_403(
    api: CheckedClient, alice: dict[str, str], origin: str
) -> None:
    response = api.get("/v1/conversations", headers={**alice, "Origin": origin})
    assert (response.status_code, code(response)) == (403, "origin_not_allowed")
