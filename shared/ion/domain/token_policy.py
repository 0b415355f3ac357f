"""Which tokens and secrets the service accepts: algorithms per mode, JWKS URLs, secret
length. Pure rules, checked by the settings at start and by the verifiers."""

from __future__ import annotations

import urllib.parse
from collections.abc import Sequence

from ion.errors import ConfigurationError

HMAC_ALGORITHMS = frozenset({"HS256", "HS384", "HS512"})
PUBLIC_KEY_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
DEFAULT_SECRET_ALGORITHMS = ("HS256",)
DEFAULT_JWKS_ALGORITHMS = ("RS256", "ES256")
MIN_SECRET_BYTES = 32


def check_algorithms(algorithms: Sequence[str], *, jwks: bool) -> list[str]:
    """The algorithm list for a mode; ValueError for none, unknown or mixed families."""
    chosen = list(algorithms) or list(
        DEFAULT_JWKS_ALGORITHMS if jwks else DEFAULT_SECRET_ALGORITHMS
    )
    allowed = PUBLIC_KEY_ALGORITHMS if jwks else HMAC_ALGORITHMS
    for name in chosen:
        if name.lower() == "none":
            raise ValueError("the 'none' algorithm is never accepted")
        if name not in allowed:
            mode = "JWKS (public-key) mode" if jwks else "secret (HMAC) mode"
            raise ValueError(
                f"algorithm {name!r} is not usable in {mode}; choose from {sorted(allowed)}"
            )
    return chosen


def check_secret(value: str, where: str) -> str:
    """`value` when it is a usable HMAC secret; ConfigurationError (never echoing it) else."""
    size = len(value.strip().encode("utf-8"))
    if size < MIN_SECRET_BYTES:
        shown = "empty" if size == 0 else f"{size} byte{'s' if size != 1 else ''}"
        raise ConfigurationError(
            f"{where} is too short ({shown}): use at least {MIN_SECRET_BYTES} random bytes,"
            " e.g. `python -c 'import secrets; print(secrets.token_urlsafe(48))'`"
        )
    return value


def check_jwks_url(url: str) -> str:
    """https only, except http on a loopback host (tests, local identity emulators)."""
    parsed = urllib.parse.urlsplit(url)
    loopback = parsed.hostname in {"localhost", "127.0.0.1", "::1"}
    if parsed.hostname and (parsed.scheme == "https" or (parsed.scheme == "http" and loopback)):
        return url
    raise ValueError(f"JWKS URL must be https:// (http only on loopback), got {url!r}")
