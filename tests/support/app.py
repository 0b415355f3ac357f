"""Fixtures that build the real application on embedded defaults in a temporary data dir."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import functions_framework
import pytest
from flask import Flask
from flask.testing import FlaskClient

from ion.bootstrap import App, build_app, set_app
from ion.settings import Settings
from tests.support.paths import REPO

TEST_JWT_SECRET = "test-secret-" + "x" * 40


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No ION_* variable from the developer's shell leaks into a test; cwd has no .env."""
    for name in list(os.environ):
        if name.startswith("ION_"):
            monkeypatch.delenv(name)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def make_settings(data_dir: Path, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"data_dir": data_dir, "jwt_secret": TEST_JWT_SECRET}
    values.update(overrides)
    return Settings(_env_file=None, **values)


@pytest.fixture
def app(clean_env: Path) -> Iterator[App]:
    application = build_app(make_settings(clean_env / "data"))
    set_app(application)
    yield application
    set_app(None)


def firestore_app_settings(data_dir: Path, topic: str, **overrides: Any) -> Settings:
    """The gcp backend on the emulators (Firestore project ion-test, Pub/Sub `topic`)."""
    return make_settings(
        data_dir,
        backend="gcp",
        gcp_project="ion-test",
        events_topic=topic,
        jwt_issuer="https://auth.ion.example",
        jwt_audience="ion-mentoring",
        **overrides,
    )


def function_app(target: str, folder: str | None = None, signature_type: str = "http") -> Flask:
    """The functions-framework app serving `target` from functions/<folder>/main.py, as an
    instance start builds it (the library ships no type information: its app is a Flask)."""
    source = REPO / "functions" / (folder or target) / "main.py"
    create: Callable[..., Flask] = functions_framework.create_app
    return create(target=target, source=str(source), signature_type=signature_type)


def function_client(name: str) -> FlaskClient:
    return function_app(name).test_client()


@pytest.fixture
def chat_client(app: App) -> FlaskClient:
    return function_client("chat")


@pytest.fixture
def route_client(app: App) -> FlaskClient:
    return function_client("persona_route")


@pytest.fixture
def auth(app: App) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.dev_token('alice')}"}


@pytest.fixture
def operator_auth(app: App) -> dict[str, str]:
    """An operator's token (the role claim ION_OPERATOR_CLAIM holds ION_OPERATOR_ROLE)."""
    return {"Authorization": f"Bearer {app.dev_token('olivia', operator=True)}"}


@pytest.fixture
def auth_bob(app: App) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.dev_token('bob')}"}
