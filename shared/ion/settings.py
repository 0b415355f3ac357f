"""Typed settings, read from `ION_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from ion.domain.operating_points import DEFAULT_OPERATING_POINT, OPERATING_POINTS

_ORIGIN = re.compile(
    r"^https?://[a-z0-9.-]+(:[0-9]{1,5})?$|^https?://\[[0-9a-f:]+\](:[0-9]{1,5})?$"
)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ION_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- where state lives ---
    backend: Literal["embedded", "gcp"] = Field(
        "embedded", description="embedded = SQLite + in-process events; gcp = Firestore + Pub/Sub"
    )
    data_dir: Path = Field(Path(".ion"), description="Directory for SQLite and the dev secret")
    web_dir: Path | None = Field(
        None,
        description="Directory of the web app `ion serve` serves at / (unset = the"
        " repository's web/ folder)",
    )
    gcp_project: str | None = Field(None, description="Google Cloud project id (gcp backend)")
    gcp_location: str = Field("us-central1", description="Region for Vertex AI")
    firestore_database: str = Field("(default)", description="Firestore database id")
    events_topic: str = Field("ion-events", description="Pub/Sub topic for domain events")
    secrets_backend: Literal["env", "secretmanager"] = Field(
        "env", description="Where secrets come from: env (ION_* variables) or secretmanager"
    )
    secret_prefix: str = Field("ion-", description="Secret Manager secret id prefix")
    secret_cache_ttl_s: float = Field(300.0, ge=0, description="Secret cache TTL in seconds")

    # --- auth ---
    jwt_secret: SecretStr | None = Field(
        None,
        description="HS256 signing secret, at least 32 bytes; generated once per data dir when"
        " unset locally",
    )
    jwt_previous_secret: SecretStr | None = Field(
        None,
        description="The secret before the last rotation (at least 32 bytes): tokens it signed"
        " still verify, new tokens use ION_JWT_SECRET",
    )
    jwt_issuer: str | None = Field(
        None, description="Expected `iss` claim (checked when set; required on the gcp backend)"
    )
    jwt_audience: str | None = Field(
        None, description="Expected `aud` claim (checked when set; required on the gcp backend)"
    )
    jwt_leeway_s: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat")
    jwt_max_lifetime_s: int = Field(
        86_400,
        ge=0,
        description="Longest accepted token lifetime (`exp - iat`) in seconds; 0 = no limit",
    )
    dev_token_ttl_s: int = Field(86_400, gt=0, description="Lifetime of tokens from `ion token`")
    jwt_algorithms: Annotated[list[str], NoDecode] = Field(
        [],
        description="Accepted JWT algorithms, comma-separated; empty = HS256 (secret mode) or"
        " RS256,ES256 (JWKS mode); HMAC and JWKS never mix, `none` is never accepted",
    )
    jwks_url: str | None = Field(
        None,
        description="JWKS URL of the identity provider (e.g. Firebase Auth); set = JWKS mode"
        " (public-key tokens, no dev tokens)",
    )
    operator_claim: str = Field(
        "ion_role",
        pattern=r"^[A-Za-z_][A-Za-z0-9_.:/-]{0,99}$",
        description="JWT claim naming the caller's role(s): a string or a list of strings;"
        " holding ION_OPERATOR_ROLE opens /v1/routing/stats, /v1/operator/* and the operator"
        " page",
    )
    operator_role: str = Field(
        "operator",
        min_length=1,
        max_length=100,
        description="The value of ION_OPERATOR_CLAIM that makes a token an operator's",
    )
    jwks_cache_ttl_s: float = Field(
        3600.0, gt=0, description="How long fetched JWKS keys are used before a refresh"
    )
    jwks_min_refresh_s: float = Field(
        30.0, ge=0, description="Least time between two JWKS fetches (unknown `kid`s included)"
    )
    store_timeout_s: float = Field(
        10.0,
        gt=0,
        description="Deadline of one Firestore call, retries included (`ion` commands use at"
        " most 3)",
    )

    # --- abuse protection ---
    rate_limit_per_minute: int = Field(
        10, ge=0, description="Chat messages (POST /v1/chat) per user per minute; 0 = no limit"
    )
    api_rate_limit_per_minute: int = Field(
        120,
        ge=0,
        description="Authenticated /v1 calls of any kind per user per minute; 0 = no limit",
    )
    daily_token_budget: int = Field(
        100_000, ge=0, description="LLM tokens (input + output) per user per UTC day; 0 = no limit"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        [],
        description="Browser origins allowed to call the API, comma-separated"
        " (`https://app.example.com`); empty = none; no wildcard",
    )
    log_format: Literal["text", "json"] = Field(
        "text",
        description="Log lines as text, or Cloud Logging's structured JSON on stdout"
        " (trace, httpRequest, Error Reporting; needs the gcp extra)",
    )

    # --- language model ---
    llm_provider: Literal["offline", "gemini"] = Field("offline", description="LLM provider")
    gemini_model: str = Field("gemini-2.5-flash", description="Primary Gemini model")
    gemini_fallback_model: str | None = Field(None, description="Model tried when primary fails")
    gemini_api_key: SecretStr | None = Field(None, description="API key (API-key mode)")
    gemini_vertex: bool = Field(False, description="Use Vertex AI (ADC) instead of an API key")
    gemini_base_url: str | None = Field(None, description="Override the Gemini endpoint")
    gemini_max_output_tokens: int = Field(1024, gt=0, description="Max output tokens per answer")
    gemini_thinking_budget: int | None = Field(None, ge=0, description="Thinking token budget")
    gemini_safety_threshold: Literal[
        "BLOCK_LOW_AND_ABOVE", "BLOCK_MEDIUM_AND_ABOVE", "BLOCK_ONLY_HIGH", "BLOCK_NONE", "OFF"
    ] = Field(
        "BLOCK_MEDIUM_AND_ABOVE",
        description="Gemini safety threshold for harassment, hate, sexual and dangerous content",
    )
    llm_timeout_s: float = Field(30.0, gt=0, description="Per-call LLM timeout in seconds")
    llm_max_attempts: int = Field(3, ge=1, le=10, description="LLM attempts per model")
    llm_backoff_base_s: float = Field(
        0.5, ge=0, description="First LLM retry backoff cap in seconds (doubles, full jitter)"
    )

    # --- response cache and idempotency ---
    cache_ttl_s: int = Field(
        3600, ge=0, description="Lifetime of cached first-turn answers in seconds (0 disables)"
    )
    idempotency_ttl_s: int = Field(
        86_400, gt=0, description="How long an Idempotency-Key is remembered, in seconds"
    )

    # --- chat behaviour ---
    history_window: int = Field(12, ge=0, le=100, description="Prior messages sent to the LLM")
    max_message_chars: int = Field(4000, gt=0, description="Longest accepted learner message")
    max_body_bytes: int = Field(65_536, gt=0, description="Largest accepted request body")
    page_size: int = Field(20, gt=0, le=100, description="Default conversations per page")
    log_level: str = Field("INFO", description="Python log level")

    # --- learner safety (docs/safety.md) ---
    safety_everyday_budget: float = Field(
        DEFAULT_OPERATING_POINT,
        description="Crisis detector operating point: the share of everyday learner messages"
        " it may flag, one of "
        + ", ".join(f"{point:g}" for point in OPERATING_POINTS)
        + " (calibrated by `ion train safety`; higher catches more crises)",
    )
    crisis_resources_file: Path | None = Field(
        None,
        description="YAML/JSON file replacing the packaged crisis resources"
        " ({resources: {ko: [...], en: [...]}}, each {name, phone?, url?})",
    )

    # --- feedback and learned routing (docs/routing-feedback.md) ---
    routing_feedback_bound: float = Field(
        0.05,
        ge=0.0,
        le=0.1,
        description="Largest score nudge learned from feedback, per persona (0 disables; the"
        " router's hard clamp is 0.1)",
    )
    routing_feedback_min_votes: int = Field(
        5, ge=1, description="Ratings a persona needs on a resonance key before it is nudged"
    )
    routing_stats_ttl_s: float = Field(
        60.0, ge=0, description="How long an instance caches routing statistics, in seconds"
    )
    event_dedupe_days: int = Field(
        30, ge=1, description="How long consumed event ids are remembered for deduplication"
    )

    # --- LLM routing judge (docs/routing.md, "Judge") ---
    routing_judge: Literal["off", "gemini"] = Field(
        "off",
        description="Ask an LLM to route the messages the local router is unsure of:"
        " off, or gemini (uses the ION_GEMINI_* key / Vertex AI settings)",
    )
    routing_judge_threshold: float = Field(
        0.5,
        ge=0.0,
        le=1.0,
        description="The judge is asked only when the local routing confidence is below this",
    )
    routing_judge_model: str = Field(
        "gemini-2.5-flash-lite", description="Gemini model of the routing judge"
    )
    routing_judge_timeout_s: float = Field(
        1.5,
        gt=0,
        le=10,
        description="Time limit of the judge's one attempt (no retries); then the local"
        " decision stands",
    )
    routing_judge_thinking_budget: int | None = Field(
        0, ge=0, description="Thinking token budget of the judge (unset = the model's default)"
    )
    routing_judge_turns: int = Field(
        3, ge=0, le=10, description="Earlier learner turns sent to the judge with the message"
    )
    routing_judge_cache_size: int = Field(
        1024, ge=0, description="Judge verdicts cached per instance (LRU; 0 disables)"
    )
    routing_disagreement_ttl_days: int = Field(
        30,
        ge=1,
        description="Days a judge-vs-local disagreement (with the message text) is kept for review",
    )

    # --- backups (docs/operations.md) ---
    backup_mode: Literal["auto", "firestore-export", "sqlite-snapshot", "logical"] = Field(
        "auto",
        description="What the backup function does: auto = firestore-export on gcp,"
        " sqlite-snapshot on embedded; logical = portable NDJSON export to ION_BACKUP_DIR",
    )
    backup_bucket: str | None = Field(
        None, description="GCS bucket for Firestore managed exports (name, without gs://)"
    )
    backup_prefix: str = Field(
        "firestore-exports", description="Object prefix of managed exports in the bucket"
    )
    backup_retention_days: int = Field(
        14, ge=1, description="Days local backups are kept (GCS: the bucket's lifecycle rule)"
    )
    backup_dir: Path | None = Field(
        None, description="Directory for local backups (default: $ION_DATA_DIR/backups)"
    )
    backup_hmac_key: SecretStr | None = Field(
        None,
        description="Key (≥ 32 characters) of the HMAC-SHA256 that signs logical backup"
        " manifests; else the secret `<prefix>backup-hmac-key`, else (embedded, emulators) one"
        " generated in the data dir",
    )

    @field_validator("safety_everyday_budget")
    @classmethod
    def _calibrated_point(cls, value: float) -> float:
        if value not in OPERATING_POINTS:
            points = ", ".join(f"{point:g}" for point in OPERATING_POINTS)
            raise ValueError(f"must be one of the calibrated operating points: {points}")
        return value

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once, so a later chdir cannot split one instance's state in two places.
        return value.expanduser().resolve()

    @field_validator("jwt_algorithms", "cors_origins", mode="before")
    @classmethod
    def _comma_list(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator("cors_origins")
    @classmethod
    def _explicit_origins(cls, value: list[str]) -> list[str]:
        origins = []
        for origin in value:
            origin = origin.rstrip("/").lower()
            if not _ORIGIN.match(origin):
                raise ValueError(
                    f"CORS origin {origin!r} must be an explicit scheme://host[:port] (no wildcard)"
                )
            origins.append(origin)
        return origins

    @field_validator("jwks_url")
    @classmethod
    def _algorithms_fit_mode(cls, value: str | None, info: ValidationInfo) -> str | None:
        # A field validator (not a model one): its errors never echo other inputs (secrets).
        from ion.domain.token_policy import check_algorithms, check_jwks_url

        if value is not None:
            check_jwks_url(value)
        check_algorithms(info.data.get("jwt_algorithms", []), jwks=value is not None)
        return value

    @property
    def may_generate_secrets(self) -> bool:
        """Whether a missing secret may be generated into the data dir: on a laptop (the
        embedded backend) or against the emulators. A real deployment brings its own."""
        return self.backend == "embedded" or bool(os.environ.get("FIRESTORE_EMULATOR_HOST"))

    @property
    def tokens_must_name_audience(self) -> bool:
        """Production (the gcp backend): tokens must name who issued them and for whom."""
        return self.backend == "gcp"

    def effective_jwt_algorithms(self) -> list[str]:
        """The configured algorithms, or the mode's defaults when none are configured."""
        from ion.domain.token_policy import check_algorithms

        return check_algorithms(self.jwt_algorithms, jwks=self.jwks_url is not None)


def settings_table() -> str:
    """The README's configuration table, generated from the fields (a test keeps them equal)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, info in Settings.model_fields.items():
        default = info.default
        if isinstance(default, Path):
            shown = f"`{default}`"
        elif default is None:
            shown = "unset"
        else:
            shown = f"`{default}`"
        rows.append(f"| `ION_{name.upper()}` | {shown} | {info.description or ''} |")
    return "\n".join(rows)
