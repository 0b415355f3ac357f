"""Ports: the small interfaces the domain needs from the outside world.

Adapters in `ion.adapters` implement them; the domain never imports an adapter.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import Any, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from ion.models import Conversation, Language, Message, Role, Usage


class ConversationPage(BaseModel):
    model_config = ConfigDict(frozen=True)

    conversations: list[Conversation]
    next_cursor: str | None = None


@runtime_checkable
class ConversationStore(Protocol):
    """Durable conversations and their messages."""

    def get_conversation(self, conversation_id: str) -> Conversation | None:
        """The conversation, or None when it does not exist."""
        ...

    def recent_messages(self, conversation_id: str, limit: int) -> list[Message]:
        """The last `limit` messages, oldest first."""
        ...

    def list_messages(self, conversation_id: str) -> list[Message]:
        """Every message of the conversation, oldest first."""
        ...

    def list_conversations(
        self, user_id: str, *, limit: int, cursor: str | None = None
    ) -> ConversationPage:
        """The user's conversations, most recently updated first, cursor-paginated."""
        ...

    def save_turn(self, conversation: Conversation, messages: Sequence[Message]) -> None:
        """Atomically upsert `conversation` (its summary fields) and append `messages`."""
        ...

    def delete_conversation(self, conversation_id: str) -> bool:
        """Erase the conversation and all its messages; False when it did not exist."""
        ...

    def ping(self) -> None:
        """Raise when the store is not usable (readiness)."""
        ...


class LlmTurn(BaseModel):
    model_config = ConfigDict(frozen=True)

    role: Role
    text: str


class LlmRequest(BaseModel):
    """Everything a language model needs for one persona answer."""

    model_config = ConfigDict(frozen=True)

    persona_id: str
    system_prompt: str
    history: list[LlmTurn] = Field(default_factory=list)
    message: str
    language: Language = "en"
    temperature: float = 0.7
    max_output_tokens: int = 1024


class LlmResponse(BaseModel):
    model_config = ConfigDict(frozen=True)

    text: str
    model: str
    usage: Usage
    finish_reason: str | None = None


class LlmChunk(BaseModel):
    """One piece of a streamed answer; the last chunk carries `final`."""

    model_config = ConfigDict(frozen=True)

    text: str = ""
    final: LlmResponse | None = None


class LanguageModel(Protocol):
    """A provider of persona answers (offline templates, Gemini, ...)."""

    @property
    def name(self) -> str: ...

    def generate(self, request: LlmRequest) -> LlmResponse: ...

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        """Yield text chunks as they arrive; the last chunk has `final` set."""
        ...

    def readiness(self) -> tuple[bool, str]:
        """Whether the provider is configured and usable, with a short explanation."""
        ...


class Secrets(Protocol):
    def get(self, name: str) -> str:
        """The secret's value; raises SecretNotFound / SecretAccessDenied."""
        ...


class EventPublisher(Protocol):
    def publish(self, event_type: str, payload: dict[str, Any]) -> None:
        """Publish a domain event. Must not raise for transport failures it can absorb."""
        ...


class Clock(Protocol):
    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class OutboxEntry(BaseModel):
    """A domain event that could not be published yet; kept durably until it is."""

    model_config = ConfigDict(frozen=True)

    id: str
    event_type: str
    payload: dict[str, Any]
    created_at: datetime
    attempts: int = 0
    last_error: str | None = None


class OutboxStore(Protocol):
    def add_outbox(self, entry: OutboxEntry) -> None: ...

    def pending_outbox(self, limit: int) -> list[OutboxEntry]:
        """Oldest first."""
        ...

    def remove_outbox(self, entry_id: str) -> None: ...

    def record_outbox_failure(self, entry_id: str, error: str) -> None:
        """Increment `attempts` and keep `last_error`."""
        ...
