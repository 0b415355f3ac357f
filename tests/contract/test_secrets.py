"""The Secrets contract, run against every adapter: environment variables (EnvSecrets over
a mapping that counts its reads) and Secret Manager through the official client against
the local fake REST server (tests/fakes/secretmanager.py).

Each test makes the same assertions on both, reads counted on the backing store (the
mapping, the fake server's requests).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from ion.adapters.secrets import (
    EnvSecrets,
    SecretManagerSecrets,
    secret_manager_client_for_endpoint,
)
from ion.errors import SecretNotFound
from ion.ports import Secrets
from tests.fakes.clock import ManualClock
from tests.fakes.secretmanager import FakeSecretManager

PROJECT = "ion-test"


class CountingEnviron(dict[str, str]):
    """An environment whose lookups are counted, as the fake server counts requests."""

    reads = 0

    def get(self, key: str, default: str | None = None) -> str | None:  # type: ignore[override]
        self.reads += 1
        return super().get(key, default)


@dataclass
class SecretsUnderTest:
    secrets: Secrets
    put: Callable[[str, str], None]
    reads: Callable[[], int]
    location: Callable[[str], str]  # where the adapter looks for a secret, as its errors say


@pytest.fixture(params=["env", "secret_manager"])
def subject(request: pytest.FixtureRequest) -> Iterator[SecretsUnderTest]:
    if request.param == "env":
        environ = CountingEnviron()

        def put_variable(name: str, value: str) -> None:
            environ[EnvSecrets.variable_for(name)] = value

        yield SecretsUnderTest(
            EnvSecrets(environ), put_variable, lambda: environ.reads, EnvSecrets.variable_for
        )
        return
    fake: FakeSecretManager = request.getfixturevalue("fake_secretmanager")
    secrets = SecretManagerSecrets(
        PROJECT,
        client=secret_manager_client_for_endpoint(fake.endpoint),
        clock=ManualClock().monotonic,
        timeout_s=5.0,
    )

    def put_version(name: str, value: str) -> None:
        fake.add_version(PROJECT, f"ion-{name}", value)

    yield SecretsUnderTest(secrets, put_version, lambda: fake.request_count, lambda n: f"ion-{n}")


def test_each_secret_reads_back_exactly(subject: SecretsUnderTest) -> None:
    subject.put("jwt-secret", "s3cret välue ✓ 비밀")
    subject.put("gemini-api-key", "AIza-0123456789")
    assert subject.secrets.get("jwt-secret") == "s3cret välue ✓ 비밀"
    assert subject.secrets.get("gemini-api-key") == "AIza-0123456789"
    assert subject.reads() == 2


def test_a_missing_secret_is_not_found_and_says_where_it_was_looked_for(
    subject: SecretsUnderTest,
) -> None:
    subject.put("gemini-api-key", "AIza-0123456789")
    with pytest.raises(SecretNotFound) as info:
        subject.secrets.get("jwt-secret")
    assert subject.location("jwt-secret") in info.value.message
    assert "AIza" not in info.value.message
    assert subject.reads() == 1


def test_a_secret_created_after_a_miss_is_found(subject: SecretsUnderTest) -> None:
    with pytest.raises(SecretNotFound):
        subject.secrets.get("jwt-secret")
    subject.put("jwt-secret", "created later")
    assert subject.secrets.get("jwt-secret") == "created later"
    assert subject.reads() == 2


@pytest.mark.parametrize("name", ["", "../etc", "a/b", "jwt secret", "ion.jwt"])
def test_an_invalid_name_is_refused_without_a_read(subject: SecretsUnderTest, name: str) -> None:
    with pytest.raises(ValueError, match="invalid secret name"):
        subject.secrets.get(name)
    assert subject.reads() == 0
