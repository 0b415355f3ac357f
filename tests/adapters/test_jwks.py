"""JWKS mode: keys from a real loopback JWKS server, cached, rotated, never fetched per request."""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from pydantic import ValidationError

from ion.adapters.tokens import AuthError, JwksCache, JwksTokenVerifier, TokenVerifier
from ion.domain.token_policy import check_jwks_url
from ion.errors import DependencyUnavailable
from tests.fakes.clock import ManualClock
from tests.fakes.jwks_server import JwksServer, Signer, serve_jwks, unsigned_token
from tests.support.app import make_settings

RSA = Signer.rsa("rsa-1")
EC = Signer.ec("ec-1")


@pytest.fixture
def server() -> Iterator[JwksServer]:
    with serve_jwks(RSA, EC) as running:
        yield running


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def verifier(server: JwksServer, clock: ManualClock) -> JwksTokenVerifier:
    keys = JwksCache(
        server.url,
        ["RS256", "ES256"],
        ttl_s=600,
        min_refresh_interval_s=30,
        monotonic=clock.monotonic,
    )
    return JwksTokenVerifier(
        keys,
        algorithms=["RS256", "ES256"],
        audience="ion",
        issuer="idp",
        monotonic=clock.monotonic,
    )


def code_of(verifier: JwksTokenVerifier, token: str) -> str:
    with pytest.raises(AuthError) as caught:
        verifier.verify(token)
    return caught.value.code


def test_rs256_and_es256_tokens_verify_with_one_fetch(
    verifier: JwksTokenVerifier, server: JwksServer
) -> None:
    for _ in range(5):
        assert verifier.verify(RSA.token(aud="ion", iss="idp")) == "alice"
        assert verifier.verify(EC.token(aud="ion", iss="idp", sub="bob")) == "bob"
    assert server.fetches == 1


def test_rotated_key_is_fetched_on_unknown_kid(
    verifier: JwksTokenVerifier, server: JwksServer, clock: ManualClock
) -> None:
    assert verifier.verify(RSA.token(aud="ion", iss="idp")) == "alice"
    rotated = Signer.rsa("rsa-2")
    server.signers = [rotated, EC]  # the provider rotates: rsa-1 is gone
    clock.advance(31)
    assert verifier.verify(rotated.token(aud="ion", iss="idp")) == "alice"
    assert server.fetches == 2
    # The retired key is gone from the refreshed set; within the interval: no new fetch.
    assert code_of(verifier, RSA.token(aud="ion", iss="idp")) == "unknown_key"
    assert server.fetches == 2


def test_random_kids_cannot_force_fetches(
    verifier: JwksTokenVerifier, server: JwksServer, clock: ManualClock
) -> None:
    assert verifier.verify(RSA.token(aud="ion", iss="idp")) == "alice"
    for _ in range(50):
        forged = RSA.token(aud="ion", iss="idp", headers={"kid": secrets.token_hex(8)})
        assert code_of(verifier, forged) == "unknown_key"
    assert server.fetches == 1
    clock.advance(30)
    code_of(verifier, RSA.token(aud="ion", iss="idp", headers={"kid": "nope"}))
    code_of(verifier, RSA.token(aud="ion", iss="idp", headers={"kid": "nope-2"}))
    assert server.fetches == 2


def test_keys_are_refreshed_after_the_ttl(
    verifier: JwksTokenVerifier, server: JwksServer, clock: ManualClock
) -> None:
    verifier.verify(RSA.token(aud="ion", iss="idp"))
    clock.advance(599)
    verifier.verify(RSA.token(aud="ion", iss="idp"))
    assert server.fetches == 1
    clock.advance(1)
    verifier.verify(RSA.token(aud="ion", iss="idp"))
    assert server.fetches == 2


def test_provider_outage_keeps_known_keys(
    verifier: JwksTokenVerifier, server: JwksServer, clock: ManualClock
) -> None:
    verifier.verify(RSA.token(aud="ion", iss="idp"))
    server.fail = True
    clock.advance(601)  # stale: a refresh is attempted, fails, the cached keys stay in use
    assert verifier.verify(RSA.token(aud="ion", iss="idp")) == "alice"
    assert server.fetches == 1  # the failed attempt answered 500 before counting


def test_no_keys_at_all_is_503_not_401(server: JwksServer, clock: ManualClock) -> None:
    server.fail = True
    keys = JwksCache(server.url, ["RS256"], monotonic=clock.monotonic)
    verifier = JwksTokenVerifier(keys, algorithms=["RS256"])
    with pytest.raises(DependencyUnavailable):
        verifier.verify(RSA.token())


def test_hs256_token_signed_with_the_public_key_is_refused(verifier: JwksTokenVerifier) -> None:
    public_pem = (
        RSA.private_key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    claims = {"sub": "mallory", "aud": "ion", "iss": "idp", "iat": 1, "exp": 9_999_999_999}
    # PyJWT refuses to HMAC with a PEM key, so forge the HS256 signature by hand.
    header = {"alg": "HS256", "kid": RSA.kid, "typ": "JWT"}
    hs = jwt.algorithms.HMACAlgorithm(jwt.algorithms.HMACAlgorithm.SHA256)
    signing_input = (
        jwt.utils.base64url_encode(json.dumps(header, separators=(",", ":")).encode())
        + b"."
        + jwt.utils.base64url_encode(json.dumps(claims, separators=(",", ":")).encode())
    )
    signature = hs.sign(signing_input, public_pem.encode())
    forged = (signing_input + b"." + jwt.utils.base64url_encode(signature)).decode()
    assert code_of(verifier, forged) == "invalid_algorithm"


def test_alg_none_is_refused(verifier: JwksTokenVerifier) -> None:
    unsigned = unsigned_token(
        {"sub": "mallory", "iat": 1, "exp": 9_999_999_999},
        headers={"kid": RSA.kid},
    )
    assert code_of(verifier, unsigned) == "invalid_algorithm"


def test_algorithm_must_match_the_key(verifier: JwksTokenVerifier) -> None:
    # An ES256 token naming the RSA key's kid.
    mixed = EC.token(aud="ion", iss="idp", headers={"kid": RSA.kid})
    assert code_of(verifier, mixed) == "invalid_algorithm"


def test_token_without_kid_is_invalid(verifier: JwksTokenVerifier) -> None:
    token = jwt.encode(
        {"sub": "alice", "iat": 1, "exp": 9_999_999_999}, RSA.private_key, algorithm="RS256"
    )
    assert code_of(verifier, token) == "invalid_token"


@pytest.mark.parametrize(
    ("claims", "code"),
    [
        ({"aud": "other", "iss": "idp"}, "invalid_audience"),
        ({"aud": "ion", "iss": "evil"}, "invalid_issuer"),
        ({"aud": "ion", "iss": "idp", "lifetime_s": -120}, "token_expired"),
        ({"aud": "ion", "iss": "idp", "nbf": 9_999_999_999}, "token_not_yet_valid"),
    ],
)
def test_claims_are_checked(verifier: JwksTokenVerifier, claims: dict[str, Any], code: str) -> None:
    assert code_of(verifier, RSA.token(**claims)) == code


def test_a_key_signed_by_someone_else_fails_the_signature(verifier: JwksTokenVerifier) -> None:
    impostor = Signer.rsa(RSA.kid)  # same kid, different key
    assert code_of(verifier, impostor.token(aud="ion", iss="idp")) == "invalid_signature"


@pytest.mark.parametrize(
    "build",
    [
        lambda: TokenVerifier("s" * 40, algorithms=["RS256"]),
        lambda: TokenVerifier("s" * 40, algorithms=["none"]),
        lambda: JwksTokenVerifier(
            JwksCache("https://idp.example/jwks", ["RS256"]), algorithms=["HS256"]
        ),
    ],
)
def test_algorithm_families_never_mix(build) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(ValueError, match="algorithm"):
        build()


@pytest.mark.parametrize(
    "url",
    ["http://idp.example/jwks", "file:///etc/passwd", "ftp://127.0.0.1/jwks", "https:///x"],
)
def test_jwks_url_must_be_https_or_loopback(url: str) -> None:
    with pytest.raises(ValueError, match="https"):
        check_jwks_url(url)


def test_settings_refuse_hmac_with_jwks(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="not usable in JWKS"):
        make_settings(tmp_path, jwks_url="https://idp.example/jwks", jwt_algorithms="HS256")


@pytest.mark.parametrize("command", [["token", "--user", "alice"]])
def test_dev_token_commands_fail_clearly_in_jwks_mode(
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
) -> None:
    from ion.entrypoints.cli.main import main

    monkeypatch.setenv("ION_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("ION_JWKS_URL", "https://idp.example/jwks.json")
    assert main(command) == 2
    assert "dev tokens exist only in secret (HS256) mode" in capsys.readouterr().err


def counting_decodes(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    decoded: list[str] = []
    decode = jwt.decode

    def counting(token: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
        decoded.append(token)
        return decode(token, *args, **kwargs)

    monkeypatch.setattr(jwt, "decode", counting)
    return decoded


def test_a_verified_token_is_reused_for_at_most_a_minute(
    verifier: JwksTokenVerifier, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    decoded = counting_decodes(monkeypatch)
    token = RSA.token(aud="ion", iss="idp")
    for _ in range(3):
        assert verifier.principal_from_header(f"Bearer {token}").user_id == "alice"
    assert len(decoded) == 1
    clock.advance(61)
    assert verifier.principal_from_header(f"Bearer {token}").user_id == "alice"
    assert len(decoded) == 2


def test_a_remembered_token_never_outlives_its_expiry(
    server: JwksServer, clock: ManualClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys = JwksCache(server.url, ["RS256"], ttl_s=600, monotonic=clock.monotonic)
    verifier = JwksTokenVerifier(
        keys, algorithms=["RS256"], audience="ion", issuer="idp", leeway_s=0,
        monotonic=clock.monotonic,
    )  # fmt: skip
    decoded = counting_decodes(monkeypatch)
    token = RSA.token(aud="ion", iss="idp", lifetime_s=5)
    verifier.principal_from_header(f"Bearer {token}")
    clock.advance(4)
    verifier.principal_from_header(f"Bearer {token}")
    assert len(decoded) == 1
    clock.advance(2)  # past `exp` on the remembered deadline: verified again
    verifier.principal_from_header(f"Bearer {token}")
    assert len(decoded) == 2


def test_a_retired_key_stops_its_remembered_tokens_within_a_minute(
    verifier: JwksTokenVerifier, server: JwksServer, clock: ManualClock
) -> None:
    token = RSA.token(aud="ion", iss="idp")
    assert verifier.principal_from_header(f"Bearer {token}").user_id == "alice"
    server.signers = [EC]  # rsa-1 is withdrawn by the provider
    clock.advance(601)  # the key set's own TTL: refreshed on the next lookup
    with pytest.raises(AuthError) as caught:
        verifier.principal_from_header(f"Bearer {token}")
    assert caught.value.code == "unknown_key"


def test_only_the_exact_token_is_remembered(verifier: JwksTokenVerifier) -> None:
    token = RSA.token(aud="ion", iss="idp")
    verifier.principal_from_header(f"Bearer {token}")
    head, payload, signature = token.split(".")
    forged = f"{head}.{payload}.{signature[:-4]}{'AAAA' if signature[-4:] != 'AAAA' else 'BBBB'}"
    with pytest.raises(AuthError) as caught:
        verifier.principal_from_header(f"Bearer {forged}")
    assert caught.value.code == "invalid_signature"
