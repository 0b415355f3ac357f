"""The `RoutingJudge` port on Gemini: one structured-output call, bounded in time.

- Structured output: `response_mime_type="application/json"` and a response schema whose
  `persona` and `secondary` are enums of the catalog ids; the reply is still validated here
  (the schema is a request to the model, not a guarantee).
- Temperature 0, a small thinking budget (ION_ROUTING_JUDGE_THINKING_BUDGET), a hard
  per-call timeout (ION_ROUTING_JUDGE_TIMEOUT_S) and exactly one attempt: the SDK's retries
  are off (`make_client`) and nothing here retries, since the learner is waiting and the
  local decision is a good fallback.
- Every failure raises `JudgeFailed` with a short reason that never quotes the message.

The client is built like the chat model's (`ion.adapters.gemini_sdk.make_client`), lazily on
the first call; `google.genai` is imported only then.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from ion.adapters.gemini_sdk import (
    BLOCK_FINISH_REASONS,
    DEFAULT_SAFETY_SETTINGS,
    LlmRequestRejected,
    candidate_text,
    enum_name,
    is_transport_error,
    make_client,
    ms,
    safety_settings,
)
from ion.ports import JudgeFailed, JudgeVerdict
from ion.settings import Settings

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

__all__ = ["GeminiRoutingJudge"]

#: Room for the JSON verdict (persona, secondary, one line); thinking tokens come on top.
_ANSWER_TOKENS = 256
_MAIN_NEED_CHARS = 160


class GeminiRoutingJudge:
    """Asks Gemini which catalog persona should answer a message."""

    def __init__(
        self,
        *,
        persona_ids: Sequence[str],
        instructions: str,
        model: str = "gemini-2.5-flash-lite",
        api_key: str | None = None,
        vertex: bool = False,
        project: str | None = None,
        location: str = "us-central1",
        base_url: str | None = None,
        timeout_s: float = 1.5,
        thinking_budget: int | None = 0,
        safety: Sequence[tuple[str, str]] = DEFAULT_SAFETY_SETTINGS,
    ) -> None:
        if not persona_ids:
            raise ValueError("the judge needs the catalog's persona ids")
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        self._ids = tuple(persona_ids)
        self._instructions = instructions
        self._model = model
        self._api_key = api_key or None
        self._vertex = vertex
        self._project = project
        self._location = location
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._thinking_budget = thinking_budget
        self._safety = tuple(safety)
        self._client: genai.Client | None = None
        self._lock = threading.Lock()

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        *,
        api_key: str | None,
        persona_ids: Sequence[str],
        instructions: str,
    ) -> GeminiRoutingJudge:
        return cls(
            persona_ids=persona_ids,
            instructions=instructions,
            model=settings.routing_judge_model,
            api_key=api_key,
            vertex=settings.gemini_vertex,
            project=settings.gcp_project,
            location=settings.gcp_location,
            base_url=settings.gemini_base_url,
            timeout_s=settings.routing_judge_timeout_s,
            thinking_budget=settings.routing_judge_thinking_budget,
            safety=safety_settings(settings.gemini_safety_threshold),
        )

    @property
    def model(self) -> str:
        return self._model

    # --- port ----------------------------------------------------------------------
    def judge(
        self, message: str, *, earlier_turns: Sequence[str], current_persona: str | None
    ) -> JudgeVerdict:
        client = self._get_client()
        from google.genai import types

        payload = json.dumps(
            {
                "message": message,
                "earlier_turns": list(earlier_turns),
                "current_persona": current_persona,
            },
            ensure_ascii=False,
        )
        try:
            response = client.models.generate_content(
                model=self._model,
                contents=[types.Content(role="user", parts=[types.Part(text=payload)])],
                config=self._config(),
            )
        except Exception as exc:
            raise JudgeFailed(_reason(exc)) from exc
        return self._verdict(response)

    # --- plumbing ------------------------------------------------------------------
    def _get_client(self) -> genai.Client:
        with self._lock:
            if self._client is None:
                try:
                    self._client = make_client(
                        api_key=self._api_key,
                        vertex=self._vertex,
                        project=self._project,
                        location=self._location,
                        base_url=self._base_url,
                        timeout_s=self._timeout_s,
                    )
                except LlmRequestRejected as exc:
                    raise JudgeFailed("not configured") from exc
            return self._client

    def _config(self) -> types.GenerateContentConfig:
        from google.genai import types

        ids = list(self._ids)
        schema = types.Schema(
            type=types.Type.OBJECT,
            properties={
                "persona": types.Schema(type=types.Type.STRING, enum=ids),
                "secondary": types.Schema(type=types.Type.STRING, enum=ids, nullable=True),
                "main_need": types.Schema(type=types.Type.STRING),
            },
            required=["persona", "main_need"],
            property_ordering=["persona", "secondary", "main_need"],
        )
        kwargs: dict[str, Any] = {
            "system_instruction": self._instructions,
            "temperature": 0.0,
            "candidate_count": 1,
            "max_output_tokens": _ANSWER_TOKENS + (self._thinking_budget or 0),
            "response_mime_type": "application/json",
            "response_schema": schema,
            "safety_settings": [
                types.SafetySetting(
                    category=types.HarmCategory(category),
                    threshold=types.HarmBlockThreshold(threshold),
                )
                for category, threshold in self._safety
            ],
            "http_options": types.HttpOptions(timeout=ms(self._timeout_s)),
        }
        if self._thinking_budget is not None:
            kwargs["thinking_config"] = types.ThinkingConfig(thinking_budget=self._thinking_budget)
        if "automatic_continuation" in types.GenerateContentConfig.model_fields:
            kwargs["automatic_continuation"] = False
        return types.GenerateContentConfig(**kwargs)

    def _verdict(self, response: types.GenerateContentResponse) -> JudgeVerdict:
        blocked = response.prompt_feedback and response.prompt_feedback.block_reason
        if blocked and enum_name(blocked) != "BLOCKED_REASON_UNSPECIFIED":
            raise JudgeFailed("safety block")
        if not response.candidates:
            raise JudgeFailed("empty response")
        candidate = response.candidates[0]
        text = candidate_text(candidate)
        finish = enum_name(candidate.finish_reason) if candidate.finish_reason else None
        if finish in BLOCK_FINISH_REASONS:
            raise JudgeFailed("safety block")
        if not text:
            raise JudgeFailed("empty response")
        try:
            data = json.loads(text)
        except ValueError:
            raise JudgeFailed("invalid output") from None
        if not isinstance(data, dict):
            raise JudgeFailed("invalid output")
        primary, secondary, need = data.get("persona"), data.get("secondary"), data.get("main_need")
        if not isinstance(primary, str) or not (secondary is None or isinstance(secondary, str)):
            raise JudgeFailed("invalid output")
        if primary not in self._ids or (secondary is not None and secondary not in self._ids):
            raise JudgeFailed("unknown persona id")
        if not isinstance(need, str):
            raise JudgeFailed("invalid output")
        need = " ".join(need.split())[:_MAIN_NEED_CHARS]
        if not need:
            raise JudgeFailed("invalid output")
        return JudgeVerdict(
            primary=primary,
            secondary=None if secondary == primary else secondary,
            main_need=need,
        )


def _reason(exc: BaseException) -> str:
    """A short reason for a failed call; never the message or the server's error text."""
    from google.genai import errors as genai_errors

    if isinstance(exc, genai_errors.APIError):
        return f"http {exc.code}"
    if is_transport_error(exc):
        return "timeout" if "Timeout" in type(exc).__name__ else "connection error"
    if isinstance(exc, ValueError):  # malformed JSON body, pydantic validation
        return "invalid output"
    return f"unexpected {type(exc).__name__}"
