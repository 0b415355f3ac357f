"""The chat orchestration over the real SQLite store (a file in the test's tmp dir), the
offline model behind the shared LLM fake, and a recording publisher: no network."""

from __future__ import annotations

import json
from collections.abc import Generator
from datetime import timedelta

import pytest

from ion.adapters.sqlite.conversations import SqliteStore
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.errors import LlmBlocked, LlmError, NotFound
from ion.ports import LanguageModel
from ion.services.chat import ChatService
from tests.fakes.clock import ManualClock
from tests.fakes.events import RecordingPublisher
from tests.fakes.llm import RecordingLlm


def make_service(
    store: SqliteStore,
    llm: LanguageModel | None = None,
    window: int = 4,
    clock: ManualClock | None = None,
) -> tuple[ChatService, SqliteStore, RecordingPublisher]:
    events = RecordingPublisher()
    catalog = load_catalog()
    service = ChatService(
        store=store,
        llm=llm or RecordingLlm(),
        router=Router(catalog),
        catalog=catalog,
        events=events,
        clock=clock or ManualClock(tick=timedelta(seconds=1)),
        history_window=window,
    )
    return service, store, events


def lease_is_free(store: SqliteStore, clock: ManualClock, conversation_id: str) -> bool:
    """Whether a new turn could start now (claims the lease and gives it straight back)."""
    now = clock.current
    claim = store.claim_turn(conversation_id, "alice", now=now, until=now + timedelta(seconds=30))
    if claim.lease is None:
        return False
    store.release_turn(conversation_id, claim.lease)
    return True


def test_turn_is_routed_prompted_persisted_and_published(sqlite_store: SqliteStore) -> None:
    llm = RecordingLlm()
    service, store, events = make_service(sqlite_store, llm)
    reply = service.send("alice", "벤치마크 결과 p99가 120ms인데 이거 괜찮은 수치인가요?")
    assert reply.persona.id == "riri"
    request = llm.requests[0]
    assert request.language == "ko"
    assert request.system_prompt.startswith(reply.persona.system_prompt["ko"])
    assert request.history == []
    messages = store.list_messages(reply.conversation_id)
    assert [m.role for m in messages] == ["user", "assistant"]
    assert messages[1].model == "offline" and messages[1].usage == reply.usage
    assert messages[0].routing == reply.routing
    ((event_type, payload),) = events.events
    assert event_type == "chat.turn.completed"
    assert payload["data"]["message_id"] == reply.message_id
    assert payload["data"]["persona"] == "riri"
    assert "alice" not in json.dumps(payload)
    assert "p99" not in json.dumps(payload), "message text must never leave in an event"


def test_history_window_only_sends_recent_answered_messages(sqlite_store: SqliteStore) -> None:
    llm = RecordingLlm()
    service, _, _ = make_service(sqlite_store, llm, window=4)
    cid = service.send("alice", "what is a hash map?").conversation_id
    for i in range(3):
        service.send("alice", f"and what about collision strategy {i}?", cid)
    last = llm.requests[-1]
    assert len(last.history) == 4
    assert [t.role for t in last.history] == ["user", "assistant", "user", "assistant"]
    assert last.history[-2].text == "and what about collision strategy 1?"


def test_other_users_conversation_is_not_found(sqlite_store: SqliteStore) -> None:
    service, _, _ = make_service(sqlite_store)
    cid = service.send("alice", "hello there, how do I start learning Go?").conversation_id
    with pytest.raises(NotFound):
        service.send("mallory", "hi", cid)
    with pytest.raises(NotFound):
        service.delete_conversation("mallory", cid)


@pytest.mark.parametrize(
    ("error", "status"), [(LlmError("down"), "unanswered"), (LlmBlocked("no"), "blocked")]
)
def test_llm_failure_keeps_the_user_message(
    error: LlmError, status: str, sqlite_store: SqliteStore
) -> None:
    service, store, events = make_service(sqlite_store, RecordingLlm(failure=error))
    with pytest.raises(LlmError):
        service.send("alice", "explain closures")
    (conversation,) = store.list_conversations("alice", limit=10).conversations
    (message,) = store.list_messages(conversation.id)
    assert (message.role, message.status, message.text) == ("user", status, "explain closures")
    assert events.events == []


def test_stream_cut_off_stores_partial_answer_as_incomplete(sqlite_store: SqliteStore) -> None:
    service, store, _ = make_service(
        sqlite_store, RecordingLlm(failure=LlmError("cut"), partial="partial ")
    )
    turn = service.prepare("alice", "explain closures")
    with pytest.raises(LlmError):
        list(service.stream(turn))
    messages = store.list_messages(turn.conversation.id)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "incomplete"),
    ]
    assert messages[1].text == "partial "


def test_client_gone_mid_stream_keeps_what_was_generated(sqlite_store: SqliteStore) -> None:
    service, store, _ = make_service(sqlite_store)
    turn = service.prepare("alice", "how do I design a URL shortener?")
    stream = service.stream(turn)
    first = next(stream)
    assert isinstance(stream, Generator)
    stream.close()  # what the WSGI server does when the client disconnects
    messages = store.list_messages(turn.conversation.id)
    assert messages[1].status == "incomplete"
    assert messages[1].text == first.text


def test_stream_complete_persists_full_text(sqlite_store: SqliteStore) -> None:
    service, store, events = make_service(sqlite_store)
    turn = service.prepare("alice", "how do I design a URL shortener?")
    chunks = list(service.stream(turn))
    final = chunks[-1].final
    assert final is not None
    assert "".join(c.text for c in chunks[:-1]) == final.text
    assert store.list_messages(turn.conversation.id)[1].text == final.text
    assert len(events.events) == 1


# --- the turn lease is given back on every path ------------------------------------------


def test_a_held_turn_refuses_a_second_one_without_a_model_call(sqlite_store: SqliteStore) -> None:
    from ion.errors import TurnInProgress

    llm, clock = RecordingLlm(), ManualClock(tick=timedelta(seconds=1))
    service, store, _ = make_service(sqlite_store, llm, clock=clock)
    cid = service.send("alice", "what is a hash map?").conversation_id
    held = service.prepare("alice", "and a set?", cid)
    with pytest.raises(TurnInProgress) as refused:
        service.prepare("alice", "and a list?", cid)
    assert (refused.value.status, refused.value.retry_after_s) == (409, 2)
    assert len(llm.requests) == 1
    service.abandon(held)
    assert lease_is_free(store, clock, cid)
    service.send("alice", "and a list?", cid)
    assert lease_is_free(store, clock, cid) and len(llm.requests) == 2


@pytest.mark.parametrize("path", ["client_gone", "llm_error", "bug", "answered"])
def test_every_way_a_turn_ends_releases_its_lease(path: str, sqlite_store: SqliteStore) -> None:
    llm = RecordingLlm()
    clock = ManualClock(tick=timedelta(seconds=1))
    service, store, _ = make_service(sqlite_store, llm, clock=clock)
    cid = service.send("alice", "what is a hash map?").conversation_id
    llm.failure = {
        "client_gone": None,
        "llm_error": LlmError("down"),
        "bug": RuntimeError("a bug, not an LLM error"),
        "answered": None,
    }[path]
    turn = service.prepare("alice", "and a set?", cid)
    assert not lease_is_free(store, clock, cid)
    if path == "client_gone":
        stream = service.stream(turn)
        next(stream)
        assert isinstance(stream, Generator)
        stream.close()
    elif path == "answered":
        service.answer(turn)
    else:
        with pytest.raises((LlmError, RuntimeError)):
            service.answer(turn)
    assert lease_is_free(store, clock, cid)
