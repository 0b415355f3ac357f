"""Typed settings, read from `ION_*` environment variables (and an optional `.env`)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="ION_", env_file=".env", extra="ignore", validate_default=True
    )

    # --- where state lives ---
    backend: Literal["embedded", "gcp"] = Field(
        "embedded", description="embedded = SQLite + in-process events; gcp = Firestore + Pub/Sub"
    )
    data_dir: Path = Field(Path(".ion"), description="Directory for SQLite and the dev secret")
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
        None, description="HS256 signing secret; generated once per data dir when unset locally"
    )
    jwt_issuer: str | None = Field(None, description="Expected `iss` claim (checked when set)")
    jwt_audience: str | None = Field(None, description="Expected `aud` claim (checked when set)")
    jwt_leeway_s: int = Field(30, ge=0, le=300, description="Clock skew allowed on exp/nbf/iat")
    dev_token_ttl_s: int = Field(86_400, gt=0, description="Lifetime of tokens from `ion token`")

    # --- language model ---
    llm_provider: Literal["offline", "gemini"] = Field("offline", description="LLM provider")
    gemini_model: str = Field("gemini-2.5-flash", description="Primary Gemini model")
    gemini_fallback_model: str | None = Field(None, description="Model tried when primary fails")
    gemini_api_key: SecretStr | None = Field(None, description="API key (API-key mode)")
    gemini_vertex: bool = Field(False, description="Use Vertex AI (ADC) instead of an API key")
    gemini_base_url: str | None = Field(None, description="Override the Gemini endpoint")
    gemini_max_output_tokens: int = Field(1024, gt=0, description="Max output tokens per answer")
    gemini_thinking_budget: int | None = Field(None, ge=0, description="Thinking token budget")
    llm_timeout_s: float = Field(30.0, gt=0, description="Per-call LLM timeout in seconds")
    llm_max_attempts: int = Field(3, ge=1, le=10, description="LLM attempts per model")

    # --- chat behaviour ---
    history_window: int = Field(12, ge=0, le=100, description="Prior messages sent to the LLM")
    max_message_chars: int = Field(4000, gt=0, description="Longest accepted learner message")
    max_body_bytes: int = Field(65_536, gt=0, description="Largest accepted request body")
    page_size: int = Field(20, gt=0, le=100, description="Default conversations per page")
    log_level: str = Field("INFO", description="Python log level")

    @field_validator("data_dir")
    @classmethod
    def _absolute_data_dir(cls, value: Path) -> Path:
        # Resolved once, so a later chdir cannot split one instance's state in two places.
        return value.expanduser().resolve()


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
