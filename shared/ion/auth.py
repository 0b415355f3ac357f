"""Bearer-token authentication (HS256 JWTs; the JWT `sub` is the user)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime, timedelta

import jwt

from ion.errors import Unauthenticated

# User ids end up in storage keys and logs (hashed); keep them to a safe alphabet.
USER_ID_PATTERN = re.compile(r"^[A-Za-z0-9_.@:|+-]{1,128}$")


class AuthError(Unauthenticated):
    """401 with a specific code: missing_token, invalid_token, token_expired, ..."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class TokenVerifier:
    def __init__(
        self,
        secret: str,
        *,
        algorithms: Sequence[str] = ("HS256",),
        issuer: str | None = None,
        audience: str | None = None,
        leeway_s: int = 30,
    ) -> None:
        if "none" in {a.lower() for a in algorithms}:
            raise ValueError("the 'none' algorithm is never accepted")
        self._secret = secret
        self._algorithms = list(algorithms)
        self._issuer = issuer
        self._audience = audience
        self._leeway = leeway_s

    def user_from_header(self, authorization: str | None) -> str:
        if not authorization:
            raise AuthError("missing_token", "missing Authorization: Bearer <token> header")
        scheme, _, token = authorization.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("invalid_token", "Authorization header must be 'Bearer <token>'")
        return self.verify(token.strip())

    def verify(self, token: str) -> str:
        required = ["exp", "iat", "sub"]
        if self._issuer:
            required.append("iss")
        if self._audience:
            required.append("aud")
        try:
            claims = jwt.decode(
                token,
                self._secret,
                algorithms=self._algorithms,
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
        return subject


def issue_token(
    secret: str,
    user_id: str,
    *,
    now: datetime,
    ttl_s: int,
    issuer: str | None = None,
    audience: str | None = None,
) -> str:
    """A signed HS256 token for `user_id` (used by `ion token` and the tests)."""
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
    return jwt.encode(claims, secret, algorithm="HS256")
