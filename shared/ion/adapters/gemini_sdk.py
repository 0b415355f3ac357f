"""The google-genai boundary shared by the chat model (adapters.gemini) and the routing judge
(adapters.gemini_judge): building the client, the safety settings every request carries,
reading responses, and classifying the SDK's exceptions. No retry policy lives here.

`google.genai` is imported lazily (inside functions), so importing this module costs
nothing and never requires the SDK.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any

from ion.domain.models import Usage
from ion.errors import LlmBlocked, LlmError

if TYPE_CHECKING:
    from google import genai
    from google.genai import types

log = logging.getLogger(__name__)

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

# Finish reasons meaning "the answer was withheld"; with no text they are a block.
BLOCK_FINISH_REASONS = frozenset(
    {
        "SAFETY",
        "PROHIBITED_CONTENT",
        "BLOCKLIST",
        "SPII",
        "IMAGE_SAFETY",
        "IMAGE_PROHIBITED_CONTENT",
    }
)
_MAX_RETRY_AFTER_S = 3600.0

GEMINI_EXTRA_HINT = "pip install 'ion-mentoring[gemini]'"


class LlmRequestRejected(LlmError):
    """Gemini rejected the request (HTTP 400/401/403/404...): retrying will not help.

    Usually configuration: a bad or missing API key, missing Vertex AI permissions, or
    an unknown model. `http_status` is the upstream status (None when not from HTTP).
    """

    def __init__(self, message: str, *, http_status: int | None = None) -> None:
        super().__init__(message)
        self.http_status = http_status


@dataclass
class StreamState:
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
        raise_if_prompt_blocked(chunk)
        if chunk.usage_metadata is not None:
            self.usage = usage_of(chunk.usage_metadata)  # running total: the last one wins
        piece = ""
        if chunk.candidates:
            cand = chunk.candidates[0]
            piece = candidate_text(cand)
            if cand.finish_reason is not None:
                self.finish_reason = enum_name(cand.finish_reason)
        if piece:
            self.text.append(piece)
        return piece


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
    options = types.HttpOptions(timeout=ms(timeout_s))
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


def ms(seconds: float) -> int:
    return max(1, math.ceil(seconds * 1000))


def enum_name(value: object) -> str:
    # SDK enums are str enums; unknown server values may arrive as plain strings.
    return str(getattr(value, "value", value))


def candidate_text(cand: types.Candidate) -> str:
    content = cand.content
    if content is None or not content.parts:
        return ""
    # Thought summaries are not part of the answer.
    return "".join(p.text for p in content.parts if p.text and not p.thought)


def usage_of(meta: types.GenerateContentResponseUsageMetadata) -> Usage:
    return Usage(
        input_tokens=meta.prompt_token_count or 0,
        output_tokens=(meta.candidates_token_count or 0) + (meta.thoughts_token_count or 0),
    )


def raise_if_prompt_blocked(resp: types.GenerateContentResponse) -> None:
    feedback = resp.prompt_feedback
    if feedback is not None and feedback.block_reason is not None:
        reason = enum_name(feedback.block_reason)
        if reason != "BLOCKED_REASON_UNSPECIFIED":
            raise LlmBlocked(f"Gemini blocked the prompt (block_reason {reason})")


def server_retry_after(exc: Any) -> float | None:
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


def is_transport_error(exc: BaseException) -> bool:
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


def is_malformed(exc: BaseException) -> bool:
    from google.genai import errors as genai_errors
    from pydantic import ValidationError

    return isinstance(
        exc, (json.JSONDecodeError, genai_errors.UnknownApiResponseError, ValidationError)
    )


def is_auth_error(exc: BaseException) -> bool:
    return any(
        cls.__module__.startswith("google.auth") and cls.__name__ == "GoogleAuthError"
        for cls in type(exc).__mro__
    )


def close_quietly(chunks: Iterator[Any] | None) -> None:
    close = getattr(chunks, "close", None)
    if close is not None:
        try:
            close()
        except Exception:  # closing a broken stream must not hide the real error
            log.debug("closing the Gemini stream failed", exc_info=True)
