"""Secrets adapters: environment variables (default) and Google Secret Manager.

`google.cloud.secretmanager` is imported lazily, only when a SecretManagerSecrets client is
actually created, so the package stays importable without the `gcp` extra.
"""

from __future__ import annotations

import logging
import os
import re
import secrets as pysecrets
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Final, cast

from ion.domain.token_policy import check_secret
from ion.errors import (
    ConfigurationError,
    DependencyUnavailable,
    SecretAccessDenied,
    SecretNotFound,
)
from ion.ports import Secrets
from ion.settings import Settings

log = logging.getLogger(__name__)

# Secret Manager's own id alphabet; also keeps a name from smuggling `/` into the path.
_NAME_RE: Final = re.compile(r"^[A-Za-z0-9_-]{1,255}$")
_VERSION_RE: Final = re.compile(r"^(latest|[1-9][0-9]*|[A-Za-z][A-Za-z0-9_-]{0,62})$")


def _check_name(name: str) -> None:
    if not _NAME_RE.match(name):
        raise ValueError(f"invalid secret name {name!r}: use letters, digits, '-' or '_'")


class EnvSecrets:
    """Secrets from `ION_*` environment variables: `get("jwt-secret")` reads ION_JWT_SECRET."""

    def __init__(self, environ: Mapping[str, str] = os.environ) -> None:
        self._environ = environ

    @staticmethod
    def variable_for(name: str) -> str:
        _check_name(name)
        return "ION_" + name.upper().replace("-", "_")

    def get(self, name: str) -> str:
        variable = self.variable_for(name)
        value = self._environ.get(variable)
        # An empty value is never a usable secret; treat it like a missing one.
        if not value:
            raise SecretNotFound(f"secret {name!r} not found: set the {variable} variable")
        return value


def secret_manager_client_for_endpoint(endpoint: str) -> Any:
    """A Secret Manager client over REST to `endpoint` with anonymous credentials.

    For fakes and emulators only (e.g. "http://127.0.0.1:8123"): the REST transport keeps an
    explicit http:// scheme in the endpoint, and anonymous credentials avoid any ADC lookup.
    """
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials
    from google.cloud import secretmanager

    return secretmanager.SecretManagerServiceClient(
        transport="rest",
        client_options=ClientOptions(api_endpoint=endpoint),
        credentials=cast(Any, AnonymousCredentials)(),  # google-auth leaves __init__ untyped
    )


class SecretManagerSecrets:
    """Secrets from Google Secret Manager, cached in memory.

    `get(name)` reads `projects/{project}/secrets/{prefix}{name}/versions/{version}` where
    version is `versions[name]` when pinned, else `latest`. Values are cached per
    (name, version) for `ttl_s` seconds (0 disables the cache), so a rotated `latest` is
    picked up within one TTL. Errors map to SecretNotFound, SecretAccessDenied or
    DependencyUnavailable; the value itself never appears in a message.
    """

    def __init__(
        self,
        project: str,
        *,
        prefix: str = "ion-",
        ttl_s: float = 300.0,
        versions: Mapping[str, str] | None = None,
        client: Any | None = None,
        clock: Callable[[], float] = time.monotonic,
        timeout_s: float = 10.0,
    ) -> None:
        if not project:
            raise ConfigurationError("Secret Manager needs a project (set ION_GCP_PROJECT)")
        pinned = dict(versions or {})
        for name, version in pinned.items():
            _check_name(name)
            if not _VERSION_RE.match(str(version)):
                raise ConfigurationError(f"invalid pinned version {version!r} for {name!r}")
        self._project = project
        self._prefix = prefix
        self._ttl_s = ttl_s
        self._versions = {name: str(version) for name, version in pinned.items()}
        self._client = client
        self._clock = clock
        self._timeout_s = timeout_s
        self._lock = threading.Lock()
        self._cache: dict[tuple[str, str], tuple[str, float]] = {}

    def resource_name(self, name: str) -> str:
        _check_name(name)
        version = self._versions.get(name, "latest")
        return f"projects/{self._project}/secrets/{self._prefix}{name}/versions/{version}"

    def get(self, name: str) -> str:
        resource = self.resource_name(name)
        key = (name, self._versions.get(name, "latest"))
        now = self._clock()
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and now < hit[1]:
            return hit[0]
        # Fetch outside the lock: a slow API call must not block other secrets' cache hits.
        value = self._fetch(name, key[1], resource)
        if self._ttl_s > 0:
            with self._lock:
                self._cache[key] = (value, self._clock() + self._ttl_s)
        return value

    def clear_cache(self) -> None:
        """Forget cached values (e.g. after a signature check failed with a rotated key)."""
        with self._lock:
            self._cache.clear()

    def _secret_client(self) -> Any:
        with self._lock:
            if self._client is None:
                try:
                    from google.cloud import secretmanager

                    self._client = secretmanager.SecretManagerServiceClient()
                except Exception as exc:  # e.g. no Application Default Credentials
                    raise DependencyUnavailable(
                        f"cannot create a Secret Manager client: {type(exc).__name__}: {exc}"
                    ) from exc
            return self._client

    def _retry(self) -> Any:
        from google.api_core import exceptions

        from ion.adapters.google_retry import bounded_retry

        # Bounded by our timeout: a secret lookup sits on the startup/request path.
        return bounded_retry(
            self._timeout_s, exceptions.ServiceUnavailable, exceptions.InternalServerError
        )

    def _fetch(self, name: str, version: str, resource: str) -> str:
        from google.api_core import exceptions
        from google.auth import exceptions as auth_exceptions

        secret_id = f"{self._prefix}{name}"
        where = f"secret {secret_id!r} version {version!r} in project {self._project!r}"
        client = self._secret_client()
        try:
            response = client.access_secret_version(
                name=resource, retry=self._retry(), timeout=self._timeout_s
            )
        except exceptions.NotFound as exc:
            raise SecretNotFound(f"{where} not found") from exc
        except exceptions.Forbidden as exc:  # PermissionDenied is a Forbidden
            raise SecretAccessDenied(
                f"access to secret {secret_id!r} denied in project {self._project!r} "
                "(grant roles/secretmanager.secretAccessor to the service account)"
            ) from exc
        except (exceptions.GoogleAPIError, auth_exceptions.GoogleAuthError, OSError) as exc:
            raise DependencyUnavailable(
                f"Secret Manager failed reading {where}: {type(exc).__name__}: {exc}"
            ) from exc

        payload = response.payload
        data = bytes(payload.data)
        # The API sends a CRC32C of the payload; checking it catches corruption in transit.
        if "data_crc32c" in payload and payload.data_crc32c != crc32c(data):
            raise DependencyUnavailable(f"Secret Manager returned a corrupted payload for {where}")
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ConfigurationError(f"{where} is not UTF-8 text") from exc


def _crc32c_table() -> list[int]:
    table = []
    for byte in range(256):
        crc = byte
        for _ in range(8):
            crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
        table.append(crc)
    return table


_CRC32C_TABLE: Final = _crc32c_table()


def crc32c(data: bytes) -> int:
    """CRC-32C (Castagnoli), as Secret Manager uses; pure Python is fine for secret sizes."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc = _CRC32C_TABLE[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc ^ 0xFFFFFFFF


# --- resolving the application's secrets ------------------------------------------------
# A configured value wins, then the secret store; a missing secret may be generated into
# the data dir only where `Settings.may_generate_secrets` (a laptop, the emulators).

DEV_SECRET_FILE = "dev-jwt-secret"  # noqa: S105 - a file name, not a secret
BACKUP_KEY_FILE = "backup-hmac-key"
BACKUP_KEY_MIN_CHARS = 32


def resolve_jwt_secret(settings: Settings, secrets: Secrets) -> str:
    """The HS256 secret: configured, else (embedded only) a random one kept in the data dir.

    Whatever its source, a secret under 32 bytes is refused (ConfigurationError)."""
    if settings.jwt_secret is not None:
        return check_secret(settings.jwt_secret.get_secret_value(), "ION_JWT_SECRET")
    try:
        return check_secret(secrets.get("jwt-secret"), _secret_source(settings, "jwt-secret"))
    except SecretNotFound:
        # A generated dev secret is fine on a laptop, including against the emulators;
        # a real deployment must bring its own.
        if not settings.may_generate_secrets:
            raise ConfigurationError(
                "no JWT secret: set ION_JWT_SECRET or create the Secret Manager secret"
                f" '{settings.secret_prefix}jwt-secret'"
            ) from None
    path = settings.data_dir / DEV_SECRET_FILE
    return check_secret(_dev_secret(settings.data_dir), f"the dev secret in {path}")


def resolve_previous_jwt_secret(settings: Settings, secrets: Secrets) -> str | None:
    """The secret before the last rotation, when one is configured (checked like the current)."""
    if settings.jwt_previous_secret is not None:
        return check_secret(
            settings.jwt_previous_secret.get_secret_value(), "ION_JWT_PREVIOUS_SECRET"
        )
    if settings.secrets_backend != "secretmanager":
        return None  # the env backend reads ION_JWT_PREVIOUS_SECRET: handled above
    try:
        value = secrets.get("jwt-previous-secret")
    except SecretNotFound:
        return None
    return check_secret(value, _secret_source(settings, "jwt-previous-secret"))


def _secret_source(settings: Settings, name: str) -> str:
    if settings.secrets_backend == "secretmanager":
        return f"the Secret Manager secret '{settings.secret_prefix}{name}'"
    return "ION_" + name.upper().replace("-", "_")


def resolve_backup_key(settings: Settings, secrets: Secrets) -> bytes:
    """The key that signs logical backup manifests: ION_BACKUP_HMAC_KEY, else the secret
    `<prefix>backup-hmac-key`, else (embedded or emulators) one generated in the data dir."""
    if settings.backup_hmac_key is not None:
        value = settings.backup_hmac_key.get_secret_value()
    else:
        try:
            value = secrets.get("backup-hmac-key")
        except SecretNotFound:
            if not settings.may_generate_secrets:
                raise ConfigurationError(
                    "no backup signing key: set ION_BACKUP_HMAC_KEY or create the Secret"
                    f" Manager secret '{settings.secret_prefix}backup-hmac-key'"
                ) from None
            value = _dev_secret(settings.data_dir, BACKUP_KEY_FILE, "backup signing key")
    if len(value) < BACKUP_KEY_MIN_CHARS:
        raise ConfigurationError(
            f"the backup signing key must be at least {BACKUP_KEY_MIN_CHARS} characters"
        )
    return value.encode("utf-8")


def _dev_secret(
    data_dir: Path, name: str = DEV_SECRET_FILE, what: str = "development JWT secret"
) -> str:
    data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    path = data_dir / name
    try:
        # O_EXCL: of several processes starting at once, exactly one writes the secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        raise ConfigurationError(f"{path} is empty: delete it to generate a new {what}") from None
    value = pysecrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    log.info("generated a %s in %s", what, path)
    return value


def gemini_api_key(settings: Settings, secrets: Secrets) -> str | None:
    """The Gemini API key (settings, else the secret); None in Vertex AI mode or when absent."""
    if settings.gemini_vertex:
        return None
    if settings.gemini_api_key is not None:
        return settings.gemini_api_key.get_secret_value()
    try:
        return secrets.get("gemini-api-key")
    except SecretNotFound:
        return None  # readiness reports it; chats answer 503, never crash boot
