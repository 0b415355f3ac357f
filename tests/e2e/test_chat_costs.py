"""What one `POST /v1/chat` costs the stores, counted exactly through the real HTTP app:
SQLite write transactions on the embedded backend, Firestore RPCs and their sequential
rounds on the emulator (docs/data-model.md, "RPCs per chat turn"). Abuse protection (rate
limits, the token budget's reservation and settlement), the response cache, the profile
and the summary are all on, as in production.

Each test makes a warm-up turn as another learner first, so the counts are a warm
instance's: the schema is applied and the routing statistics are cached."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from ion.bootstrap import App, build_app, get_app, set_app
from ion.services.orchestration import TurnOrchestrator
from tests.support.app import firestore_app_settings, function_client, make_settings
from tests.support.costs import FirestoreRpcs, SqliteWrites
from tests.support.pubsub import PubSubTopic

FIRST = "How does a B-tree index work?"
FOLLOW_UP = "and how is it different from a hash index?"
CRISIS = "this sprint is endless and lately I keep thinking it'd be easier to just not wake up"


@dataclass
class Learner:
    client: FlaskClient
    auth: dict[str, str]

    def chat(
        self,
        message: str,
        conversation_id: str | None = None,
        *,
        stream: bool = False,
        key: str | None = None,
    ) -> dict[str, Any]:
        """The reply; streamed, its `meta` and `done` events' fields."""
        body: dict[str, Any] = {"message": message, "stream": stream}
        if conversation_id is not None:
            body["conversation_id"] = conversation_id
        headers = {**self.auth, **({"Idempotency-Key": key} if key is not None else {})}
        response = self.client.post("/v1/chat", json=body, headers=headers)
        assert response.status_code == 200, response.get_data(as_text=True)
        if not stream:
            reply: dict[str, Any] = response.get_json()
            return reply
        events = {}
        for block in response.get_data(as_text=True).strip().split("\n\n"):
            name, data = (line.partition(": ")[2] for line in block.split("\n"))
            events[name] = json.loads(data)
        assert set(events) == {"meta", "delta", "done"}
        return {**events["meta"], **events["done"]}


def learner(app: App, user: str) -> Learner:
    return Learner(function_client("chat"), {"Authorization": f"Bearer {app.dev_token(user)}"})


@contextmanager
def serving(app: App) -> Iterator[None]:
    """`app` is the instance's, warmed up by another learner's turn (schema, statistics)."""
    set_app(app)
    try:
        learner(app, "warm-up").chat(FIRST)
        yield
    finally:
        set_app(None)


KINDS = (
    "first",
    "follow_up",
    "cached",
    "crisis",
    "streamed",
    "first_keyed",
    "follow_up_keyed",
    "streamed_keyed",
    "replayed",
)


def set_up(kind: str, who: Learner) -> Callable[[], dict[str, Any]]:
    """Whatever the kind of turn needs before it (not counted); the turn itself. `_keyed`:
    with an Idempotency-Key; `replayed`: a retry of a first turn with the same key."""
    key = f"key-{kind}" if kind.endswith("_keyed") else None
    if kind in ("follow_up", "streamed", "follow_up_keyed", "streamed_keyed"):
        cid = who.chat(FIRST)["conversation_id"]
        return lambda: who.chat(FOLLOW_UP, cid, stream=kind.startswith("streamed"), key=key)
    if kind == "replayed":
        first = who.chat(FIRST, key="key-replayed")

        def retry() -> dict[str, Any]:
            reply = who.chat(FIRST, key="key-replayed")
            assert reply == first
            return reply

        return retry
    if kind == "first_keyed":
        return lambda: who.chat(FIRST, key=key)
    if kind == "cached":
        who.chat(FIRST)  # the same first message in a new conversation is answered from it
        return lambda: who.chat(FIRST)
    return lambda: who.chat(CRISIS if kind == "crisis" else FIRST)


def take_turn(kind: str, who: Learner, start_counting: Callable[[], None]) -> None:
    """One turn of `kind`, counted from its request on; it was the kind it claims to be."""
    turn = set_up(kind, who)
    start_counting()
    reply = turn()
    assert reply["cached"] is (kind == "cached")
    assert reply["safety"]["crisis"] is (kind == "crisis")


# --- SQLite ------------------------------------------------------------------------


@pytest.fixture
def sqlite_writes(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[SqliteWrites]:
    writes = SqliteWrites()
    writes.install(monkeypatch)
    with serving(build_app(make_settings(clean_env / "data"))):
        writes.reset()
        yield writes


@pytest.fixture
def alice(sqlite_writes: SqliteWrites) -> Learner:
    return learner(get_app(), "alice")


# At most two write transactions per turn: one before the answer (the turn's claim and
# charges), one after (the turn, its settlement, its events, its cache entry).
MAX_SQLITE_WRITES = 2
SQLITE_WRITES = {
    "first": 2,
    "follow_up": 2,
    "cached": 2,
    "crisis": 2,
    "streamed": 2,
    # The key's claim joins the first transaction and its stored reply the second.
    "first_keyed": 2,
    "follow_up_keyed": 2,
    "streamed_keyed": 2,
    # The retry: its claim finds the stored reply; the API limit counts it.
    "replayed": 2,
}


@pytest.mark.parametrize("kind", KINDS)
def test_sqlite_write_transactions_per_turn(
    kind: str, sqlite_writes: SqliteWrites, alice: Learner
) -> None:
    take_turn(kind, alice, sqlite_writes.reset)
    assert sqlite_writes.stray_writes == []  # every write is inside a counted transaction
    assert sqlite_writes.transactions <= MAX_SQLITE_WRITES
    assert sqlite_writes.transactions == SQLITE_WRITES[kind]


# --- Firestore ---------------------------------------------------------------------


@pytest.fixture
def firestore_rpcs(
    clean_env: Path,
    firestore_reset: None,
    pubsub_topic: PubSubTopic,
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[FirestoreRpcs]:
    app = build_app(firestore_app_settings(clean_env / "data", pubsub_topic.topic))
    rpcs = FirestoreRpcs()
    rpcs.install(app.store.client, monkeypatch)  # type: ignore[attr-defined]
    rpcs.watch(app.backend.access, monkeypatch)
    with serving(app):
        rpcs.reset()
        yield rpcs


@pytest.fixture
def fs_alice(firestore_rpcs: FirestoreRpcs) -> Learner:
    return learner(get_app(), "alice")


# The RPCs in the order they are issued (C Commit, G BatchGetDocuments, Q RunQuery), those
# made at the same time in brackets (one branch each), and the sequential rounds they take.
MAX_FIRESTORE_ROUNDS = 4
FIRESTORE_RPCS = {
    # The profile; the cache lookup with the charge; the save with the settlement; the
    # cache entry.
    "first": ("G, [G | C], [C | C], C", 4),
    # The conversation with its history window, with the profile; the claim with the
    # charge; the save with the settlement.
    "follow_up": ("[[G | Q] | G], C, [C | C]", 3),
    # A cached answer: its reservation is given back with the save.
    "cached": ("G, [G | C], [C | C]", 3),
    # No profile, no budget: the API limit; the save.
    "crisis": ("[C], [C]", 2),
    # A follow-up streamed: the same as answered whole.
    "streamed": ("[[G | Q] | G], C, [C | C]", 3),
    # With an Idempotency-Key: its claim at the same time as the first reads, its reply
    # stored at the same time as the cache entry (a first turn) or after the save.
    "first_keyed": ("[C | G], [G | C], [C | C], [C | C]", 4),
    "follow_up_keyed": ("[C | [G | Q] | G], C, [C | C], [C]", 4),
    "streamed_keyed": ("[C | [G | Q] | G], C, [C | C], [C]", 4),
    # The retry of a first turn with its key: the claim finds the key taken, reads the
    # stored reply and checks its conversation (the profile read meanwhile is unused);
    # then the API limit counts the call.
    "replayed": ("[C G G | G], C", 4),
}
LETTERS = {"commit": "C", "batch_get_documents": "G", "run_query": "Q"}


@pytest.mark.emulator
@pytest.mark.parametrize("kind", KINDS)
def test_firestore_rpcs_and_rounds_per_turn(
    kind: str, firestore_rpcs: FirestoreRpcs, fs_alice: Learner
) -> None:
    take_turn(kind, fs_alice, firestore_rpcs.reset)
    plan, rounds = FIRESTORE_RPCS[kind]
    assert firestore_rpcs.plan(LETTERS) == plan
    assert firestore_rpcs.rounds <= MAX_FIRESTORE_ROUNDS
    assert firestore_rpcs.rounds == rounds


# --- the embedding model -------------------------------------------------------------

TWO_NEEDS = "I'm panicking about the deadline. How should I structure the capstone's backend?"


class CountingModel:
    """The embedding library behind `UseEmbedder`, counting its forward passes."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.batches: list[list[str]] = []

    def encode(self, texts: list[str]) -> Any:
        self.batches.append(list(texts))
        return self._inner.encode(texts)


def _counting(app: App) -> CountingModel:
    """`app`'s embedding model, counted from here on, with nothing read before."""
    semantic = app.router.semantic  # type: ignore[attr-defined]
    model = CountingModel(semantic.embedder._model)
    semantic.embedder._model = model
    semantic.embedder._cache.clear()  # one embedder per process: other tests' texts
    return model


def _forward_passes(app: App, message: str) -> list[list[str]]:
    """The texts of each forward pass of the embedding model while `app` answers
    `message`."""
    model = _counting(app)
    with serving(app):
        model.batches.clear()
        learner(app, "alice").chat(message)
    return model.batches


def test_a_message_and_its_parts_are_embedded_in_one_model_call(clean_env: Path) -> None:
    app = build_app(make_settings(clean_env / "data"))
    parts = TurnOrchestrator(app.catalog).parts(TWO_NEEDS)
    assert len(parts) == 2  # the duo rule routes each part on its own
    batches = _forward_passes(app, TWO_NEEDS)
    # One forward pass for the message and both parts; the detector, the router and the
    # duo rule then read them from the embedder's recent vectors.
    assert len(batches) == 1
    assert len(batches[0]) == 3


LONG_TWO_NEEDS = (
    "This week has been a lot. My team lead moved the demo to Thursday, and half of the API"
    " is still mocked. I stayed up until three last night fixing the login flow, and this"
    " morning the tests were red again for reasons I do not understand. I'm panicking about"
    " the deadline. How should I structure the capstone's backend so that the rest lands?"
)


def test_a_long_message_its_segments_and_its_parts_are_embedded_in_one_model_call(
    clean_env: Path,
) -> None:
    app = build_app(make_settings(clean_env / "data"))
    segments = app.detector.model_texts(LONG_TWO_NEEDS)
    parts = TurnOrchestrator(app.catalog).parts(LONG_TWO_NEEDS)
    assert len(segments) > 2 and len(parts) >= 2  # the detector reads sentence groups
    batches = _forward_passes(app, LONG_TWO_NEEDS)
    assert len(batches) == 1
    assert len(batches[0]) == len({LONG_TWO_NEEDS, *segments, *parts})


def test_a_message_to_a_missing_or_busy_conversation_costs_no_model_call(
    clean_env: Path,
) -> None:
    app = build_app(make_settings(clean_env / "data"))
    model = _counting(app)
    with serving(app):
        alice = learner(app, "alice")
        conversation = alice.chat(FIRST)["conversation_id"]
        now = datetime.now(UTC)
        claim = app.store.claim_turn(
            conversation, "alice", now=now, until=now + timedelta(minutes=1)
        )
        assert claim.lease is not None  # the turn is being answered elsewhere
        model.batches.clear()
        for conversation_id, status in (("no-such-conversation", 404), (conversation, 409)):
            response = alice.client.post(
                "/v1/chat",
                json={
                    "message": "and what about the deploy script?",
                    "conversation_id": conversation_id,
                },
                headers=alice.auth,
            )
            assert response.status_code == status, response.get_data(as_text=True)
    assert model.batches == []
