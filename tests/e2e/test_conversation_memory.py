"""Conversation memory beyond the history window: the rolling summary on both backends
(`store` fixture: SQLite and the Firestore emulator), offline and through the fake Gemini
server."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from ion.domain.memory import extractive_summary
from ion.domain.models import Conversation
from ion.domain.personas import load_catalog
from ion.domain.routing import Router
from ion.ports import ConversationMemory
from ion.services.chat import ChatService
from ion.services.memory import MemoryService
from tests.fakes.clock import ManualClock
from tests.fakes.events import RecordingPublisher
from tests.fakes.gemini import FakeGemini, answer
from tests.fakes.llm import RecordingLlm

FACT = "My capstone is a Flutter app called Plantly and my deadline is June 12."
WINDOW = 12
T0 = datetime(2026, 3, 1, 9, 0, tzinfo=UTC)


def service(store: Any, llm: Any, memory_llm: Any = None) -> tuple[ChatService, MemoryService]:
    catalog = load_catalog()
    clock = ManualClock(tick=timedelta(seconds=1))
    memory = MemoryService(
        store=store, memory=store, clock=clock, history_window=WINDOW, llm=memory_llm
    )
    chat = ChatService(
        store=store,
        llm=llm,
        router=Router(catalog),
        catalog=catalog,
        events=RecordingPublisher(),
        clock=clock,
        history_window=WINDOW,
        memory=memory,
    )
    return chat, memory


def test_the_extractive_summary_keeps_what_the_learner_said_about_themselves() -> None:
    texts = ["thanks!", FACT, "what is a closure in javascript exactly?"]
    summary = extractive_summary("", texts, max_chars=200)
    assert summary.splitlines()[0] == f"- {FACT}"
    assert "thanks" not in summary
    # Rolling: the previous lines compete with the new ones, and the budget holds.
    rolled = extractive_summary(summary, ["I work at a bank in Busan."] * 3, max_chars=120)
    assert rolled.splitlines() == [f"- {FACT}", "- I work at a bank in Busan."]
    assert extractive_summary(summary, [], max_chars=10) == ""
    assert extractive_summary("", texts, max_chars=200) == summary  # deterministic


def test_a_fact_from_turn_2_reaches_the_prompt_at_turn_30(store: Any) -> None:
    llm = RecordingLlm()
    chat, _ = service(store, llm)
    first = chat.send("mina", "How do I structure a Flutter project with several screens?")
    chat.send("mina", FACT, first.conversation_id)
    for turn in range(3, 30):
        chat.send(
            "mina", f"How does widget rebuilding work, question {turn}?", first.conversation_id
        )
    chat.send("mina", "So what should I build first?", first.conversation_id)

    last = llm.requests[-1]
    assert all(FACT not in t.text for t in last.history)  # long out of the window ...
    assert "Plantly" in last.system_prompt  # ... yet remembered
    memory = store.get_memory(first.conversation_id)
    assert memory is not None and memory.through >= 2 * 29 - WINDOW - 6
    assert FACT in memory.summary


def test_the_summary_is_erased_with_its_conversation(store: Any) -> None:
    chat, _ = service(store, RecordingLlm())
    first = chat.send("mina", FACT)
    for turn in range(12):
        chat.send(
            "mina", f"I have another question about state, number {turn}", first.conversation_id
        )
    assert store.get_memory(first.conversation_id) is not None
    chat.delete_conversation("mina", first.conversation_id)
    assert store.get_memory(first.conversation_id) is None
    memory = ConversationMemory(summary="- x", through=4, updated_at=T0)
    assert store.put_memory(first.conversation_id, memory) is False
    assert store.get_memory(first.conversation_id) is None


def test_an_older_summary_never_replaces_a_newer_one(store: Any) -> None:
    conversation = Conversation(id="c-mem", user_id="u1", created_at=T0, updated_at=T0)
    store.save_turn(conversation, [])
    newer = ConversationMemory(summary="- newer", through=20, updated_at=T0)
    older = ConversationMemory(summary="- older", through=8, updated_at=T0)
    assert store.put_memory("c-mem", newer) is True
    assert store.put_memory("c-mem", older) is True
    assert store.get_memory("c-mem") == newer
    # A turn saved afterwards keeps the summary (it is not part of the turn's write).
    store.save_turn(conversation.model_copy(update={"title": "renamed"}), [])
    assert store.get_memory("c-mem") == newer


def test_with_a_model_the_summary_is_one_call_after_the_answer(
    sqlite_store: Any, fake_gemini: FakeGemini
) -> None:
    pytest.importorskip("google.genai")
    from ion.adapters.gemini import GeminiLanguageModel

    model = GeminiLanguageModel(
        api_key="k", model="gemini-memory-test", base_url=fake_gemini.base_url, timeout_s=5.0
    )
    chat, memory = service(sqlite_store, RecordingLlm(), memory_llm=model)
    fake_gemini.enqueue("gemini-memory-test", answer("- Mina builds Plantly, due June 12"))
    first = chat.send("mina", FACT)
    for turn in range(9):
        chat.send("mina", f"another question about state, number {turn}", first.conversation_id)
    memory.drain()
    summaries = [
        r for r in fake_gemini.requests if "mentor's notes" in (r.system_instruction or "")
    ]
    assert len(summaries) == 1
    assert FACT in summaries[0].contents[-1][1]
    stored = sqlite_store.get_memory(first.conversation_id)
    assert stored is not None and stored.summary == "- Mina builds Plantly, due June 12"
