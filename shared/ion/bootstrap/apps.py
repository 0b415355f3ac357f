"""The bundles the HTTP functions serve, and how each is built.

- `RouteApp` (the `persona_route` function): routing decisions, the persona catalog,
  routing statistics and the operator reports. No language model, event publisher or
  chat service: that function never answers a learner.
- `App` (the `chat` function, `ion serve`, the CLI): everything, the chat service with
  its publisher and language model included. It has every field a `RouteApp` has, and
  `App.route` is its `RouteApp` view (same objects, nothing built again).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ion.adapters.backend import StorageBackend
from ion.adapters.clock import SystemClock
from ion.adapters.outbox import InProcessTransport, ReliablePublisher
from ion.adapters.secrets import resolve_jwt_secret, resolve_previous_jwt_secret
from ion.adapters.tokens import (
    JwksTokenVerifier,
    TokenVerifier,
    issue_token,
    verifier_from_settings,
)
from ion.bootstrap.backends import build_llm, build_secrets, quota_limits, storage_backend
from ion.bootstrap.models import (
    SemanticStatus,
    build_detector,
    build_judged_router,
    load_embedder,
    load_semantic_layer,
)
from ion.domain.crisis import CrisisPolicy, load_policy
from ion.domain.personas import PersonaCatalog, load_catalog
from ion.domain.routing import MessageRouter
from ion.domain.safety import CrisisDetector
from ion.errors import ConfigurationError
from ion.ports import (
    Clock,
    ConversationDatabase,
    LanguageModel,
    LearningAndBackupStore,
    Secrets,
)
from ion.services.chat import ChatService
from ion.services.feedback import FeedbackService
from ion.services.idempotency import IdempotencyService
from ion.services.learner_data import LearnerDataService
from ion.services.learning import LearnedRouter, RoutingStatistics, stats_subscriber
from ion.services.memory import MemoryService
from ion.services.operator import OperatorReports
from ion.services.profile import ProfileService
from ion.services.quota import QuotaGuard
from ion.settings import Settings


@dataclass
class RouteApp:
    """What the `persona_route` function serves (see the module docstring)."""

    settings: Settings
    verifier: TokenVerifier | JwksTokenVerifier
    # Pinged by /ready: the backend the statistics and quota live on.
    store: ConversationDatabase
    catalog: PersonaCatalog
    router: MessageRouter  # the local router, wrapped by the judge when it is on
    # Every routed message is checked first; a crisis is routed by the crisis policy.
    detector: CrisisDetector
    crisis_policy: CrisisPolicy
    quota: QuotaGuard
    statistics: RoutingStatistics
    # The operator page's time series and review lists (operators only: the HTTP layer).
    operator: OperatorReports
    # Whether routing runs with its learned semantic layer (reported by /ready).
    routing_status: SemanticStatus
    # Whether crisis detection runs with its trained head (rules always run).
    safety_status: SemanticStatus


@dataclass
class App:
    """The wired application the chat function, `ion serve` and the CLI serve."""

    settings: Settings
    backend: StorageBackend
    store: ConversationDatabase
    llm: LanguageModel
    secrets: Secrets
    events: ReliablePublisher  # with its outbox (`ion outbox drain`)
    clock: Clock
    catalog: PersonaCatalog
    router: MessageRouter  # the local router, wrapped by the judge when it is on
    detector: CrisisDetector
    crisis_policy: CrisisPolicy
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
    operator: OperatorReports
    routing_status: SemanticStatus
    safety_status: SemanticStatus
    # Learner profiles and the mentor's suggestions (GET/PUT /v1/me/profile).
    profiles: ProfileService
    # The learner's own data: GET /v1/me/export, DELETE /v1/me.
    learner_data: LearnerDataService

    @property
    def route(self) -> RouteApp:
        """This app's `RouteApp`: the same objects, read now (a test may swap one)."""
        return RouteApp(
            settings=self.settings,
            verifier=self.verifier,
            store=self.store,
            catalog=self.catalog,
            router=self.router,
            detector=self.detector,
            crisis_policy=self.crisis_policy,
            quota=self.quota,
            statistics=self.statistics,
            operator=self.operator,
            routing_status=self.routing_status,
            safety_status=self.safety_status,
        )

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
class _Auth:
    verifier: TokenVerifier | JwksTokenVerifier
    jwt_secret: str | None


def _auth(settings: Settings, secrets: Secrets) -> _Auth:
    # JWKS mode needs no secret (and has none to hand out as dev tokens).
    jwt_secret = None if settings.jwks_url else resolve_jwt_secret(settings, secrets)
    previous_secret = None if settings.jwks_url else resolve_previous_jwt_secret(settings, secrets)
    return _Auth(verifier_from_settings(settings, jwt_secret, previous_secret), jwt_secret)


def _route_app(
    settings: Settings,
    clock: Clock,
    secrets: Secrets,
    verifier: TokenVerifier | JwksTokenVerifier,
    backend: StorageBackend,
) -> RouteApp:
    """Routing, safety, quota, statistics and operator reports over `backend`."""
    learning = backend.records
    catalog = load_catalog()
    embedder, _ = load_embedder()
    semantic, routing_status = load_semantic_layer(embedder, "routing")
    detector, safety_status = build_detector(embedder, settings.safety_everyday_budget)
    local_router = LearnedRouter(
        catalog,
        learning,
        bound=settings.routing_feedback_bound,
        min_votes=settings.routing_feedback_min_votes,
        ttl_s=settings.routing_stats_ttl_s,
        semantic=semantic,
    )
    router = build_judged_router(settings, secrets, local_router, learning=learning, clock=clock)
    return RouteApp(
        settings=settings,
        verifier=verifier,
        store=backend.conversations,
        catalog=catalog,
        router=router,
        detector=detector,
        crisis_policy=load_policy(settings.crisis_resources_file),
        quota=QuotaGuard(backend.quota, clock, quota_limits(settings)),
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
    )


def build_route_app(settings: Settings | None = None, *, clock: Clock | None = None) -> RouteApp:
    settings = settings or Settings()
    clock = clock or SystemClock()
    secrets = build_secrets(settings)
    # Checked before any other client is built: a bad auth setup fails the start at once.
    auth = _auth(settings, secrets)
    return _route_app(settings, clock, secrets, auth.verifier, storage_backend(settings))


def build_app(settings: Settings | None = None, *, clock: Clock | None = None) -> App:
    settings = settings or Settings()
    clock = clock or SystemClock()
    secrets = build_secrets(settings)
    # Checked before any other client is built: a bad auth setup fails the start at once.
    auth = _auth(settings, secrets)
    backend = storage_backend(settings)
    store, learning = backend.conversations, backend.records
    llm = build_llm(settings, secrets)
    transport = backend.open_event_transport()
    events = ReliablePublisher(transport, store, clock)
    if isinstance(transport, InProcessTransport):
        # No Pub/Sub here: the statistics follow the events in process (on gcp the
        # `persona_events` function consumes the topic instead).
        transport.subscribe(stats_subscriber(learning, clock))
    route = _route_app(settings, clock, secrets, auth.verifier, backend)
    profiles = ProfileService(backend.profiles, clock)
    chat = ChatService(
        store=store,
        llm=llm,
        router=route.router,
        catalog=route.catalog,
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
        detector=route.detector,
        crisis=route.crisis_policy,
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
        # Independent store calls at once (Firestore); one transaction per step (SQLite).
        access=backend.access,
    )
    learner_data = LearnerDataService(
        chat=chat,
        store=store,
        memory=store,
        feedback=learning,
        profiles=backend.profiles,
        idempotency=store,
        outbox=store,
        quota=route.quota,
    )
    return App(
        settings=settings,
        backend=backend,
        store=store,
        llm=llm,
        secrets=secrets,
        events=events,
        clock=clock,
        catalog=route.catalog,
        router=route.router,
        detector=route.detector,
        crisis_policy=route.crisis_policy,
        chat=chat,
        verifier=auth.verifier,
        quota=route.quota,
        jwt_secret=auth.jwt_secret,
        idempotency=IdempotencyService(store, store, clock, ttl_s=settings.idempotency_ttl_s),
        records=learning,
        feedback=FeedbackService(store=store, feedback=learning, events=events, clock=clock),
        statistics=route.statistics,
        operator=route.operator,
        routing_status=route.routing_status,
        safety_status=route.safety_status,
        profiles=profiles,
        learner_data=learner_data,
    )
