"""The composition root: builds the application from settings, lazily, once per instance.

Heavy imports (Google clients, google-genai) happen here only for the backend or provider
that the settings choose, and only when `get_app()` is first called, not at import time.
"""

from __future__ import annotations

import importlib
import logging
import os
import secrets as pysecrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any, Generic, TypeVar

from ion.adapters.logging import configure_logging
from ion.adapters.tokens import (
    JwksCache,
    JwksTokenVerifier,
    TokenVerifier,
    check_secret,
    issue_token,
)
from ion.domain.crisis import load_policy
from ion.domain.personas import PersonaCatalog, load_catalog
from ion.domain.routing import MessageRouter, Router
from ion.domain.safety import CrisisDetector, load_rules
from ion.domain.semantic import SemanticLayer, artifact_path, load_artifact
from ion.errors import ConfigurationError, SecretNotFound
from ion.ports import (
    Clock,
    ConversationStore,
    DisagreementStore,
    EventPublisher,
    IdempotencyStore,
    LanguageModel,
    LearningStore,
    QuotaStore,
    Secrets,
    SentenceEmbedder,
)
from ion.services.chat import ChatService
from ion.services.feedback import FeedbackService
from ion.services.learning import LearnedRouter
from ion.services.quota import QuotaGuard, QuotaLimits
from ion.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")

DEV_SECRET_FILE = "dev-jwt-secret"  # noqa: S105 - a file name, not a secret
BACKUP_KEY_FILE = "backup-hmac-key"
BACKUP_KEY_MIN_CHARS = 32


def require_extra(module: str, extra: str, what: str) -> None:
    """ConfigurationError naming the extra to install when `module` cannot be imported.

    The package installs without its Google extras; asking for a backend, secrets or LLM
    provider they provide must say what to install, not end in a ModuleNotFoundError."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise ConfigurationError(
            f"{what} needs the '{extra}' extra, which is not installed:"
            f" pip install 'ion-mentoring[{extra}]'"
        ) from None


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
    router: MessageRouter  # the local router, wrapped by the judge when it is on
    chat: ChatService
    verifier: TokenVerifier | JwksTokenVerifier
    quota: QuotaGuard
    jwt_secret: str | None = field(repr=False)  # None in JWKS mode
    extras: dict[str, Any] = field(default_factory=dict)
    # Idempotency-Key claims (the conversation store implements it on both backends).
    idempotency: IdempotencyStore | None = None
    # Feedback, routing statistics, event dedupe and the backup catalog (issue 6).
    learning: LearningStore | None = None
    feedback: FeedbackService | None = None
    # Whether routing runs with its learned semantic layer (reported by /ready).
    routing_status: SemanticStatus = field(
        default_factory=lambda: SemanticStatus(False, "lexicon router only")
    )
    # Whether crisis detection runs with its trained head (rules always run).
    safety_status: SemanticStatus = field(
        default_factory=lambda: SemanticStatus(False, "crisis rules only")
    )

    def dev_token(self, user_id: str) -> str:
        if self.jwt_secret is None:
            raise ConfigurationError(
                "dev tokens exist only in secret (HS256) mode; with ION_JWKS_URL set, get"
                " tokens from your identity provider"
            )
        return issue_token(
            self.jwt_secret,
            user_id,
            now=self.clock.now(),
            ttl_s=self.settings.dev_token_ttl_s,
            issuer=self.settings.jwt_issuer,
            audience=self.settings.jwt_audience,
            algorithm=self.verifier.algorithms[0],
        )


@dataclass(frozen=True)
class SemanticStatus:
    """Whether the learned semantic layer is on; `detail` says why not (for /ready)."""

    ok: bool
    detail: str


@lru_cache(maxsize=1)
def load_embedder() -> tuple[SentenceEmbedder | None, SemanticStatus]:
    """The sentence-embedding model, loaded once per instance; None (and why) when it fails.

    One per process (the model is read-only and thread-safe), so an app rebuilt in the same
    process, as the CLI and tests do, does not load it again.

    A missing or broken model must not take the service down: routing falls back to the
    lexicons, safety to its rules, `/ready` reports the degradation and an ERROR log says
    why, and learners keep getting answers.
    """
    try:
        from ion.adapters.embeddings import UseEmbedder

        embedder = UseEmbedder()
    except Exception as exc:
        log.error("embedding model unavailable, routing falls back to the lexicons: %s", exc)
        return None, SemanticStatus(False, f"embedding model unavailable: {exc}"[:200])
    return embedder, SemanticStatus(True, embedder.name)


def load_semantic_layer(
    embedder: SentenceEmbedder | None, task: str
) -> tuple[SemanticLayer | None, SemanticStatus]:
    """The trained head for `task` on `embedder`; None (and why) when it cannot be used."""
    if embedder is None:
        return None, SemanticStatus(False, "no embedding model")
    try:
        layer = SemanticLayer(embedder, load_artifact(artifact_path(task)))
    except ConfigurationError as exc:
        log.error("%s head unavailable, falling back: %s", task, exc.message)
        return None, SemanticStatus(False, exc.message[:200])
    return layer, SemanticStatus(True, f"{embedder.name} + {task} head")


def build_router(
    catalog: PersonaCatalog, embedder: SentenceEmbedder | None
) -> tuple[Router, SemanticStatus]:
    """The local router chat uses (lexicons + semantic head), without feedback or judge."""
    semantic, status = load_semantic_layer(embedder, "routing")
    return Router(catalog, semantic), status


def build_judged_router(
    settings: Settings,
    secrets: Secrets,
    local: MessageRouter,
    *,
    learning: DisagreementStore | None,
    clock: Clock,
) -> MessageRouter:
    """`local` as is, or wrapped by the LLM routing judge when ION_ROUTING_JUDGE=gemini."""
    if settings.routing_judge == "off":
        return local
    from ion.adapters.gemini_judge import GeminiRoutingJudge
    from ion.domain.judge import JudgedRouter, judge_instructions

    judge = GeminiRoutingJudge.from_settings(
        settings,
        api_key=gemini_api_key(settings, secrets),
        persona_ids=local.catalog.ids,
        instructions=judge_instructions(local.catalog),
    )
    log.info(
        "routing judge on: %s below confidence %.2f",
        settings.routing_judge_model,
        settings.routing_judge_threshold,
    )
    return JudgedRouter(
        local,
        judge,
        threshold=settings.routing_judge_threshold,
        turns=settings.routing_judge_turns,
        cache_size=settings.routing_judge_cache_size,
        disagreements=learning,
        clock=clock,
        retention_days=settings.routing_disagreement_ttl_days,
    )


def build_detector(embedder: SentenceEmbedder | None) -> tuple[CrisisDetector, SemanticStatus]:
    """The crisis detector: rules always, the trained head when the model is there."""
    semantic, status = load_semantic_layer(embedder, "safety")
    return CrisisDetector(load_rules(), semantic), status


def build_store(settings: Settings) -> Any:
    if settings.backend == "gcp":
        require_extra("google.cloud.firestore", "gcp", "ION_BACKEND=gcp (Firestore)")
        from ion.adapters.firestore.conversations import FirestoreStore

        return FirestoreStore.from_settings(
            project=settings.gcp_project,
            database=settings.firestore_database,
            timeout_s=settings.store_timeout_s,
        )
    from ion.adapters.sqlite.conversations import SqliteStore

    settings.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    return SqliteStore(settings.data_dir / "ion.sqlite3")


def build_secrets(settings: Settings) -> Secrets:
    if settings.secrets_backend == "secretmanager":
        require_extra(
            "google.cloud.secretmanager",
            "gcp",
            "ION_SECRETS_BACKEND=secretmanager (Secret Manager)",
        )
        from ion.adapters.secrets import SecretManagerSecrets

        if not settings.gcp_project:
            raise ConfigurationError("ION_SECRETS_BACKEND=secretmanager needs ION_GCP_PROJECT")
        return SecretManagerSecrets(
            settings.gcp_project, prefix=settings.secret_prefix, ttl_s=settings.secret_cache_ttl_s
        )
    from ion.adapters.secrets import EnvSecrets

    return EnvSecrets()


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
        on_emulator = bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))
        if settings.backend != "embedded" and not on_emulator:
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


def resolve_backup_key(settings: Settings, secrets: Secrets | None = None) -> bytes:
    """The key that signs logical backup manifests: ION_BACKUP_HMAC_KEY, else the secret
    `<prefix>backup-hmac-key`, else (embedded or emulators) one generated in the data dir."""
    if settings.backup_hmac_key is not None:
        value = settings.backup_hmac_key.get_secret_value()
    else:
        try:
            value = (secrets or build_secrets(settings)).get("backup-hmac-key")
        except SecretNotFound:
            on_emulator = bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))
            if settings.backend != "embedded" and not on_emulator:
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


def build_llm(settings: Settings, secrets: Secrets) -> LanguageModel:
    if settings.llm_provider == "gemini":
        from ion.adapters.gemini import GeminiLanguageModel

        return GeminiLanguageModel.from_settings(settings, gemini_api_key(settings, secrets))
    from ion.adapters.offline import OfflineLanguageModel

    return OfflineLanguageModel()


def build_events(settings: Settings, store: Any, clock: Clock) -> EventPublisher:
    from ion.adapters.outbox import InProcessTransport, ReliablePublisher

    transport: Any
    if settings.backend == "gcp":
        require_extra("google.cloud.pubsub_v1", "gcp", "ION_BACKEND=gcp (Pub/Sub events)")
        from ion.adapters.pubsub import PubSubTransport

        if not settings.gcp_project:
            raise ConfigurationError("ION_BACKEND=gcp needs ION_GCP_PROJECT")
        # A short timeout: during a Pub/Sub outage the event goes to the outbox quickly
        # instead of holding the learner's reply.
        transport = PubSubTransport(settings.gcp_project, settings.events_topic, timeout_s=2.0)
    else:
        transport = InProcessTransport()
    return ReliablePublisher(transport, store, clock)


def build_verifier(
    settings: Settings, jwt_secret: str | None, previous_secret: str | None = None
) -> TokenVerifier | JwksTokenVerifier:
    """JWKS mode when ION_JWKS_URL is set, else secret mode; the algorithms fixed by settings.

    On the gcp backend (production) tokens must name their issuer and audience."""
    algorithms = settings.effective_jwt_algorithms()
    if settings.backend == "gcp":
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
    )


def build_quota_store(settings: Settings, store: Any) -> QuotaStore:
    """Rate-limit and budget counters live next to the conversations (same database)."""
    if settings.backend == "gcp":
        from ion.adapters.firestore.quota import FirestoreQuotaStore

        return FirestoreQuotaStore(store.client)
    from ion.adapters.sqlite.quota import SqliteQuotaStore

    return SqliteQuotaStore(store.database)  # the store's connections, one set per file


def build_learning_store(settings: Settings, store: Any) -> LearningStore:
    """Feedback, routing statistics, event dedupe and the backup catalog, next to the
    conversations (same SQLite file / Firestore database)."""
    if settings.backend == "gcp":
        from ion.adapters.firestore.records import FirestoreLearningStore

        return FirestoreLearningStore(store.client, dedupe_days=settings.event_dedupe_days)
    from ion.adapters.sqlite.records import SqliteLearningStore

    return SqliteLearningStore(store.database, dedupe_days=settings.event_dedupe_days)


def subscribe_learning(events: EventPublisher, learning: LearningStore, clock: Clock) -> None:
    """Embedded backend: the in-process transport feeds the routing statistics directly
    (on gcp the `persona_events` function consumes the Pub/Sub topic instead)."""
    from ion.adapters.outbox import InProcessTransport
    from ion.entrypoints.events import subscriber

    transport = getattr(events, "transport", None)
    if isinstance(transport, InProcessTransport):
        transport.subscribe(subscriber(learning, clock))


@dataclass
class Worker:
    """What the Pub/Sub-triggered functions (persona_events, backup) need: storage only.

    Built without the LLM, secrets or token verification, so those functions start fast
    and need no JWT secret or model configuration.
    """

    settings: Settings
    store: Any
    learning: LearningStore
    clock: Clock


def build_worker(settings: Settings | None = None) -> Worker:
    from ion.adapters.clock import SystemClock

    settings = settings or Settings()
    if settings.backend == "gcp" and not settings.gcp_project:
        raise ConfigurationError("ION_BACKEND=gcp needs ION_GCP_PROJECT")
    store = build_store(settings)
    return Worker(settings, store, build_learning_store(settings, store), SystemClock())


def get_worker() -> Worker:
    """The instance's worker (event consumers, backups), built on first use, then reused."""
    return _worker.get()


def set_worker(worker: Worker | None) -> None:
    _worker.set(worker)


def build_backup_runner(worker: Worker) -> Any:
    """The scheduled backup (the `backup` function, `ion backup run`), per ION_BACKUP_MODE."""
    from ion.services.backup import BackupRunner, LogicalExportTarget

    settings, store = worker.settings, worker.store
    mode = settings.backup_mode
    if mode == "auto":
        mode = "firestore-export" if settings.backend == "gcp" else "sqlite-snapshot"
    target: Any
    if mode == "firestore-export":
        require_extra("google.cloud.firestore_admin_v1", "gcp", "ION_BACKUP_MODE=firestore-export")
        from ion.adapters.firestore.backup import (
            GoogleFirestoreAdmin,
            ManagedExportTarget,
            root_collections,
        )

        if settings.backend != "gcp" or not settings.gcp_project:
            raise ConfigurationError("ION_BACKUP_MODE=firestore-export needs ION_BACKEND=gcp")
        target = ManagedExportTarget(
            GoogleFirestoreAdmin(),
            project=settings.gcp_project,
            database=settings.firestore_database,
            bucket=settings.backup_bucket or "",
            prefix=settings.backup_prefix,
            list_collections=lambda: root_collections(store.client),
        )
    elif mode == "sqlite-snapshot":
        from ion.adapters.sqlite.backup import SqliteSnapshotTarget

        if settings.backend != "embedded":
            raise ConfigurationError("ION_BACKUP_MODE=sqlite-snapshot needs ION_BACKEND=embedded")
        target = SqliteSnapshotTarget(
            store.path, backup_directory(settings), settings.backup_retention_days
        )
    else:
        target = LogicalExportTarget(
            backup_directory(settings),
            logical_exporter(settings, store, resolve_backup_key(settings)),
            settings.backup_retention_days,
        )
    return BackupRunner(
        target=target,
        catalog=worker.learning,
        dedupe=worker.learning,
        clock=worker.clock,
        retention_days=settings.backup_retention_days,
    )


def backup_directory(settings: Settings) -> Path:
    return (settings.backup_dir or settings.data_dir / "backups").expanduser().resolve()


def logical_exporter(settings: Settings, store: Any, key: bytes) -> Any:
    """`export(directory) -> Manifest` for the configured backend (ion backup export),
    signing the manifest with `key`."""
    if settings.backend == "gcp":
        from ion.adapters.firestore.backup import export_firestore

        return lambda directory: export_firestore(store.client, directory, key=key)
    from ion.adapters.sqlite.backup import export_sqlite

    return lambda directory: export_sqlite(store.path, directory, key=key)


def quota_limits(settings: Settings) -> QuotaLimits:
    return QuotaLimits(
        chat_per_minute=settings.rate_limit_per_minute,
        api_per_minute=settings.api_rate_limit_per_minute,
        daily_tokens=settings.daily_token_budget,
    )


def build_app(settings: Settings | None = None) -> App:
    from ion.adapters.clock import SystemClock

    settings = settings or Settings()
    if settings.backend == "gcp" and not settings.gcp_project:
        raise ConfigurationError("ION_BACKEND=gcp needs ION_GCP_PROJECT")
    clock = SystemClock()
    secrets = build_secrets(settings)
    # JWKS mode needs no secret (and has none to hand out as dev tokens).
    jwt_secret = None if settings.jwks_url else resolve_jwt_secret(settings, secrets)
    previous_secret = None if settings.jwks_url else resolve_previous_jwt_secret(settings, secrets)
    # Checked before any other client is built: a bad auth setup fails the start at once.
    verifier = build_verifier(settings, jwt_secret, previous_secret)
    store = build_store(settings)
    llm = build_llm(settings, secrets)
    events = build_events(settings, store, clock)
    catalog = load_catalog()
    learning = build_learning_store(settings, store)
    embedder, _ = load_embedder()
    semantic, routing_status = load_semantic_layer(embedder, "routing")
    detector, safety_status = build_detector(embedder)
    local_router = LearnedRouter(
        catalog,
        learning,
        bound=settings.routing_feedback_bound,
        min_votes=settings.routing_feedback_min_votes,
        ttl_s=settings.routing_stats_ttl_s,
        semantic=semantic,
    )
    router: MessageRouter = build_judged_router(
        settings, secrets, local_router, learning=learning, clock=clock
    )
    subscribe_learning(events, learning, clock)
    chat = ChatService(
        store=store,
        llm=llm,
        router=router,
        catalog=catalog,
        events=events,
        clock=clock,
        history_window=settings.history_window,
        max_output_tokens=settings.gemini_max_output_tokens,
        # The store is also the ResponseCache; ION_CACHE_TTL_S=0 turns the cache off (its
        # entries are still erased with their conversation).
        cache=store,
        cache_ttl_s=settings.cache_ttl_s,
        model_id=settings.gemini_model if settings.llm_provider == "gemini" else llm.name,
        # Outlives the LLM's whole time budget (retries and fallback included).
        turn_lease_s=4 * settings.llm_timeout_s + 30,
        detector=detector,
        crisis=load_policy(settings.crisis_resources_file),
        # The offline provider has no real answers to give: a crisis gets the template.
        crisis_template_only=settings.llm_provider == "offline",
        feedback=learning,
        idempotency=store,
        disagreements=learning,
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
        quota=QuotaGuard(build_quota_store(settings, store), clock, quota_limits(settings)),
        jwt_secret=jwt_secret,
        idempotency=store,
        learning=learning,
        feedback=FeedbackService(store=store, feedback=learning, events=events, clock=clock),
        routing_status=routing_status,
        safety_status=safety_status,
    )


class _PerInstance(Generic[T]):
    """One object per function instance: built on first use (thread-safe), then reused."""

    def __init__(self, build: Callable[[Settings], T]) -> None:
        self._build = build
        self._lock = threading.Lock()
        self._value: T | None = None

    def get(self) -> T:
        value = self._value
        if value is None:
            with self._lock:
                value = self._value
                if value is None:
                    settings = Settings()
                    # The first log line of a cold start already goes through the redaction.
                    configure_logging(settings.log_level, settings.log_format)
                    value = self._value = self._build(settings)
        return value

    def set(self, value: T | None) -> None:
        """Install (or clear, with None) the instance's object: `ion serve` and the tests."""
        with self._lock:
            self._value = value


_app: _PerInstance[App] = _PerInstance(build_app)
_worker: _PerInstance[Worker] = _PerInstance(build_worker)


def get_app() -> App:
    """The instance's app, built on first use (thread-safe), then reused."""
    return _app.get()


def set_app(app: App | None) -> None:
    """Install (or clear, with None) the instance's app; used by `ion serve` and the tests."""
    _app.set(app)
