"""The composition root: the only package that knows which adapters exist.

- `backends`: settings → storage backend, secrets store, language model (`storage_backend`
  is the one place that asks which backend to use);
- `models`: the embedding model and the learned heads, loaded once per instance;
- `apps`: the `App` the chat function, `ion serve` and the CLI serve, and the smaller
  `RouteApp` of the persona_route function;
- `worker`: the `Worker` of the Pub/Sub functions and the scheduled backup;
- `instance`: one logging setup, and one app/route app/worker per function instance.

Entry points (`ion.entrypoints`) are its only callers. Heavy imports (Google clients,
google-genai) happen only for the backend or provider that the settings choose, and only
when an app is first built, not at import time.
"""

from ion.bootstrap.apps import App, RouteApp, build_app, build_route_app
from ion.bootstrap.backends import (
    build_llm,
    build_secrets,
    quota_limits,
    require_extra,
    storage_backend,
)
from ion.bootstrap.instance import (
    get_app,
    get_route_app,
    get_worker,
    set_app,
    set_route_app,
    set_worker,
    setup_instance_logging,
    setup_logging,
)
from ion.bootstrap.models import (
    SemanticStatus,
    build_detector,
    build_judged_router,
    build_router,
    load_embedder,
    load_semantic_layer,
)
from ion.bootstrap.worker import (
    NATIVE_BACKUP_BACKENDS,
    Worker,
    backup_directory,
    backup_key,
    build_backup_runner,
    build_worker,
)

__all__ = [
    "NATIVE_BACKUP_BACKENDS",
    "App",
    "RouteApp",
    "SemanticStatus",
    "Worker",
    "backup_directory",
    "backup_key",
    "build_app",
    "build_backup_runner",
    "build_detector",
    "build_judged_router",
    "build_llm",
    "build_route_app",
    "build_router",
    "build_secrets",
    "build_worker",
    "get_app",
    "get_route_app",
    "get_worker",
    "load_embedder",
    "load_semantic_layer",
    "quota_limits",
    "require_extra",
    "set_app",
    "set_route_app",
    "set_worker",
    "setup_instance_logging",
    "setup_logging",
    "storage_backend",
]
