"""The composition root: the only module that knows which adapters exist.

It picks the storage backend once (`storage_backend`), sets up logging, and builds the
`App` the HTTP functions and the CLI serve, or the `Worker` the Pub/Sub functions need.
Entry points (`ion.entrypoints`) are its only callers.

Heavy imports (Google clients, google-genai) happen here only for the backend or provider
that the settings choose, and only when an app is first built, not at import time.
"""

from __future__ import annotations

import importlib
import logging
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache, partial
from pathlib import Path
from typing import Generic, TypeVar

from ion.adapters.backend import StorageBackend
from ion.adapters.backup_format import LogicalExportTarget
from ion.adapters.clock import SystemClock
from ion.adapters.logging import configure_logging, install_redaction
from ion.adapters.outbox import InProcessTransport, ReliablePublisher
from ion.adapters.secrets import (
    gemini_api_key,
    resolve_backup_key,
    resolve_jwt_secret,
    resolve_previous_jwt_secret,
)
from ion.adapters.tokens import (
    JwksTokenVerifier,
    TokenVerifier,
    issue_token,
    verifier_from_settings,
)
from ion.domain.crisis import load_policy
from ion.domain.personas import PersonaCatalog, load_catalog
from ion.domain.routing import MessageRouter, Router
from ion.domain.safety import CrisisDetector, load_rules
from ion.domain.semantic import SemanticLayer, artifact_path, load_artifact
from ion.errors import ConfigurationError
from ion.ports import (
    BackupTarget,
    Clock,
    ConversationDatabase,
    DisagreementStore,
    LanguageModel,
    LearningAndBackupStore,
    Secrets,
    SentenceEmbedder,
)
from ion.services.backup import BackupRunner
from ion.services.chat import ChatService
from ion.services.feedback import FeedbackService
from ion.services.idempotency import IdempotencyService
from ion.services.learner_data import LearnerDataService
from ion.services.learning import LearnedRouter, RoutingStatistics, stats_subscriber
from ion.services.memory import MemoryService
from ion.services.operator import OperatorReports
from ion.services.profile import ProfileService
from ion.services.quota import QuotaGuard, QuotaLimits
from ion.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")


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


def storage_backend(settings: Settings) -> StorageBackend:
    """The one place that asks which backend to use: its stores, transport and backups."""
    if settings.backend == "gcp":
        require_extra("google.cloud.firestore", "gcp", "ION_BACKEND=gcp (Firestore)")
        require_extra("google.cloud.pubsub_v1", "gcp", "ION_BACKEND=gcp (Pub/Sub events)")
        from ion.adapters import firestore

        return firestore.backend(settings)
    from ion.adapters import sqlite

    return sqlite.backend(settings)


@dataclass
class App:
    """The wired application one function instance serves."""

    settings: Settings
    backend: StorageBackend
    store: ConversationDatabase
    llm: LanguageModel
    secrets: Secrets
    events: ReliablePublisher  # with its outbox (`ion outbox drain`)
    clock: Clock
    catalog: PersonaCatalog
    router: MessageRouter  # the local router, wrapped by the judge when it is on
    chat: ChatService
    verifier: TokenVerifier | JwksTokenVerifier
    quota: QuotaGuard
    jwt_secret: str | None = field(repr=False)  # None in JWKS mode
    # Idempotency-Key claims (the conversation store implements them on both backends).
    idempotency: IdempotencyService
    # Feedback, routing statistics, event dedupe marks and the backup catalog.
    records: LearningAndBackupStore
    feedback: FeedbackService
    statistics: RoutingStatistics
    # The operator page's time series and review lists (operators only: the HTTP layer).
    operator: OperatorReports
    # Whether routing runs with its learned semantic layer (reported by /ready).
    routing_status: SemanticStatus
    # Whether crisis detection runs with its trained head (rules always run).
    safety_status: SemanticStatus
    # Learner profiles and the mentor's suggestions (GET/PUT /v1/me/profile).
    profiles: ProfileService
    # The learner's own data: GET /v1/me/export, DELETE /v1/me.
    learner_data: LearnerDataService

    def dev_token(self, user_id: str, *, operator: bool = False) -> str:
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
            role=(self.settings.operator_claim, self.settings.operator_role) if operator else None,
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
    from ion.services.judge import JudgedRouter, judge_instructions

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


def build_llm(settings: Settings, secrets: Secrets) -> LanguageModel:
    if settings.llm_provider == "gemini":
        from ion.adapters.gemini import GeminiLanguageModel

        return GeminiLanguageModel.from_settings(settings, gemini_api_key(settings, secrets))
    from ion.adapters.offline import OfflineLanguageModel

    return OfflineLanguageModel()


@dataclass
class Worker:
    """What the Pub/Sub-triggered functions (persona_events, backup) need: storage only.

    Built without the LLM, secrets or token verification, so those functions start fast
    and need no JWT secret or model configuration.
    """

    settings: Settings
    backend: StorageBackend
    clock: Clock

    @property
    def records(self) -> LearningAndBackupStore:
        return self.backend.records


def build_worker(settings: Settings | None = None) -> Worker:
    settings = settings or Settings()
    return Worker(settings, storage_backend(settings), SystemClock())


def get_worker() -> Worker:
    """The instance's worker (event consumers, backups), built on first use, then reused."""
    return _worker.get()


def set_worker(worker: Worker | None) -> None:
    _worker.set(worker)


# Which backend makes each native backup (ION_BACKUP_MODE); "logical" works on both.
NATIVE_BACKUP_BACKENDS = {"firestore-export": "gcp", "sqlite-snapshot": "embedded"}


def build_backup_runner(worker: Worker) -> BackupRunner:
    """The scheduled backup (the `backup` function, `ion backup run`), per ION_BACKUP_MODE."""
    settings, backend = worker.settings, worker.backend
    mode: str = settings.backup_mode
    if mode == "auto":
        mode = backend.native_backup_mode
    target: BackupTarget
    if mode == "logical":
        key = resolve_backup_key(settings, build_secrets(settings))
        target = LogicalExportTarget(
            backup_directory(settings),
            lambda directory: backend.export(directory, key),
            settings.backup_retention_days,
        )
    else:
        if mode == "firestore-export":
            require_extra(
                "google.cloud.firestore_admin_v1", "gcp", "ION_BACKUP_MODE=firestore-export"
            )
        if mode != backend.native_backup_mode:
            raise ConfigurationError(
                f"ION_BACKUP_MODE={mode} needs ION_BACKEND={NATIVE_BACKUP_BACKENDS[mode]}"
            )
        target = backend.native_backup_target(backup_directory(settings))
    return BackupRunner(
        target=target,
        catalog=worker.records,
        dedupe=worker.records,
        clock=worker.clock,
        retention_days=settings.backup_retention_days,
    )


def backup_directory(settings: Settings) -> Path:
    return (settings.backup_dir or settings.data_dir / "backups").expanduser().resolve()


def backup_key(settings: Settings) -> bytes:
    """The key that signs and checks logical backups (`ion backup export|restore|verify`)."""
    return resolve_backup_key(settings, build_secrets(settings))


def quota_limits(settings: Settings) -> QuotaLimits:
    return QuotaLimits(
        chat_per_minute=settings.rate_limit_per_minute,
        api_per_minute=settings.api_rate_limit_per_minute,
        daily_tokens=settings.daily_token_budget,
    )


def build_app(settings: Settings | None = None, *, clock: Clock | None = None) -> App:
    settings = settings or Settings()
    clock = clock or SystemClock()
    secrets = build_secrets(settings)
    # JWKS mode needs no secret (and has none to hand out as dev tokens).
    jwt_secret = None if settings.jwks_url else resolve_jwt_secret(settings, secrets)
    previous_secret = None if settings.jwks_url else resolve_previous_jwt_secret(settings, secrets)
    # Checked before any other client is built: a bad auth setup fails the start at once.
    verifier = verifier_from_settings(settings, jwt_secret, previous_secret)
    backend = storage_backend(settings)
    store, learning = backend.conversations, backend.records
    llm = build_llm(settings, secrets)
    transport = backend.open_event_transport()
    events = ReliablePublisher(transport, store, clock)
    if isinstance(transport, InProcessTransport):
        # No Pub/Sub here: the statistics follow the events in process (on gcp the
        # `persona_events` function consumes the topic instead).
        transport.subscribe(stats_subscriber(learning, clock))
    catalog = load_catalog()
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
    profiles = ProfileService(backend.profiles, clock)
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
        memory=MemoryService(
            store=store,
            memory=store,
            clock=clock,
            history_window=settings.history_window,
            # Offline: the deterministic extractive summary; otherwise the model summarises.
            llm=None if settings.llm_provider == "offline" else llm,
        ),
        profiles=profiles,
    )
    quota = QuotaGuard(backend.quota, clock, quota_limits(settings))
    learner_data = LearnerDataService(
        chat=chat,
        store=store,
        memory=store,
        feedback=learning,
        profiles=backend.profiles,
        idempotency=store,
        outbox=store,
        quota=quota,
    )
    return App(
        settings=settings,
        backend=backend,
        store=store,
        llm=llm,
        secrets=secrets,
        events=events,
        clock=clock,
        catalog=catalog,
        router=router,
        chat=chat,
        verifier=verifier,
        quota=quota,
        jwt_secret=jwt_secret,
        idempotency=IdempotencyService(store, store, clock, ttl_s=settings.idempotency_ttl_s),
        records=learning,
        feedback=FeedbackService(store=store, feedback=learning, events=events, clock=clock),
        statistics=RoutingStatistics(
            learning,
            catalog,
            bound=settings.routing_feedback_bound,
            min_votes=settings.routing_feedback_min_votes,
        ),
        operator=OperatorReports(
            stats=learning, disagreements=learning, catalog=catalog, clock=clock
        ),
        routing_status=routing_status,
        safety_status=safety_status,
        profiles=profiles,
        learner_data=learner_data,
    )


def setup_logging(
    level: str, fmt: str = "text", *, root_level: str | None = None, project: str | None = None
) -> None:
    """The one logging setup of every entry point (functions, `ion serve`, `ion chat`...):
    a handler on the root logger (text, or Cloud Logging's structured JSON with traces
    named after `project`), the redaction filter on every handler."""
    structured: Callable[[], logging.Handler] | None = None
    if fmt == "json":
        # google-cloud-logging (the gcp extra) only where JSON is asked for: not `ion serve`.
        from ion.adapters.cloud_logging import StructuredHandler

        structured = partial(StructuredHandler, stream=sys.stdout, project=project)
    configure_logging(level, fmt, root_level=root_level, structured=structured)


_logging_configured = threading.Event()


def _setup_instance_logging(settings: Settings) -> None:
    setup_logging(settings.log_level, settings.log_format, project=settings.gcp_project)
    _logging_configured.set()


def setup_instance_logging() -> None:
    """The function instance's logging, from its settings, before its first request line
    (a /health check builds no app): once per instance. Nothing when an app was installed
    (`ion serve` and the tests set up their own), nor when the settings are invalid
    (building the app reports that)."""
    if _logging_configured.is_set():
        return
    try:
        settings = Settings()
    except ValueError:  # pydantic's ValidationError
        return
    _setup_instance_logging(settings)


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
                    _setup_instance_logging(settings)
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
    # Whatever set up logging before, every handler redacts from here on.
    install_redaction()
    if app is not None:
        _logging_configured.set()
    _app.set(app)
