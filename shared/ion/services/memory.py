"""Conversation memory beyond the history window: a rolling summary.

When a conversation outgrows the window, what falls out of it is summarised, and every
prompt gets the summary plus the recent window (domain/prompts). The summary is stored
with the conversation (`MemoryStore`: a column of its row, a field of its document), so
deleting the conversation erases it.

- **When.** After a turn is saved, once at least `refresh_every` messages have left the
  window since the last summary. Never on the hot path: the offline summary is a cheap,
  deterministic extraction made after the save; with a model provider the summarising
  call runs on a background worker after the answer was handed back (a failure keeps the
  previous summary and is logged; the next turn tries again).
- **How.** Offline: `domain.memory.extractive_summary`. With a model: a short
  summarisation request (the previous summary + the messages that left the window),
  answered in the conversation's language; the extractive summary stands in when the
  model fails.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import Future, ThreadPoolExecutor

from ion.domain.memory import extractive_summary
from ion.domain.models import Language, LlmRequest, Message
from ion.errors import IonError
from ion.ports import Clock, ConversationMemory, ConversationStore, LanguageModel, MemoryStore

log = logging.getLogger(__name__)

_SUMMARY_PROMPT: dict[Language, str] = {
    "en": (
        "You keep a mentor's notes on one conversation with a learner. Update the notes with"
        " the new messages: facts about the learner (name, goals, level, stack, projects,"
        " deadlines, numbers, feelings that matter) and what was decided. At most {limit}"
        " characters, one fact per line starting with '- ', in English. Notes only, no advice."
    ),
    "ko": (
        "당신은 학습자와의 한 대화에 대한 멘토의 메모를 관리합니다. 새 메시지로 메모를"
        " 갱신하세요: 학습자에 대한 사실(이름, 목표, 수준, 기술 스택, 프로젝트, 마감, 수치,"
        " 중요한 감정)과 결정된 것. 최대 {limit}자, 한 줄에 하나씩 '- '로 시작, 한국어로."
        " 메모만 쓰고 조언은 하지 마세요."
    ),
}


class MemoryService:
    """Loads the summary for a turn's prompt and refreshes it after the turn."""

    def __init__(
        self,
        *,
        store: ConversationStore,
        memory: MemoryStore,
        clock: Clock,
        history_window: int,
        llm: LanguageModel | None = None,
        refresh_every: int = 6,
        max_chars: int = 1200,
    ) -> None:
        self._store = store
        self._memory = memory
        self._clock = clock
        self._window = max(history_window, 1)
        self._llm = llm
        self._refresh_every = max(refresh_every, 1)
        self._max_chars = max_chars
        # One background worker per instance for model summaries (None offline).
        self._executor = (
            ThreadPoolExecutor(max_workers=1, thread_name_prefix="ion-memory")
            if llm is not None
            else None
        )
        self._pending: set[str] = set()
        self._lock = threading.Lock()

    def summary_for(self, memory: ConversationMemory | None, message_count: int) -> str:
        """The summary to put in the prompt, from the conversation's `memory` as the turn
        read it ('' while everything fits the window)."""
        if message_count <= self._window or memory is None:
            return ""
        return memory.summary

    def after_turn(
        self,
        conversation_id: str,
        message_count: int,
        language: Language,
        current: ConversationMemory | None,
    ) -> None:
        """Refresh the summary (`current`: as the turn read it) when enough messages have
        left the window (never raises)."""
        left_window = message_count - self._window
        if left_window < self._refresh_every:
            return
        through = current.through if current is not None else 0
        if left_window - through < self._refresh_every:
            return
        if self._executor is None:
            self._refresh(conversation_id, current, language)
            return
        with self._lock:
            if conversation_id in self._pending:
                return
            self._pending.add(conversation_id)
        self._executor.submit(self._refresh_in_background, conversation_id, current, language)

    def drain(self) -> None:
        """Wait for the background summaries started so far (tests, CLI exit)."""
        if self._executor is None:
            return
        done: Future[None] = self._executor.submit(lambda: None)
        done.result()

    def _refresh_in_background(
        self, conversation_id: str, current: ConversationMemory | None, language: Language
    ) -> None:
        try:
            self._refresh(conversation_id, current, language)
        finally:
            with self._lock:
                self._pending.discard(conversation_id)

    def _refresh(
        self, conversation_id: str, current: ConversationMemory | None, language: Language
    ) -> None:
        try:
            messages = self._store.list_messages(conversation_id)
            through = max(len(messages) - self._window, 0)
            previous = current.summary if current is not None else ""
            start = current.through if current is not None else 0
            dropped = [m for m in messages[start:through] if m.status == "complete"]
            summary = self._summarise(previous, dropped, language)
            self._memory.put_memory(
                conversation_id,
                ConversationMemory(summary=summary, through=through, updated_at=self._clock.now()),
            )
        except Exception:
            # Memory is best effort: the next turn tries again.
            log.exception("refreshing the conversation summary failed")

    def _summarise(self, previous: str, dropped: list[Message], language: Language) -> str:
        learner = [m.text for m in dropped if m.role == "user"]
        fallback = extractive_summary(previous, learner, max_chars=self._max_chars)
        if self._llm is None or not dropped:
            return fallback
        transcript = "\n".join(f"{m.role}: {m.text}" for m in dropped)
        request = LlmRequest(
            persona_id="memory",
            system_prompt=_SUMMARY_PROMPT[language].format(limit=self._max_chars),
            message=f"Notes so far:\n{previous or '(none)'}\n\nNew messages:\n{transcript}",
            language=language,
            temperature=0.2,
            max_output_tokens=512,
        )
        try:
            response = self._llm.generate(request)
        except IonError as exc:
            log.warning("summary from the extractive fallback: the model failed (%s)", exc.code)
            return fallback
        text = response.text.strip()
        return text[: self._max_chars] if text else fallback
