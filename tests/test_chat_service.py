"""The chat orchestration with in-memory fakes: no I/O at all."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from ion.adapters.offline import OfflineLanguageModel
from ion.domain.models import LlmChunk, LlmRequest, LlmResponse
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.errors import LlmBlocked, LlmError, NotFound
from ion.services.chat import ChatService
from tests.fakes import InMemoryStore, RecordingPublisher, TickingClock


class RecordingLlm(OfflineLanguageModel):
    def __init__(self) -> None:
        self.requests: list[LlmRequest] = []

    def generate(self, request: LlmRequest) -> LlmResponse:
        self.requests.append(request)
        return super().generate(request)


def make_service(
    llm: object | None = None, window: int = 4
) -> tuple[ChatService, InMemoryStore, RecordingPublisher]:
    store = InMemoryStore()
    events = RecordingPublisher()
    catalog = load_catalog()
    service = ChatService(
        store=store,
        llm=llm or RecordingLlm(),  # type: ignore[arg-type]
        router=Router(catalog),
        catalog=catalog,
        events=events,
        clock=TickingClock(),
        history_window=window,
    )
    return service, store, events


def test_turn_is_routed_prompted_persisted_and_published() -> None:
    llm = RecordingLlm()
    service, store, events = make_service(llm)
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


def test_history_window_only_sends_recent_answered_messages() -> None:
    llm = RecordingLlm()
    service, _, _ = make_service(llm, window=4)
    cid = service.send("alice", "what is a hash map?").conversation_id
    for i in range(3):
        service.send("alice", f"and what about collision strategy {i}?", cid)
    last = llm.requests[-1]
    assert len(last.history) == 4
    assert [t.role for t in last.history] == ["user", "assistant", "user", "assistant"]
    assert last.history[-2].text == "and what about collision strategy 1?"


def test_other_users_conversation_is_not_found() -> None:
    service, _, _ = make_service()
    cid = service.send("alice", "hello there, how do I start learning Go?").conversation_id
    with pytest.raises(NotFound):
        service.send("mallory", "hi", cid)
    with pytest.raises(NotFound):
        service.delete_conversation("mallory", cid)


class BrokenLlm(OfflineLanguageModel):
    def __init__(self, error: LlmError) -> None:
        self.error = error

    def generate(self, request: LlmRequest) -> LlmResponse:
        raise self.error

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        yield LlmChunk(text="partial ")
        raise self.error


@pytest.mark.parametrize(
    ("error", "status"), [(LlmError("down"), "unanswered"), (LlmBlocked("no"), "blocked")]
)
def test_llm_failure_keeps_the_user_message(error: LlmError, status: str) -> None:
    service, store, events = make_service(BrokenLlm(error))
    with pytest.raises(LlmError):
        service.send("alice", "explain closures")
    (conversation,) = store.conversations.values()
    (message,) = store.list_messages(conversation.id)
    assert (message.role, message.status, message.text) == ("user", status, "explain closures")
    assert events.events == []


def test_stream_cut_off_stores_partial_answer_as_incomplete() -> None:
    service, store, _ = make_service(BrokenLlm(LlmError("cut")))
    turn = service.prepare("alice", "explain closures")
    with pytest.raises(LlmError):
        list(service.stream(turn))
    messages = store.list_messages(turn.conversation.id)
    assert [(m.role, m.status) for m in messages] == [
        ("user", "complete"),
        ("assistant", "incomplete"),
    ]
    assert messages[1].text == "partial "


def test_client_gone_mid_stream_keeps_what_was_generated() -> None:
    service, store, _ = make_service()
    turn = service.prepare("alice", "how do I design a URL shortener?")
    stream = service.stream(turn)
    first = next(stream)
    stream.close()  # what the WSGI server does when the client disconnects
    messages = store.list_messages(turn.conversation.id)
    assert messages[1].status == "incomplete"
    assert messages[1].text == first.text


def test_stream_complete_persists_full_text() -> None:
    service, store, events = make_service()
    turn = service.prepare("alice", "how do I design a URL shortener?")
    chunks = list(service.stream(turn))
    final = chunks[-1].final
    assert final is not None
    assert "".join(c.text for c in chunks[:-1]) == final.text
    assert store.list_messages(turn.conversation.id)[1].text == final.text
    assert len(events.events) == 1


# --- the turn lease is given back on every path ------------------------------------------


class ExplodingLlm(RecordingLlm):
    def generate(self, request: LlmRequest) -> LlmResponse:
        self.requests.append(request)
        raise RuntimeError("a bug, not an LLM error")


def test_a_held_turn_refuses_a_second_one_without_a_model_call() -> None:
    from ion.errors import TurnInProgress

    llm = RecordingLlm()
    service, store, _ = make_service(llm)
    cid = service.send("alice", "what is a hash map?").conversation_id
    held = service.prepare("alice", "and a set?", cid)
    with pytest.raises(TurnInProgress) as refused:
        service.prepare("alice", "and a list?", cid)
    assert (refused.value.status, refused.value.retry_after_s) == (409, 2)
    assert len(llm.requests) == 1
    service.abandon(held)
    assert store.leases == {}
    service.send("alice", "and a list?", cid)
    assert store.leases == {} and len(llm.requests) == 2


@pytest.mark.parametrize("path", ["client_gone", "llm_error", "bug", "answered"])
def test_every_way_a_turn_ends_releases_its_lease(path: str) -> None:
    llm: RecordingLlm = {
        "client_gone": RecordingLlm(),
        "llm_error": BrokenLlm(LlmError("down")),  # type: ignore[dict-item]
        "bug": ExplodingLlm(),
        "answered": RecordingLlm(),
    }[path]
    service, store, _ = make_service(RecordingLlm())
    cid = service.send("alice", "what is a hash map?").conversation_id
    service._llm = llm
    turn = service.prepare("alice", "and a set?", cid)
    assert store.leases != {}
    if path == "client_gone":
        stream = service.stream(turn)
        next(stream)
        stream.close()
    elif path == "answered":
        service.answer(turn)
    else:
        with pytest.raises((LlmError, RuntimeError)):
            service.answer(turn)
    assert store.leases == {}
