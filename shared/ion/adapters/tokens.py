"""Bearer-token authentication; the JWT `sub` is the user.

Two modes, chosen by settings (`verifier_from_settings`):

- secret mode (`TokenVerifier`): HMAC (HS256 by default) with a secret from the secrets
  port; `ion token` / `ion serve` issue dev tokens in this mode only.
- JWKS mode (`JwksTokenVerifier`): RS256/ES256 tokens from an identity provider (Firebase
  Auth, Google Identity Platform, ...) verified with the public keys its JWKS URL serves.
  Keys are cached (`JwksCache`): refreshed when the cache is older than its TTL or when a
  token names an unknown `kid` (key rotation), but never more often than the minimum
  refresh interval, so spraying random `kid`s cannot make us fetch per request.

Both verify the signature, `exp`, `nbf`, `iat` (with a small leeway), `iss` and `aud`
(when configured) against a fixed algorithm list, and refuse tokens whose lifetime
(`exp - iat`) is over the configured maximum. `none` is never accepted and HMAC
algorithms never mix with public keys (no algorithm confusion). Failures are `AuthError`s
(401) whose code says what was wrong, never how the key looks.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import jwt

from ion.domain.token_policy import (
    DEFAULT_JWKS_ALGORITHMS,
    DEFAULT_SECRET_ALGORITHMS,
    HMAC_ALGORITHMS,
    check_algorithms,
    check_jwks_url,
    check_secret,
)
from ion.errors import ConfigurationError, DependencyUnavailable, Unauthenticated
from ion.settings import Settings

log = logging.getLogger(__name__)

# User ids end up in storage keys and logs (hashed); keep them to a safe alphabet.
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.@:|+-]{1,128}$")

_MAX_JWKS_BYTES = 256 * 1024
# RFC 7518 3.2: an HS256 key must be at least as long as the hash output (256 bits).


@dataclass(frozen=True)
class Principal:
    """Who a verified token speaks for: the user (`sub`) and the roles its role claim names."""

    user_id: str
    roles: frozenset[str] = frozenset()

    def has_role(self, role: str) -> bool:
        return role in self.roles


def roles_from_claim(value: Any) -> frozenset[str]:
    """A role claim as a set: a string, or a list of strings (others are ignored: a token
    whose claim has another shape simply holds no role)."""
    if isinstance(value, str):
        return frozenset({value})
    if isinstance(value, list):
        return frozenset(item for item in value if isinstance(item, str))
    return frozenset()


class AuthError(Unauthenticated):
    """401 with a specific code: missing_token, invalid_token, token_expired, ..."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


#: Verified tokens kept per instance, and for how long at most (seconds).
VERIFIED_TOKENS = 4096
VERIFIED_TTL_S = 60.0


class _Verifier:
    """Header parsing, claim checks and error mapping shared by both modes."""

    mode = "?"

    def __init__(
        self,
        algorithms: list[str],
        *,
        issuer: str | None,
        audience: str | None,
        leeway_s: int,
        max_lifetime_s: int = 0,
        role_claim: str = "ion_role",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._algorithms = algorithms
        self._monotonic = monotonic
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s
        self._max_lifetime = max_lifetime_s
        self._role_claim = role_claim
        # token -> (principal, monotonic deadline): a learner sends the same token with
        # every request, and verifying its signature and claims is most of auth's cost.
        self._verified: dict[str, tuple[Principal, float]] = {}

    @property
    def algorithms(self) -> list[str]:
        return list(self._algorithms)

    def describe(self) -> str:
        return f"{self.mode} mode, algorithms {','.join(self._algorithms)}"

    def user_from_header(self, authorization: str | None) -> str:
        return self.principal_from_header(authorization).user_id

    def principal_from_header(self, authorization: str | None) -> Principal:
        if not authorization:
            raise AuthError("missing_token", "missing Authorization: Bearer <token> header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("invalid_token", "Authorization header must be 'Bearer <token>'")
        return self._remembered(token.strip())

    def _remembered(self, token: str) -> Principal:
        """`principal(token)`, reusing a verification of the same token string made less
        than `VERIFIED_TTL_S` ago and before the token's own expiry (leeway included). The
        key is the whole token, signature included, so nothing else can match it; the short
        lifetime bounds how long a key removed from the JWKS keeps its tokens valid."""
        entry = self._verified.get(token)
        if entry is not None and self._monotonic() < entry[1]:
            return entry[0]
        return self.principal(token)

    def _remember(self, token: str, principal: Principal, claims: dict[str, Any]) -> None:
        remaining = float(claims["exp"]) + self._leeway - time.time()
        if remaining <= 0:
            return
        if len(self._verified) >= VERIFIED_TOKENS:
            self._verified.clear()  # simple and bounded; a miss costs one verification
        self._verified[token] = (principal, self._monotonic() + min(remaining, VERIFIED_TTL_S))

    def verify(self, token: str) -> str:
        return self.principal(token).user_id

    def principal(self, token: str) -> Principal:
        raise NotImplementedError

    def _header(self, token: str) -> dict[str, Any]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is malformed") from None
        algorithm = header.get("alg")
        if not isinstance(algorithm, str) or algorithm not in self._algorithms:
            raise AuthError("invalid_algorithm", "the token's algorithm is not accepted")
        return header

    def _decode(self, token: str, key: Any, algorithms: list[str]) -> Principal:
        required = ["exp", "iat", "sub"]
        if self._issuer:
            required.append("iss")
        if self._audience:
            required.append("aud")
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=algorithms,
                issuer=self._issuer,
                audience=self._audience,
                leeway=self._leeway,
                options={"require": required, "verify_aud": self._audience is not None},
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("token_expired", "the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("token_not_yet_valid", "the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise AuthError("invalid_audience", "the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("invalid_issuer", "the token comes from an unexpected issuer") from None
        except jwt.InvalidSignatureError:
            raise AuthError("invalid_signature", "the token signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("invalid_token", f"the token lacks the '{exc.claim}' claim") from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("invalid_algorithm", "the token's algorithm is not accepted") from None
        except jwt.PyJWTError:
            raise AuthError("invalid_token", "the token is malformed") from None
        subject = claims.get("sub")
        if not isinstance(subject, str) or not USER_ID_PATTERN.match(subject):
            raise AuthError("invalid_token", "the token's 'sub' is not a valid user id")
        if self._max_lifetime:
            # `iat` is required above; PyJWT has checked both are numbers.
            lifetime = float(claims["exp"]) - float(claims["iat"])
            if lifetime > self._max_lifetime:
                raise AuthError(
                    "token_lifetime_too_long",
                    f"the token is valid for longer than {self._max_lifetime} seconds",
                )
        principal = Principal(subject, roles_from_claim(claims.get(self._role_claim)))
        self._remember(token, principal, claims)
        return principal


class TokenVerifier(_Verifier):
    """Secret (HMAC) mode: the current secret, and optionally the previous one, so a secret
    can be rotated without logging everyone out (tokens are issued with the current one)."""

    mode = "secret"

    def __init__(
        self,
        secret: str,
        *,
        previous_secret: str | None = None,
        algorithms: Sequence[str] = DEFAULT_SECRET_ALGORITHMS,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = 30,
        max_lifetime_s: int = 0,
        role_claim: str = "ion_role",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            check_algorithms(algorithms, jwks=False),
            issuer=issuer,
            audience=audience,
            leeway_s=leeway_s,
            max_lifetime_s=max_lifetime_s,
            role_claim=role_claim,
            monotonic=monotonic,
        )
        self._secrets = [check_secret(secret, "the JWT secret")]
        if previous_secret is not None:
            self._secrets.append(check_secret(previous_secret, "the previous JWT secret"))

    def describe(self) -> str:
        rotation = ", previous secret accepted" if len(self._secrets) > 1 else ""
        return super().describe() + rotation

    def principal(self, token: str) -> Principal:
        self._header(token)
        for index, secret in enumerate(self._secrets):
            try:
                return self._decode(token, secret, self._algorithms)
            except AuthError as exc:
                if exc.code != "invalid_signature" or index == len(self._secrets) - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover


Fetcher = Callable[[str, float], bytes]


def fetch_url(url: str, timeout_s: float) -> bytes:
    """GET `url` (https, or http on loopback only: checked by `check_jwks_url`)."""
    check_jwks_url(url)  # https (or loopback http) only: never file: or custom schemes
    request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
    with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310  # nosec B310
        data: bytes = response.read(_MAX_JWKS_BYTES + 1)
    if len(data) > _MAX_JWKS_BYTES:
        raise ValueError("JWKS document too large")
    return data


class JwksCache:
    """The signing keys of a JWKS URL by `kid`, cached and refreshed sparingly.

    Refreshes when the keys are older than `ttl_s`, or on an unknown `kid` (rotation), in
    both cases at most once per `min_refresh_interval_s`. When a refresh fails, keys
    already known stay in use; with no key at all the caller gets DependencyUnavailable.
    """

    def __init__(
        self,
        url: str,
        algorithms: Sequence[str],
        *,
        ttl_s: float = 3600.0,
        min_refresh_interval_s: float = 30.0,
        timeout_s: float = 5.0,
        fetcher: Fetcher = fetch_url,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.url = check_jwks_url(url)
        self._algorithms = set(algorithms)
        self._ttl = ttl_s
        self._min_interval = min_refresh_interval_s
        self._timeout = timeout_s
        self._fetcher = fetcher
        self._monotonic = monotonic
        self._lock = threading.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._fetched_at: float | None = None  # last successful fetch
        self._attempted_at: float | None = None  # last attempt, successful or not
        self.fetches = 0

    @property
    def size(self) -> int:
        return len(self._keys)

    def key(self, kid: str) -> jwt.PyJWK:
        with self._lock:
            now = self._monotonic()
            stale = self._fetched_at is None or now - self._fetched_at >= self._ttl
            if (stale or kid not in self._keys) and self._may_refresh(now):
                self._refresh(now)
            found = self._keys.get(kid)
            if found is not None:
                return found
            if not self._keys:
                raise DependencyUnavailable(
                    "the identity provider's signing keys are unavailable", retry_after_s=5
                )
        raise AuthError("unknown_key", "the token's key id (kid) is not a current signing key")

    def _may_refresh(self, now: float) -> bool:
        return self._attempted_at is None or now - self._attempted_at >= self._min_interval

    def _refresh(self, now: float) -> None:
        self._attempted_at = now
        self.fetches += 1
        try:
            document = json.loads(self._fetcher(self.url, self._timeout))
            keys = self._parse(document)
        except (OSError, ValueError, urllib.error.URLError, jwt.PyJWTError) as exc:
            log.warning("fetching JWKS from %s failed: %s", self.url, type(exc).__name__)
            return
        self._keys = keys
        self._fetched_at = now

    def _parse(self, document: Any) -> dict[str, jwt.PyJWK]:
        if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
            raise ValueError("not a JWKS document")
        keys: dict[str, jwt.PyJWK] = {}
        for entry in document["keys"]:
            if not isinstance(entry, dict) or not isinstance(entry.get("kid"), str):
                continue
            if entry.get("use", "sig") != "sig" or entry.get("kty") == "oct":
                continue  # encryption keys and shared secrets never verify our tokens
            try:
                key = jwt.PyJWK(entry)
            except jwt.PyJWTError:
                continue  # a key type this PyJWT cannot use; others may still be fine
            if key.algorithm_name in self._algorithms:
                keys[entry["kid"]] = key
        if not keys:
            raise ValueError("the JWKS holds no usable signing key")
        return keys


class JwksTokenVerifier(_Verifier):
    """JWKS (public-key) mode."""

    mode = "jwks"

    def __init__(
        self,
        keys: JwksCache,
        *,
        algorithms: Sequence[str] = DEFAULT_JWKS_ALGORITHMS,
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = 30,
        max_lifetime_s: int = 0,
        role_claim: str = "ion_role",
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(
            check_algorithms(algorithms, jwks=True),
            issuer=issuer,
            audience=audience,
            leeway_s=leeway_s,
            max_lifetime_s=max_lifetime_s,
            role_claim=role_claim,
            monotonic=monotonic,
        )
        self._keys = keys

    def describe(self) -> str:
        return f"{super().describe()}, {self._keys.size} keys cached from {self._keys.url}"

    def principal(self, token: str) -> Principal:
        header = self._header(token)
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise AuthError("invalid_token", "the token has no key id (kid) header")
        key = self._keys.key(kid)
        if key.algorithm_name != header["alg"]:
            raise AuthError("invalid_algorithm", "the token's algorithm does not match its key")
        return self._decode(token, key, [header["alg"]])


def issue_token(
    secret: str,
    user_id: str,
    *,
    now: datetime,
    ttl_s: int,
    issuer: str | None = None,
    audience: str | None = None,
    algorithm: str = "HS256",
    role: tuple[str, str] | None = None,
) -> str:
    """A signed HMAC token for `user_id` (used by `ion token` and the tests)."""
    if algorithm not in HMAC_ALGORITHMS:
        raise ValueError(f"dev tokens are HMAC-signed; {algorithm!r} is not an HMAC algorithm")
    if not USER_ID_PATTERN.match(user_id):
        raise ValueError(f"invalid user id {user_id!r}: use letters, digits and _.@:|+-")
    claims: dict[str, object] = {
        "sub": user_id,
        "iat": int(now.timestamp()),
        "exp": int((now + timedelta(seconds=ttl_s)).timestamp()),
    }
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    if role is not None:
        claim, value = role  # e.g. ("ion_role", "operator") for an operator's dev token
        if claim in claims or claim in {"iss", "aud", "nbf"}:
            raise ValueError(f"{claim!r} is a registered claim, not a role claim")
        claims[claim] = value
    return jwt.encode(claims, secret, algorithm=algorithm)


def verifier_from_settings(
    settings: Settings, jwt_secret: str | None, previous_secret: str | None = None
) -> TokenVerifier | JwksTokenVerifier:
    """JWKS mode when ION_JWKS_URL is set, else secret mode; the algorithms fixed by settings.

    On the gcp backend (production) tokens must name their issuer and audience."""
    algorithms = settings.effective_jwt_algorithms()
    if settings.tokens_must_name_audience:
        missing = [
            name
            for name, value in (
                ("ION_JWT_ISSUER", settings.jwt_issuer),
                ("ION_JWT_AUDIENCE", settings.jwt_audience),
            )
            if not value
        ]
        if missing:
            raise ConfigurationError(
                f"ION_BACKEND=gcp needs {' and '.join(missing)}: tokens must name who issued"
                " them and for whom (e.g. ION_JWT_ISSUER=https://auth.example.com"
                " ION_JWT_AUDIENCE=ion-mentoring)"
            )
    max_lifetime = settings.jwt_max_lifetime_s
    if jwt_secret is not None and max_lifetime and settings.dev_token_ttl_s > max_lifetime:
        raise ConfigurationError(
            f"ION_DEV_TOKEN_TTL_S ({settings.dev_token_ttl_s}) is longer than"
            f" ION_JWT_MAX_LIFETIME_S ({max_lifetime}): dev tokens would be refused"
        )
    if settings.jwks_url:
        keys = JwksCache(
            settings.jwks_url,
            algorithms,
            ttl_s=settings.jwks_cache_ttl_s,
            min_refresh_interval_s=settings.jwks_min_refresh_s,
        )
        return JwksTokenVerifier(
            keys,
            algorithms=algorithms,
            issuer=settings.jwt_issuer,
            audience=settings.jwt_audience,
            leeway_s=settings.jwt_leeway_s,
            max_lifetime_s=max_lifetime,
            role_claim=settings.operator_claim,
        )
    if jwt_secret is None:
        raise ConfigurationError("secret mode needs a JWT secret")
    return TokenVerifier(
        jwt_secret,
        previous_secret=previous_secret,
        algorithms=algorithms,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
        max_lifetime_s=max_lifetime,
        role_claim=settings.operator_claim,
    )
