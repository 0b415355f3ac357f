"""One of each per function instance: logging set up once, the app (or route app, or
worker) built on first use, thread-safe, then reused; `ion serve` and the tests install
their own."""

from __future__ import annotations

import logging
import sys
import threading
from collections.abc import Callable
from functools import partial
from typing import Generic, TypeVar

from ion.adapters.cloud_logging import StructuredHandler
from ion.adapters.logging import configure_logging, install_redaction
from ion.bootstrap.apps import App, RouteApp, build_app, build_route_app
from ion.bootstrap.worker import Worker, build_worker
from ion.settings import Settings

T = TypeVar("T")


def setup_logging(
    level: str, fmt: str = "text", *, root_level: str | None = None, project: str | None = None
) -> None:
    """The one logging setup of every entry point (functions, `ion serve`, `ion chat`...):
    a handler on the root logger (text, or Cloud Logging's structured JSON with traces
    named after `project`), the redaction filter on every handler."""
    structured: Callable[[], logging.Handler] | None = None
    if fmt == "json":
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

    def installed(self) -> T | None:
        """The object if one was built or installed, without building one."""
        return self._value

    def set(self, value: T | None) -> None:
        """Install (or clear, with None) the instance's object: `ion serve` and the tests."""
        with self._lock:
            self._value = value


_app: _PerInstance[App] = _PerInstance(build_app)
_route_app: _PerInstance[RouteApp] = _PerInstance(build_route_app)
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
    # The route function serves the installed app's view from now on (or builds its own).
    _route_app.set(None)


def get_route_app() -> RouteApp:
    """What the `persona_route` function serves: the installed (or already built) app's
    view when there is one (`ion serve`, the tests), else its own `RouteApp`, built on
    first use: no chat service, publisher or language model."""
    app = _app.installed()
    if app is not None:
        return app.route
    return _route_app.get()


def set_route_app(app: RouteApp | None) -> None:
    """Install (or clear, with None) the instance's route app (tests)."""
    install_redaction()
    if app is not None:
        _logging_configured.set()
    _route_app.set(app)


def get_worker() -> Worker:
    """The instance's worker (event consumers, backups), built on first use, then reused."""
    return _worker.get()


def set_worker(worker: Worker | None) -> None:
    _worker.set(worker)
