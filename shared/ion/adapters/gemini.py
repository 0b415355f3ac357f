"""Gemini adapter: the LanguageModel port over `google-genai`, with resilience.

Design notes (why, briefly):
- `google.genai` is imported lazily (inside methods), so importing this module costs
  nothing and never requires the SDK; only the first call builds the client. Building it,
  reading responses and classifying the SDK's exceptions live in `adapters.gemini_sdk`,
  shared with the routing judge.
- The SDK's own retries stay off (no `HttpOptions.retry_options`) and automatic
  continuation is disabled: this adapter owns retries, backoff, the time budget and the
  fallback model, so attempts are counted and bounded in exactly one place.
- Retryable: HTTP 408/429/500/502/503/504, timeouts and connection errors, and malformed
  or empty responses. Backoff is exponential with full jitter (honouring Retry-After),
  bounded by `max_attempts` per model AND a total time budget shared by all models
  (part of the budget is reserved for the fallback model).
- Not retryable: 400/401/403 (a bad key or request fails the same way every time) raise
  `LlmRequestRejected`; 404 (unknown model) skips to the fallback model, since a retired
  model is exactly what a fallback is for. Safety blocks raise `ion.errors.LlmBlocked`.
- Usage: `output_tokens` = candidates + thinking tokens, because Gemini bills thinking
  tokens at the output rate; `input_tokens` = prompt tokens.
"""

from __future__ import annotations

import importlib.util
import logging
import math
import random as _random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ion.adapters.gemini_sdk import (
    BLOCK_FINISH_REASONS,
    DEFAULT_SAFETY_SETTINGS,
    GEMINI_EXTRA_HINT,
    LlmRequestRejected,
    StreamState,
    candidate_text,
    close_quietly,
    enum_name,
    is_auth_error,
    is_malformed,
    is_transport_error,
    make_client,
    ms,
    raise_if_prompt_blocked,
    safety_settings,
    server_retry_after,
    usage_of,
)
from ion.domain.models import LlmChunk, LlmRequest, LlmResponse, Usage
from ion.errors import LlmBlocked, LlmError
from ion.settings import Settings

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

__all__ = [
    "DEFAULT_SAFETY_SETTINGS",
    "GeminiLanguageModel",
    "LlmRequestRejected",
    "LlmStreamInterrupted",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
_DEFAULT_RETRY_AFTER_S = 10  # told to callers when the server gave no hint
_MAX_ERROR_CHARS = 200


class LlmStreamInterrupted(LlmError):
    """A streamed answer failed after text was already yielded.

    `partial_text` is everything yielded so far, so the caller can store it (e.g. as an
    incomplete message); retrying is not done because the caller already showed it.
    """

    def __init__(
        self,
        message: str,
        *,
        partial_text: str,
        model: str,
        retry_after_s: int | None = None,
    ) -> None:
        super().__init__(message, retry_after_s=retry_after_s)
        self.partial_text = partial_text
        self.model = model


class _Transient(Exception):
    """Internal: an attempt failed in a way worth retrying."""

    def __init__(self, reason: str, retry_after_s: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class _SkipModel(Exception):
    """Internal: this model cannot serve (e.g. 404); try the fallback without retrying."""

    def __init__(self, reason: str, http_status: int | None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.http_status = http_status


@dataclass
class _OpenStream:
    """A stream that produced its first text (or finished) during the retry phase."""

    model: str
    chunks: Iterator[types.GenerateContentResponse]
    state: StreamState
    first_text: str


class GeminiLanguageModel:
    """LanguageModel port implemented with Gemini (API key or Vertex AI)."""

    def __init__(
        self,
        *,
        model: str = "gemini-2.5-flash",
        fallback_model: str | None = None,
        api_key: str | None = None,
        vertex: bool = False,
        project: str | None = None,
        location: str = "us-central1",
        base_url: str | None = None,
        timeout_s: float = 30.0,
        max_attempts: int = 3,
        total_budget_s: float | None = None,
        max_output_tokens: int = 1024,
        thinking_budget: int | None = None,
        safety_settings: Sequence[tuple[str, str]] = DEFAULT_SAFETY_SETTINGS,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 8.0,
        sleep: Callable[[float], None] = time.sleep,
        random: Callable[[], float] = _random.random,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if timeout_s <= 0:
            raise ValueError("timeout_s must be > 0")
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        self._model = model
        self._fallback_model = fallback_model if fallback_model != model else None
        self._api_key = api_key or None
        self._vertex = vertex
        self._project = project
        self._location = location
        self._base_url = base_url
        self._timeout_s = timeout_s
        self._max_attempts = max_attempts
        # Default budget: two full timeouts; enough for a timed-out call plus retries,
        # short enough to answer within an HTTP request's deadline.
        self._total_budget_s = total_budget_s if total_budget_s is not None else 2 * timeout_s
        self._max_output_tokens = max_output_tokens
        self._thinking_budget = thinking_budget
        self._safety_settings = tuple(safety_settings)
        self._backoff_base_s = backoff_base_s
        self._backoff_max_s = backoff_max_s
        self._sleep = sleep
        self._random = random
        self._monotonic = monotonic
        # An attempt with less time than this left is not worth starting.
        self._min_attempt_s = min(1.0, timeout_s / 4)
        self._client: genai.Client | None = None
        self._client_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, api_key: str | None = None) -> GeminiLanguageModel:
        """Build from typed settings; `api_key` (e.g. from Secret Manager) wins over
        `settings.gemini_api_key`."""
        if api_key is None and settings.gemini_api_key is not None:
            api_key = settings.gemini_api_key.get_secret_value()
        return cls(
            model=settings.gemini_model,
            fallback_model=settings.gemini_fallback_model,
            api_key=api_key,
            vertex=settings.gemini_vertex,
            project=settings.gcp_project,
            location=settings.gcp_location,
            base_url=settings.gemini_base_url,
            timeout_s=settings.llm_timeout_s,
            max_attempts=settings.llm_max_attempts,
            backoff_base_s=settings.llm_backoff_base_s,
            max_output_tokens=settings.gemini_max_output_tokens,
            thinking_budget=settings.gemini_thinking_budget,
            safety_settings=safety_settings(settings.gemini_safety_threshold),
        )

    # --- port ----------------------------------------------------------------------
    @property
    def name(self) -> str:
        return "gemini"

    def readiness(self) -> tuple[bool, str]:
        """Configuration check only: no network call."""
        try:
            installed = importlib.util.find_spec("google.genai") is not None
        except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
            installed = False
        if not installed:
            return False, f"gemini: google-genai is not installed ({GEMINI_EXTRA_HINT})"
        if self._vertex:
            if not self._project:
                return False, "gemini: Vertex AI mode needs a project (set ION_GCP_PROJECT)"
            return True, f"gemini {self._model} (vertex project {self._project})"
        if not self._api_key:
            return False, (
                "gemini: no API key configured "
                "(set ION_GEMINI_API_KEY, or ION_GEMINI_VERTEX=true with ION_GCP_PROJECT)"
            )
        return True, f"gemini {self._model} (api key)"

    def generate(self, request: LlmRequest) -> LlmResponse:
        return self._with_retries(
            lambda model, timeout_s: self._generate_once(request, model, timeout_s)
        )

    def stream(self, request: LlmRequest) -> Iterator[LlmChunk]:
        # Retries and fallback happen only until the first text arrives; after that the
        # caller has shown text, so a failure is reported with the partial text instead.
        opened = self._with_retries(
            lambda model, timeout_s: self._open_stream(request, model, timeout_s)
        )
        state = opened.state
        try:
            if opened.first_text:
                yield LlmChunk(text=opened.first_text)
            try:
                for chunk in opened.chunks:
                    piece = state.add(chunk)
                    if piece:
                        yield LlmChunk(text=piece)
            except LlmBlocked as exc:
                raise self._interrupted(
                    state, f"prompt blocked mid-stream ({exc.message})"
                ) from exc
            except Exception as exc:
                raise self._interrupted(state, self._describe(exc)) from exc
            if state.finish_reason is None:
                raise self._interrupted(state, "stream ended without a finish reason")
            yield LlmChunk(
                final=LlmResponse(
                    text=state.full_text,
                    model=state.model,
                    usage=state.usage,
                    finish_reason=state.finish_reason,
                )
            )
        finally:
            close_quietly(opened.chunks)  # also when the consumer stops iterating early

    # --- attempts ------------------------------------------------------------------
    def _generate_once(self, request: LlmRequest, model: str, timeout_s: float) -> LlmResponse:
        client = self._get_client()
        try:
            resp = client.models.generate_content(
                model=model,
                contents=self._contents(request),
                config=self._config(request, timeout_s),
            )
        except Exception as exc:
            raise self._translate(exc, model) from exc
        raise_if_prompt_blocked(resp)
        if not resp.candidates:
            raise _Transient("empty response (no candidates)")
        cand = resp.candidates[0]
        text = candidate_text(cand)
        finish = enum_name(cand.finish_reason) if cand.finish_reason is not None else None
        if not text:
            if finish in BLOCK_FINISH_REASONS:
                raise LlmBlocked(f"Gemini withheld the answer (finish_reason {finish})")
            raise _Transient(f"empty response (no text, finish_reason {finish or 'none'})")
        usage = usage_of(resp.usage_metadata) if resp.usage_metadata is not None else Usage()
        return LlmResponse(text=text, model=model, usage=usage, finish_reason=finish)

    def _open_stream(self, request: LlmRequest, model: str, timeout_s: float) -> _OpenStream:
        client = self._get_client()
        state = StreamState(model=model)
        chunks: Iterator[types.GenerateContentResponse] | None = None
        try:
            # The SDK sends the request lazily, on the first next().
            chunks = client.models.generate_content_stream(
                model=model,
                contents=self._contents(request),
                config=self._config(request, timeout_s),
            )
            for chunk in chunks:
                piece = state.add(chunk)
                if piece:
                    return _OpenStream(model=model, chunks=chunks, state=state, first_text=piece)
        except (LlmBlocked, _Transient):
            close_quietly(chunks)
            raise
        except Exception as exc:
            close_quietly(chunks)
            raise self._translate(exc, model) from exc
        # The stream finished without any text.
        if state.finish_reason in BLOCK_FINISH_REASONS:
            raise LlmBlocked(f"Gemini withheld the answer (finish_reason {state.finish_reason})")
        raise _Transient(f"empty stream (no text, finish_reason {state.finish_reason or 'none'})")

    def _with_retries(self, attempt: Callable[[str, float], T]) -> T:
        """Run `attempt(model, timeout_s)` with backoff, time budget and fallback."""
        deadline = self._monotonic() + self._total_budget_s
        models = [self._model] + ([self._fallback_model] if self._fallback_model else [])
        tried: list[str] = []
        last_reason = "time budget exhausted before any attempt"
        retry_hint: float | None = None
        for index, model in enumerate(models):
            is_last = index == len(models) - 1
            # Keep a slice of the budget so the fallback model gets a real chance.
            reserve = 0.0 if is_last else min(self._timeout_s, self._total_budget_s / 3)
            model_deadline = deadline - reserve
            attempts = 0
            while attempts < self._max_attempts:
                remaining = model_deadline - self._monotonic()
                if remaining < self._min_attempt_s:
                    break
                attempts += 1
                try:
                    return attempt(model, min(self._timeout_s, remaining))
                except _SkipModel as skip:
                    last_reason = skip.reason
                    log.warning("gemini %s unusable, not retrying: %s", model, skip.reason)
                    if is_last:
                        raise LlmRequestRejected(
                            self._summary([*tried, _tried(model, attempts)], skip.reason),
                            http_status=skip.http_status,
                        ) from skip
                    break
                except _Transient as failure:
                    last_reason = failure.reason
                    if failure.retry_after_s is not None:
                        retry_hint = failure.retry_after_s
                    if attempts >= self._max_attempts:
                        log.warning(
                            "gemini %s attempt %d failed: %s", model, attempts, failure.reason
                        )
                        break
                    delay = self._backoff(attempts, failure.retry_after_s)
                    if self._monotonic() + delay + self._min_attempt_s > model_deadline:
                        log.warning(
                            "gemini %s attempt %d failed, no budget to retry: %s",
                            model,
                            attempts,
                            failure.reason,
                        )
                        break
                    log.warning(
                        "gemini %s attempt %d failed, retrying in %.2fs: %s",
                        model,
                        attempts,
                        delay,
                        failure.reason,
                    )
                    self._sleep(delay)
            tried.append(_tried(model, attempts))
        retry_after = math.ceil(retry_hint) if retry_hint is not None else _DEFAULT_RETRY_AFTER_S
        raise LlmError(self._summary(tried, last_reason), retry_after_s=max(1, retry_after))

    def _backoff(self, attempt: int, retry_after_s: float | None) -> float:
        """Exponential backoff with full jitter, at least the server's Retry-After."""
        cap = min(self._backoff_max_s, self._backoff_base_s * 2.0 ** (attempt - 1))
        delay = self._random() * cap
        if retry_after_s is not None:
            delay = max(delay, retry_after_s)
        return delay

    # --- SDK plumbing --------------------------------------------------------------
    def _get_client(self) -> genai.Client:
        with self._client_lock:
            if self._client is not None:
                return self._client
            client = make_client(
                api_key=self._api_key,
                vertex=self._vertex,
                project=self._project,
                location=self._location,
                base_url=self._base_url,
                timeout_s=self._timeout_s,
                scrub=self._scrub,
            )
            self._client = client
            return client

    def _contents(self, request: LlmRequest) -> list[types.Content]:
        from google.genai import types

        contents = [
            types.Content(
                role="model" if turn.role == "assistant" else "user",
                parts=[types.Part(text=turn.text)],
            )
            for turn in request.history
            if turn.text  # Gemini rejects empty parts
        ]
        contents.append(types.Content(role="user", parts=[types.Part(text=request.message)]))
        return contents

    def _config(self, request: LlmRequest, timeout_s: float) -> types.GenerateContentConfig:
        from google.genai import types

        kwargs: dict[str, Any] = {
            "system_instruction": request.system_prompt or None,
            "temperature": request.temperature,
            # The configured cap, lowered further if the request asks for fewer.
            "max_output_tokens": min(self._max_output_tokens, request.max_output_tokens),
            "safety_settings": [
                types.SafetySetting(
                    category=types.HarmCategory(category),
                    threshold=types.HarmBlockThreshold(threshold),
                )
                for category, threshold in self._safety_settings
            ],
            # Per-call timeout, shortened when the time budget has less left.
            "http_options": types.HttpOptions(timeout=ms(timeout_s)),
        }
        if self._thinking_budget is not None:
            kwargs["thinking_config"] = types.ThinkingConfig(thinking_budget=self._thinking_budget)
        if "automatic_continuation" in types.GenerateContentConfig.model_fields:
            kwargs["automatic_continuation"] = False  # newer SDKs: we own re-requests
        return types.GenerateContentConfig(**kwargs)

    def _translate(self, exc: Exception, model: str) -> Exception:
        """Map an SDK/transport exception to _Transient, _SkipModel or an LlmError."""
        from google.genai import errors as genai_errors

        if isinstance(exc, genai_errors.APIError):
            code = int(exc.code) if exc.code else 0
            detail = self._describe(exc)
            if code in _RETRYABLE_STATUS:
                return _Transient(detail, server_retry_after(exc))
            if code == 404:
                return _SkipModel(f"model {model!r} not found ({detail})", code)
            if code in (401, 403):
                return LlmRequestRejected(
                    f"Gemini rejected the credentials ({detail}); check the API key "
                    "(ION_GEMINI_API_KEY) or the Vertex AI permissions",
                    http_status=code,
                )
            return LlmRequestRejected(f"Gemini rejected the request ({detail})", http_status=code)
        if is_transport_error(exc):
            return _Transient(self._describe(exc))
        if is_malformed(exc):
            return _Transient(f"malformed response ({type(exc).__name__})")
        if is_auth_error(exc):
            return LlmRequestRejected(f"Gemini credentials unavailable: {self._describe(exc)}")
        return exc  # a bug, not an upstream failure: let it surface unchanged

    def _describe(self, exc: BaseException) -> str:
        """A short, secret-free description of an upstream failure."""
        from google.genai import errors as genai_errors

        if isinstance(exc, genai_errors.APIError):
            text = f"HTTP {exc.code} {exc.status or ''}".rstrip()
            if exc.message:
                text += f": {exc.message}"
        elif is_transport_error(exc):
            kind = "timeout" if "Timeout" in type(exc).__name__ else "connection error"
            text = f"{kind} ({type(exc).__name__}: {exc})"
        else:
            text = f"{type(exc).__name__}: {exc}"
        text = self._scrub(text)
        return text if len(text) <= _MAX_ERROR_CHARS else text[: _MAX_ERROR_CHARS - 1] + "…"

    def _scrub(self, text: str) -> str:
        # Defence in depth: the key travels in a header, but never echo it back. Very short
        # (test) keys are left alone, or every matching substring would be mangled.
        key = self._api_key
        return text.replace(key, "***") if key and len(key) >= 8 else text

    def _summary(self, tried: list[str], last_reason: str) -> str:
        models = ", ".join(tried) or "no model"
        return f"Gemini unavailable after trying {models}; last error: {last_reason}"

    def _interrupted(self, state: StreamState, reason: str) -> LlmStreamInterrupted:
        return LlmStreamInterrupted(
            f"Gemini stream from {state.model} interrupted after "
            f"{len(state.full_text)} characters: {reason}",
            partial_text=state.full_text,
            model=state.model,
            retry_after_s=_DEFAULT_RETRY_AFTER_S,
        )


# --- helpers (module level: no state) ----------------------------------------------
def _tried(model: str, attempts: int) -> str:
    return f"{model} ({attempts} attempt{'s' if attempts != 1 else ''})"
