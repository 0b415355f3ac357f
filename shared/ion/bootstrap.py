"""The composition root: builds the application from settings, lazily, once per instance.

Heavy imports (Google clients, google-genai) happen here only for the backend or provider
that the settings choose, and only when `get_app()` is first called, not at import time.
"""

from __future__ import annotations

import logging
import os
import secrets as pysecrets
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ion.auth import TokenVerifier, issue_token
from ion.domain.chat import ChatService
from ion.domain.personas import PersonaCatalog, load_catalog
from ion.domain.routing import Router
from ion.errors import ConfigurationError, SecretNotFound
from ion.ports import Clock, ConversationStore, EventPublisher, LanguageModel, Secrets
from ion.settings import Settings

log = logging.getLogger(__name__)

DEV_SECRET_FILE = "dev-jwt-secret"  # noqa: S105 - a file name, not a secret


@dataclass
class App:
    """The wired application one function instance serves."""

    settings: Settings
    store: ConversationStore
    llm: LanguageModel
    secrets: Secrets
    events: EventPublisher
    clock: Clock
    catalog: PersonaCatalog
    router: Router
    chat: ChatService
    verifier: TokenVerifier
    jwt_secret: str = field(repr=False)
    extras: dict[str, Any] = field(default_factory=dict)

    def dev_token(self, user_id: str) -> str:
        return issue_token(
            self.jwt_secret,
            user_id,
            now=self.clock.now(),
            ttl_s=self.settings.dev_token_ttl_s,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
        )


def build_store(settings: Settings) -> Any:
    if settings.backend == "gcp":
        from ion.adapters.firestore import FirestoreStore

        return FirestoreStore.from_settings(
            project=settings.gcp_project, database=settings.firestore_database
        )
    from ion.adapters.sqlite import SqliteStore

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    return SqliteStore(settings.data_dir / "ion.sqlite3")


def build_secrets(settings: Settings) -> Secrets:
    if settings.secrets_backend == "secretmanager":
        from ion.adapters.secrets import SecretManagerSecrets

        if not settings.gcp_project:
            raise ConfigurationError("ION_SECRETS_BACKEND=secretmanager needs ION_GCP_PROJECT")
        return SecretManagerSecrets(
            settings.gcp_project, prefix=settings.secret_prefix, ttl_s=settings.secret_cache_ttl_s
        )
    from ion.adapters.secrets import EnvSecrets

    return EnvSecrets()


def resolve_jwt_secret(settings: Settings, secrets: Secrets) -> str:
    """The HS256 secret: configured, else (embedded only) a random one kept in the data dir."""
    if settings.jwt_secret is not None:
        return settings.jwt_secret.get_secret_value()
    try:
        return secrets.get("jwt-secret")
    except SecretNotFound:
        # A generated dev secret is fine on a laptop, including against the emulators;
        # a real deployment must bring its own.
        on_emulator = bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))
        if settings.backend != "embedded" and not on_emulator:
            raise ConfigurationError(
                "no JWT secret: set ION_JWT_SECRET or create the Secret Manager secret"
                f" '{settings.secret_prefix}jwt-secret'"
            ) from None
    return _dev_secret(settings.data_dir)


def _dev_secret(data_dir: Path) -> str:
    data_dir.mkdir(parents=True, exist_ok=True)
    path = data_dir / DEV_SECRET_FILE
    try:
        # O_EXCL: of several processes starting at once, exactly one writes the secret.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        value = path.read_text(encoding="ascii").strip()
        if value:
            return value
        raise ConfigurationError(
            f"{path} is empty: delete it to generate a new dev secret"
        ) from None
    value = pysecrets.token_urlsafe(48)
    with os.fdopen(fd, "w", encoding="ascii") as handle:
        handle.write(value + "\n")
    log.info("generated a development JWT secret in %s", path)
    return value


def build_llm(settings: Settings, secrets: Secrets) -> LanguageModel:
    if settings.llm_provider == "gemini":
        from ion.adapters.gemini import GeminiLanguageModel

        api_key: str | None = None
        if not settings.gemini_vertex:
            if settings.gemini_api_key is not None:
                api_key = settings.gemini_api_key.get_secret_value()
            else:
                try:
                    api_key = secrets.get("gemini-api-key")
                except SecretNotFound:
                    api_key = None  # readiness reports it; chats answer 503, never crash boot
        return GeminiLanguageModel.from_settings(settings, api_key)
    from ion.adapters.offline import OfflineLanguageModel

    return OfflineLanguageModel()


def build_events(settings: Settings, store: Any, clock: Clock) -> EventPublisher:
    from ion.adapters.outbox import InProcessTransport, ReliablePublisher

    transport: Any
    if settings.backend == "gcp":
        from ion.adapters.pubsub import PubSubTransport

        if not settings.gcp_project:
            raise ConfigurationError("ION_BACKEND=gcp needs ION_GCP_PROJECT")
        # A short timeout: during a Pub/Sub outage the event goes to the outbox quickly
        # instead of holding the learner's reply.
        transport = PubSubTransport(settings.gcp_project, settings.events_topic, timeout_s=2.0)
    else:
        transport = InProcessTransport()
    return ReliablePublisher(transport, store, clock)


def build_app(settings: Settings | None = None) -> App:
    from ion.adapters.clock import SystemClock

    settings = settings or Settings()
    if settings.backend == "gcp" and not settings.gcp_project:
        raise ConfigurationError("ION_BACKEND=gcp needs ION_GCP_PROJECT")
    clock = SystemClock()
    store = build_store(settings)
    secrets = build_secrets(settings)
    jwt_secret = resolve_jwt_secret(settings, secrets)
    llm = build_llm(settings, secrets)
    events = build_events(settings, store, clock)
    catalog = load_catalog()
    router = Router(catalog)
    chat = ChatService(
        store=store,
        llm=llm,
        router=router,
        catalog=catalog,
        events=events,
        clock=clock,
        history_window=settings.history_window,
        max_output_tokens=settings.gemini_max_output_tokens,
    )
    verifier = TokenVerifier(
        jwt_secret,
        issuer=settings.jwt_issuer,
        audience=settings.jwt_audience,
        leeway_s=settings.jwt_leeway_s,
    )
    return App(
        settings=settings,
        store=store,
        llm=llm,
        secrets=secrets,
        events=events,
        clock=clock,
        catalog=catalog,
        router=router,
        chat=chat,
        verifier=verifier,
        jwt_secret=jwt_secret,
    )


_lock = threading.Lock()
_app: App | None = None


def get_app() -> App:
    """The instance's app, built on first use (thread-safe), then reused."""
    global _app
    if _app is None:
        with _lock:
            if _app is None:
                _app = build_app()
    return _app


def set_app(app: App | None) -> None:
    """Install (or clear, with None) the instance's app; used by `ion serve` and the tests."""
    global _app
    with _lock:
        _app = app
