"""Retry, deadline and error mapping shared by the Firestore adapters (conversations,
learning, quota, backups). Imported only by adapter modules: google.* stays out of `ion`."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import google.auth.exceptions
from google.api_core import exceptions as gexc

from ion.adapters.google_retry import bounded_retry
from ion.errors import DependencyUnavailable

# Failures that mean "Firestore is not usable right now", not "the request is wrong".
UNAVAILABLE: tuple[type[BaseException], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.Aborted,
    gexc.Unknown,
    gexc.Unauthenticated,
    gexc.PermissionDenied,
    gexc.FailedPrecondition,  # e.g. a composite index is missing or still building
    gexc.RetryError,
    google.auth.exceptions.GoogleAuthError,
)

# Worth another attempt within the deadline (for writes that are safe to repeat).
RETRYABLE: tuple[type[Exception], ...] = (
    gexc.ServiceUnavailable,
    gexc.DeadlineExceeded,
    gexc.InternalServerError,
    gexc.ResourceExhausted,
    gexc.Aborted,
)

T = TypeVar("T")


def rpc_options(
    timeout_s: float, retryable: tuple[type[Exception], ...] = RETRYABLE
) -> dict[str, Any]:
    """`retry` + `timeout` keyword arguments for every call: bounded retries, because the
    library defaults retry transient errors for up to 5 minutes (streamed queries even
    restart themselves), far beyond any request deadline."""
    return {"retry": bounded_retry(timeout_s, *retryable), "timeout": timeout_s}


@contextmanager
def unavailable_errors(
    what: str = "firestore", errors: tuple[type[BaseException], ...] = UNAVAILABLE
) -> Iterator[None]:
    """`errors` → `DependencyUnavailable` (503), never a 500 or a silent success."""
    try:
        yield
    except errors as exc:
        raise DependencyUnavailable(f"{what} unavailable: {exc}") from exc


def call(fn: Callable[[], T]) -> T:
    """`fn()` with `unavailable_errors`."""
    with unavailable_errors():
        return fn()


def delete_matching(client: Any, query: Any, rpc: dict[str, Any], batch_limit: int) -> int:
    """Delete every document `query` (key-only, limited to `batch_limit`) finds, one batch
    per page, until a page comes back short; how many went."""
    deleted = 0
    with unavailable_errors():
        while True:
            refs = [snap.reference for snap in query.stream(**rpc)]
            if not refs:
                return deleted
            batch = client.batch()
            for ref in refs:
                batch.delete(ref)
            batch.commit(**rpc)
            deleted += len(refs)
            if len(refs) < batch_limit:
                return deleted
