"""Gemini adapter: the LanguageModel port over `google-genai`, with resilience.

Design notes (why, briefly):
- `google.genai` is imported lazily (inside methods), so importing this module costs
  nothing and never requires the SDK; only the first call builds the client.
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
import json
import logging
import math
import random as _random
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any, TypeVar

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

#: The harm categories every request sets a threshold for; names as in `types.HarmCategory`.
SAFETY_CATEGORIES: tuple[str, ...] = (
    "HARM_CATEGORY_HARASSMENT",
    "HARM_CATEGORY_HATE_SPEECH",
    "HARM_CATEGORY_SEXUALLY_EXPLICIT",
    "HARM_CATEGORY_DANGEROUS_CONTENT",
)


def safety_settings(threshold: str) -> tuple[tuple[str, str], ...]:
    """(category, threshold) pairs sent with every request (ION_GEMINI_SAFETY_THRESHOLD)."""
    return tuple((category, threshold) for category in SAFETY_CATEGORIES)


DEFAULT_SAFETY_SETTINGS = safety_settings("BLOCK_MEDIUM_AND_ABOVE")

_RETRYABLE_STATUS = frozenset({408, 429, 500, 502, 503, 504})
# Finish reasons meaning "the answer was withheld"; with no text they are a block.
_BLOCK_FINISH = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
    }
)
_DEFAULT_RETRY_AFTER_S = 10  # told to callers when the server gave no hint
_MAX_RETRY_AFTER_S = 3600.0
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


GEMINI_EXTRA_HINT = "pip install 'ion-mentoring[gemini]'"


class LlmRequestRejected(LlmError):
    """Gemini rejected the request (HTTP 400/401/403/404...): retrying will not help.

    Usually configuration: a bad or missing API key, missing Vertex AI permissions, or
    an unknown model. `http_status` is the upstream status (None when not from HTTP).
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


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
class _StreamState:
    """Accumulates streamed SDK chunks into text, usage and finish reason."""

    model: str
    text: list[str] = field(default_factory=list)
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None

    @property
    def full_text(self) -> str:
        return "".join(self.text)

    def add(self, chunk: types.GenerateContentResponse) -> str:
        """Record one chunk and return its new text. Raises LlmBlocked on a prompt block."""
        _raise_if_prompt_blocked(chunk)
        if chunk.usage_metadata is not None:
            self.usage = _usage(chunk.usage_metadata)  # running total: the last one wins
        piece = ""
        if chunk.candidates:
            cand = chunk.candidates[0]
            piece = _candidate_text(cand)
            if cand.finish_reason is not None:
                self.finish_reason = _enum_name(cand.finish_reason)
        if piece:
            self.text.append(piece)
        return piece


@dataclass
class _OpenStream:
    """A stream that produced its first text (or finished) during the retry phase."""

    model: str
    chunks: Iterator[types.GenerateContentResponse]
    state: _StreamState
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
            _close(opened.chunks)  # also when the consumer stops iterating early

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
        _raise_if_prompt_blocked(resp)
        if not resp.candidates:
            raise _Transient("empty response (no candidates)")
        cand = resp.candidates[0]
        text = _candidate_text(cand)
        finish = _enum_name(cand.finish_reason) if cand.finish_reason is not None else None
        if not text:
            if finish in _BLOCK_FINISH:
                raise LlmBlocked(f"Gemini withheld the answer (finish_reason {finish})")
            raise _Transient(f"empty response (no text, finish_reason {finish or 'none'})")
        usage = _usage(resp.usage_metadata) if resp.usage_metadata is not None else Usage()
        return LlmResponse(text=text, model=model, usage=usage, finish_reason=finish)

    def _open_stream(self, request: LlmRequest, model: str, timeout_s: float) -> _OpenStream:
        client = self._get_client()
        state = _StreamState(model=model)
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
            _close(chunks)
            raise
        except Exception as exc:
            _close(chunks)
            raise self._translate(exc, model) from exc
        # The stream finished without any text.
        if state.finish_reason in _BLOCK_FINISH:
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
            "http_options": types.HttpOptions(timeout=_ms(timeout_s)),
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
                return _Transient(detail, _retry_after(exc))
            if code == 404:
                return _SkipModel(f"model {model!r} not found ({detail})", code)
            if code in (401, 403):
                return LlmRequestRejected(
                    f"Gemini rejected the credentials ({detail}); check the API key "
                    "(ION_GEMINI_API_KEY) or the Vertex AI permissions",
                    http_status=code,
                )
            return LlmRequestRejected(f"Gemini rejected the request ({detail})", http_status=code)
        if _is_transport_error(exc):
            return _Transient(self._describe(exc))
        if _is_malformed(exc):
            return _Transient(f"malformed response ({type(exc).__name__})")
        if _is_auth_error(exc):
            return LlmRequestRejected(f"Gemini credentials unavailable: {self._describe(exc)}")
        return exc  # a bug, not an upstream failure: let it surface unchanged

    def _describe(self, exc: BaseException) -> str:
        """A short, secret-free description of an upstream failure."""
        from google.genai import errors as genai_errors

        if isinstance(exc, genai_errors.APIError):
            text = f"HTTP {exc.code} {exc.status or ''}".rstrip()
            if exc.message:
                text += f": {exc.message}"
        elif _is_transport_error(exc):
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

    def _interrupted(self, state: _StreamState, reason: str) -> LlmStreamInterrupted:
        return LlmStreamInterrupted(
            f"Gemini stream from {state.model} interrupted after "
            f"{len(state.full_text)} characters: {reason}",
            partial_text=state.full_text,
            model=state.model,
            retry_after_s=_DEFAULT_RETRY_AFTER_S,
        )


def make_client(
    *,
    api_key: str | None,
    vertex: bool,
    project: str | None,
    location: str,
    base_url: str | None,
    timeout_s: float,
    scrub: Callable[[str], str] = lambda text: text,
) -> genai.Client:
    """A google-genai client for API-key or Vertex AI mode, with the SDK's retries off.

    Raises `LlmRequestRejected` when the configuration cannot work (no key, no project,
    no Application Default Credentials, no google-genai installed)."""
    try:
        from google import genai
        from google.genai import types
    except ImportError:
        raise LlmRequestRejected(
            f"Gemini needs google-genai, which is not installed: {GEMINI_EXTRA_HINT}"
        ) from None

    # No retry_options: retries are the caller's job (see module docstring).
    options = types.HttpOptions(timeout=_ms(timeout_s))
    if base_url:
        options.base_url = base_url
    try:
        if vertex:
            if not project:
                raise LlmRequestRejected(
                    "Gemini on Vertex AI needs a project (set ION_GCP_PROJECT)"
                )
            return genai.Client(
                vertexai=True, project=project, location=location, http_options=options
            )
        if not api_key:
            raise LlmRequestRejected("Gemini API key is not configured (set ION_GEMINI_API_KEY)")
        return genai.Client(api_key=api_key, http_options=options)
    except LlmRequestRejected:
        raise
    except Exception as exc:  # e.g. no Application Default Credentials
        raise LlmRequestRejected(f"cannot create the Gemini client: {scrub(str(exc))}") from exc


# --- helpers (module level: no state) ----------------------------------------------
def _tried(model: str, attempts: int) -> str:
    return f"{model} ({attempts} attempt{'s' if attempts != 1 else ''})"


def _ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def _enum_name(value: object) -> str:
    # SDK enums are str enums; unknown server values may arrive as plain strings.
    return str(getattr(value, "value", value))


def _candidate_text(cand: types.Candidate) -> str:
    content = cand.content
    if content is None or not content.parts:
        return ""
    # Thought summaries are not part of the answer.
    return "".join(p.text for p in content.parts if p.text and not p.thought)


def _usage(meta: types.GenerateContentResponseUsageMetadata) -> Usage:
    return Usage(
        input_tokens=meta.prompt_token_count or 0,
        output_tokens=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
    )


def _raise_if_prompt_blocked(resp: types.GenerateContentResponse) -> None:
    feedback = resp.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = _enum_name(feedback.block_reason)
        if reason != "BLOCKED_REASON_UNSPECIFIED":
            raise LlmBlocked(f"Gemini blocked the prompt (block_reason {reason})")


def _retry_after(exc: Any) -> float | None:
    """Seconds from a Retry-After header, or from a google.rpc.RetryInfo error detail."""
    headers = getattr(getattr(exc, "response", None), "headers", None)
    value = headers.get("retry-after") if headers is not None else None
    if value:
        value = str(value).strip()
        try:
            seconds = float(value)
        except ValueError:
            try:
                when = parsedate_to_datetime(value)
                seconds = (when - datetime.now(UTC)).total_seconds()
            except (TypeError, ValueError):
                seconds = -1.0
        if seconds >= 0:
            return min(seconds, _MAX_RETRY_AFTER_S)
    details = getattr(exc, "details", None)
    error = details.get("error", details) if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("RetryInfo"):
            delay = str(item.get("retryDelay", "")).rstrip("s")
            try:
                return min(float(delay), _MAX_RETRY_AFTER_S)
            except ValueError:
                return None
    return None


def _is_transport_error(exc: BaseException) -> bool:
    # httpx / httpx2 (whichever the SDK uses) share class names; avoid importing both.
    for cls in type(exc).__mro__:
        root = cls.__module__.split(".", 1)[0]
        if root in ("httpx", "httpx2") and cls.__name__ == "TransportError":
            return True
        if root == "requests" and cls.__name__ in ("ConnectionError", "Timeout"):
            return True  # the requests-based path used for Vertex AI with mTLS
        if cls.__module__ == "google.auth.exceptions" and cls.__name__ == "TransportError":
            return True  # refreshing Vertex AI credentials hit the network and failed
    return isinstance(exc, (ConnectionError, TimeoutError))


def _is_malformed(exc: BaseException) -> bool:
    from google.genai import errors as genai_errors
    from pydantic import ValidationError

    return isinstance(
        exc, (json.JSONDecodeError, genai_errors.UnknownApiResponseError, ValidationError)
    )


def _is_auth_error(exc: BaseException) -> bool:
    return any(
        cls.__module__.startswith("google.auth") and cls.__name__ == "GoogleAuthError"
        for cls in type(exc).__mro__
    )


def _close(chunks: Iterator[Any] | None) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken stream must not hide the real error
            log.debug("closing the Gemini stream failed", exc_info=True)
