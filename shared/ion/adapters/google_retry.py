"""The one retry policy for every Google client call (Firestore, Pub/Sub, Secret Manager).

The libraries' defaults retry transient errors for up to minutes (streamed Firestore queries
even restart themselves), far beyond any request deadline: every call here retries only the
errors its caller names, with a short backoff, and gives up at the caller's deadline.
"""

from __future__ import annotations

from google.api_core.retry import Retry, if_exception_type

__all__ = ["bounded_retry"]


def bounded_retry(timeout_s: float, *retryable: type[Exception]) -> Retry:
    """Retry `retryable` errors (0.1 s backoff doubling to 1 s) until `timeout_s` passes."""
    return Retry(
        predicate=if_exception_type(*retryable),
        initial=0.1,
        maximum=1.0,
        multiplier=2.0,
        timeout=timeout_s,
    )
