"""Pytest fixtures: Google's Pub/Sub emulator (real, from the google-cloud-cli) and the fake
Secret Manager. Registered from tests/conftest.py via `pytest_plugins`.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.fakes.secretmanager import FakeSecretManager
from tests.support.emulators import (
    JAVA_HINT,
    EmulatorError,
    env_var,
    find_java,
    free_port,
    gcloud_sdk_root,
    start_emulator,
)

EMULATOR_PROJECT = "ion-test"
_INSTALL_HINT = (
    "install it with `apt-get install google-cloud-cli-pubsub-emulator` "
    "(or `gcloud components install pubsub-emulator`)"
)


@dataclass(frozen=True)
class PubSubEmulator:
    host: str  # "127.0.0.1:PORT", the PUBSUB_EMULATOR_HOST value
    project: str
    startup_s: float


@dataclass(frozen=True)
class PubSubTopic:
    topic: str  # short topic id
    topic_path: str
    subscription_path: str


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PubSubEmulator]:
    """Start the Pub/Sub emulator once per session and point PUBSUB_EMULATOR_HOST at it."""
    launcher = gcloud_sdk_root() / "platform" / "pubsub-emulator" / "bin" / "cloud-pubsub-emulator"
    if not launcher.is_file():
        pytest.fail(f"Pub/Sub emulator not found at {launcher}: {_INSTALL_HINT}", pytrace=False)
    if find_java() is None:
        pytest.fail(f"the Pub/Sub emulator needs {JAVA_HINT}", pytrace=False)
    port = free_port()
    try:
        emulator = start_emulator(
            [str(launcher), "--host=127.0.0.1", f"--port={port}"],
            port,
            "/",
            name="pubsub",
            timeout_s=60.0,
            log_dir=tmp_path_factory.mktemp("pubsub-emulator"),
        )
    except EmulatorError as exc:
        pytest.fail(str(exc), pytrace=False)
    try:
        with env_var("PUBSUB_EMULATOR_HOST", emulator.address):
            yield PubSubEmulator(
                host=emulator.address, project=EMULATOR_PROJECT, startup_s=emulator.startup_s
            )
    finally:
        emulator.stop()


@pytest.fixture
def pubsub_topic(pubsub_emulator: PubSubEmulator) -> Iterator[PubSubTopic]:
    """A fresh topic with one pull subscription on the emulator (admin clients, no mocks)."""
    from google.cloud import pubsub_v1

    topic = f"ion-events-{uuid.uuid4().hex[:8]}"
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    topic_path = publisher.topic_path(pubsub_emulator.project, topic)
    subscription_path = subscriber.subscription_path(pubsub_emulator.project, f"{topic}-sub")
    publisher.create_topic(name=topic_path)
    subscriber.create_subscription(name=subscription_path, topic=topic_path)
    try:
        yield PubSubTopic(topic=topic, topic_path=topic_path, subscription_path=subscription_path)
    finally:
        subscriber.delete_subscription(subscription=subscription_path)
        publisher.delete_topic(topic=topic_path)
        subscriber.close()
        publisher.stop()


@pytest.fixture
def fake_secretmanager() -> Iterator[FakeSecretManager]:
    """A running fake Secret Manager REST server on a free loopback port."""
    with FakeSecretManager() as fake:
        yield fake
