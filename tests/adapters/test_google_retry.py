"""The one retry policy of the Google clients: named errors only, within the deadline."""

from __future__ import annotations

import pytest
from google.api_core import exceptions

from ion.adapters.google_retry import bounded_retry


def test_named_errors_are_retried_until_success() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise exceptions.ServiceUnavailable("try again")  # type: ignore[no-untyped-call]
        return "ok"

    assert bounded_retry(5.0, exceptions.ServiceUnavailable)(flaky)() == "ok"
    assert len(calls) == 3


def test_other_errors_are_not_retried() -> None:
    calls = []

    def missing() -> None:
        calls.append(1)
        raise exceptions.NotFound("no such secret")  # type: ignore[no-untyped-call]

    with pytest.raises(exceptions.NotFound):
        bounded_retry(5.0, exceptions.ServiceUnavailable)(missing)()
    assert len(calls) == 1


def test_the_deadline_ends_the_retries() -> None:
    calls = []

    def down() -> None:
        calls.append(1)
        raise exceptions.ServiceUnavailable("down")  # type: ignore[no-untyped-call]

    with pytest.raises(exceptions.RetryError):
        bounded_retry(0.3, exceptions.ServiceUnavailable)(down)()
    assert len(calls) > 1  # retried, then stopped by the deadline (RetryError)
