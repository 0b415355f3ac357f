"""Settings → adapters: which storage backend, secrets store and language model to use.

The only place that asks `settings.backend`, `settings.secrets_backend` and
`settings.llm_provider`; Google clients are imported only for the choice made.
"""

from __future__ import annotations

import importlib

from ion.adapters.backend import StorageBackend
from ion.adapters.secrets import gemini_api_key
from ion.errors import ConfigurationError
from ion.ports import LanguageModel, Secrets
from ion.services.quota import QuotaLimits
from ion.settings import Settings


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


def quota_limits(settings: Settings) -> QuotaLimits:
    return QuotaLimits(
        chat_per_minute=settings.rate_limit_per_minute,
        api_per_minute=settings.api_rate_limit_per_minute,
        daily_tokens=settings.daily_token_budget,
    )
