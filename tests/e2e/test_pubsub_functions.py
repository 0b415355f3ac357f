"""End to end over Pub/Sub: the chat, persona_route (HTTP + persona_events) and backup
functions as separate functions-framework processes, on the Firestore and Pub/Sub
emulators, wired with topics and PUSH subscriptions like on GCP.

- chat + feedback over HTTP → chat.turn.completed / feedback.recorded on the events topic →
  pushed to persona_events → GET /v1/routing/stats shows the counts;
- a scheduler-style message on the backup topic → pushed to backup → a backup appears in
  the catalog and on disk. The emulator has no managed export, so the backup function runs
  with ION_BACKUP_MODE=logical (a logical export of the emulator's Firestore to a local
  directory); the managed-export path is covered by tests/adapters/test_backup.py against a fake
  Firestore Admin API;
- one message delivered twice (same Pub/Sub message id), and the same event re-published
  as a new message → counted once.
"""

from __future__ import annotations

import base64
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import pytest
import requests

from ion.adapters.backup_format import verify_backup
from ion.adapters.tokens import issue_token
from ion.domain import events
from ion.domain.models import Intent, Pace, ResonanceKey, Tone, Usage
from tests.conftest import FIRESTORE_TEST_PROJECT
from tests.support.app import TEST_JWT_SECRET
from tests.support.backup import BACKUP_KEY
from tests.support.emulators import EmulatorProcess, free_port, start_emulator
from tests.support.paths import REPO
from tests.support.pubsub import PubSubEmulator

pytestmark = [pytest.mark.slow, pytest.mark.emulator]

T = TypeVar("T")
FF = str(Path(os.environ.get("VIRTUAL_ENV", REPO / ".venv")) / "bin" / "functions-framework")

ISSUER = "https://auth.ion.example"
AUDIENCE = "ion-mentoring"


def eventually(check: Callable[[], T | None], what: str, timeout_s: float = 60.0) -> T:
    """Poll until `check` returns something (asynchronous delivery); fail with `what`."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = check()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.2)


@dataclass
class Functions:
    chat: str
    route: str
    events: str
    backup: str
    events_topic: str
    backup_topic: str
    backup_dir: Path
    project: str


@pytest.fixture
def functions(
    pubsub_emulator: PubSubEmulator,
    firestore_emulator: EmulatorProcess,
    firestore_reset: None,
    tmp_path: Path,
) -> Iterator[Functions]:
    from google.cloud import pubsub_v1

    project = FIRESTORE_TEST_PROJECT
    assert pubsub_emulator.project == project
    suffix = uuid.uuid4().hex[:8]
    events_topic, backup_topic = f"ion-events-{suffix}", f"ion-backup-{suffix}"
    backup_dir = tmp_path / "backups"
    env = {
        "ION_BACKEND": "gcp",
        "ION_GCP_PROJECT": project,
        "ION_JWT_SECRET": TEST_JWT_SECRET,
        "ION_JWT_ISSUER": ISSUER,
        "ION_JWT_AUDIENCE": AUDIENCE,
        "ION_EVENTS_TOPIC": events_topic,
        "ION_BACKUP_MODE": "logical",
        "ION_BACKUP_HMAC_KEY": BACKUP_KEY.decode(),
        "ION_BACKUP_DIR": str(backup_dir),
        "ION_ROUTING_STATS_TTL_S": "0",
        "ION_DATA_DIR": str(tmp_path / "data"),
        "FIRESTORE_EMULATOR_HOST": firestore_emulator.address,
        "PUBSUB_EMULATOR_HOST": pubsub_emulator.host,
    }
    specs = {
        "chat": ("chat", "functions/chat/main.py", "http", "/health"),
        "route": ("persona_route", "functions/persona_route/main.py", "http", "/health"),
        "events": ("persona_events", "functions/persona_route/main.py", "cloudevent", "/"),
        "backup": ("backup", "functions/backup/main.py", "cloudevent", "/"),
    }
    processes: list[EmulatorProcess] = []
    urls: dict[str, str] = {}
    publisher = pubsub_v1.PublisherClient()
    subscriber = pubsub_v1.SubscriberClient()
    created: list[str] = []
    try:
        for name, (target, source, signature, ready) in specs.items():
            port = free_port()
            processes.append(
                start_emulator(
                    [
                        FF,
                        f"--target={target}",
                        f"--source={REPO / source}",
                        f"--signature-type={signature}",
                        "--host=127.0.0.1",
                        f"--port={port}",
                    ],
                    port,
                    ready,
                    env=env,
                    name=f"ff-{name}",
                    timeout_s=60.0,
                    log_dir=tmp_path,
                )
            )
            urls[name] = f"http://127.0.0.1:{port}"
        for topic, endpoint in ((events_topic, urls["events"]), (backup_topic, urls["backup"])):
            topic_path = publisher.topic_path(project, topic)
            publisher.create_topic(name=topic_path)
            subscription = subscriber.subscription_path(project, f"{topic}-push")
            subscriber.create_subscription(
                name=subscription,
                topic=topic_path,
                push_config={"push_endpoint": f"{endpoint}/"},
                ack_deadline_seconds=30,
            )
            created.append(subscription)
        yield Functions(
            chat=urls["chat"],
            route=urls["route"],
            events=urls["events"],
            backup=urls["backup"],
            events_topic=events_topic,
            backup_topic=backup_topic,
            backup_dir=backup_dir,
            project=project,
        )
    finally:
        for subscription in created:
            subscriber.delete_subscription(subscription=subscription)
        for process in processes:
            process.stop()
        subscriber.close()
        publisher.stop()


def _auth(user: str, *, operator: bool = False) -> dict[str, str]:
    token = issue_token(
        TEST_JWT_SECRET,
        user,
        now=datetime.now(UTC),
        ttl_s=3600,
        issuer=ISSUER,
        audience=AUDIENCE,
        role=("ion_role", "operator") if operator else None,
    )
    return {"Authorization": f"Bearer {token}"}


def _counts(fns: Functions, persona: str, key: dict[str, str]) -> tuple[int, int, int]:
    body = requests.get(
        f"{fns.route}/v1/routing/stats", headers=_auth("ops", operator=True), timeout=10
    )
    assert body.status_code == 200
    for row in body.json()["stats"]:
        if row["persona"] == persona and row["resonance_key"] == key:
            return row["turns"], row["ups"], row["downs"]
    return (0, 0, 0)


def _push_body(data: bytes, message_id: str) -> dict[str, Any]:
    return {
        "message": {
            "data": base64.b64encode(data).decode(),
            "messageId": message_id,
            "attributes": {"event_type": "chat.turn.completed"},
        },
        "subscription": "projects/ion-test/subscriptions/ion-events-push",
    }


def test_chat_feedback_backup_and_dedupe_over_pubsub(functions: Functions) -> None:
    from google.cloud import firestore, pubsub_v1

    from ion.adapters.firestore.records import FirestoreLearningAndBackupStore

    fns = functions
    alice = _auth("alice")

    # 1. Chat and feedback over HTTP; the statistics follow through Pub/Sub push.
    reply = requests.post(
        f"{fns.chat}/v1/chat",
        json={"message": "면접이 내일인데 너무 떨려요"},
        headers=alice,
        timeout=30,
    )
    assert reply.status_code == 200
    body = reply.json()
    persona, key = body["persona"]["id"], body["resonance_key"]
    eventually(lambda: _counts(fns, persona, key) == (1, 0, 0) or None, "the chat turn counted")
    url = f"{fns.chat}/v1/conversations/{body['conversation_id']}/messages/{body['message_id']}/feedback"
    rated = requests.post(url, json={"rating": "up"}, headers=alice, timeout=30)
    assert rated.status_code == 201
    eventually(lambda: _counts(fns, persona, key) == (1, 1, 0) or None, "the vote counted")

    # 2. A scheduler-style message on the backup topic → a backup appears.
    client: Any = firestore.Client(project=fns.project)
    catalog = FirestoreLearningAndBackupStore(client)
    publisher = pubsub_v1.PublisherClient()
    try:
        publisher.publish(
            publisher.topic_path(fns.project, fns.backup_topic), b'{"source":"cloud-scheduler"}'
        ).result(timeout=30)
    finally:
        publisher.stop()
    backups = eventually(lambda: catalog.list_backups() or None, "a backup in the catalog")
    assert [(b.kind, b.status) for b in backups] == [("logical", "succeeded")]
    manifest = verify_backup(Path(backups[0].location), key=BACKUP_KEY)
    assert manifest.counts["conversations"] == 1
    assert manifest.counts["feedback"] == 1
    assert manifest.counts["routing_stats"] >= 1

    # 3. One message delivered twice, and its event re-published as a new message: once.
    dup_key = ResonanceKey(tone=Tone.PLAYFUL, pace=Pace.CONTEMPLATIVE, intent=Intent.PLANNING)
    envelope = events.chat_turn_completed(
        conversation_id="c-dup",
        message_id="a-dup",
        user_id="bob",
        persona="nana",
        resonance_key=dup_key,
        model="offline",
        usage=Usage(),
        latency_ms=1,
        cached=False,
        occurred_at=datetime.now(UTC),
    )
    raw = events.encode_event(envelope)
    for message_id in ("dup-1", "dup-1", "dup-2"):
        delivered = requests.post(fns.events, json=_push_body(raw, message_id), timeout=30)
        assert delivered.status_code == 200
    assert _counts(fns, "nana", dup_key.model_dump(mode="json")) == (1, 0, 0)

    # A malformed message is acknowledged (dropped), not retried forever.
    junk = requests.post(fns.events, json=_push_body(b"not json", "junk-1"), timeout=30)
    assert junk.status_code == 200
    client.close()
