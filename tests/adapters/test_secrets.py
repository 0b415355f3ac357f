"""Secrets adapters: env variables, and Secret Manager via the official client (REST) against
the local fake server."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from ion.adapters.secrets import (
    EnvSecrets,
    SecretManagerSecrets,
    crc32c,
    secret_manager_client_for_endpoint,
)
from ion.errors import (
    ConfigurationError,
    DependencyUnavailable,
    SecretAccessDenied,
    SecretNotFound,
)
from tests.fakes.clock import ManualClock
from tests.fakes.secretmanager import FakeSecretManager

PROJECT = "ion-test"


@pytest.fixture(scope="module")
def client_and_fake() -> Iterator[tuple[Any, FakeSecretManager]]:
    # One server + client per module: creating the official client costs ~100 ms.
    with FakeSecretManager() as fake:
        yield secret_manager_client_for_endpoint(fake.endpoint), fake


@pytest.fixture
def fake(client_and_fake: tuple[Any, FakeSecretManager]) -> FakeSecretManager:
    server = client_and_fake[1]
    server.reset()
    return server


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def make(client_and_fake: tuple[Any, FakeSecretManager], clock: ManualClock) -> Any:
    def build(**kwargs: Any) -> SecretManagerSecrets:
        kwargs.setdefault("client", client_and_fake[0])
        kwargs.setdefault("clock", clock.monotonic)
        return SecretManagerSecrets(PROJECT, **kwargs)

    return build


# --- EnvSecrets ---------------------------------------------------------------------------


def test_env_secrets_maps_names_to_variables() -> None:
    secrets = EnvSecrets({"ION_JWT_SECRET": "s3cret", "ION_GEMINI_API_KEY": "k"})
    assert secrets.get("jwt-secret") == "s3cret"
    assert secrets.get("gemini-api-key") == "k"


@pytest.mark.parametrize("environ", [{}, {"ION_JWT_SECRET": ""}])
def test_env_secrets_missing_names_the_variable(environ: dict[str, str]) -> None:
    with pytest.raises(SecretNotFound, match="ION_JWT_SECRET"):
        EnvSecrets(environ).get("jwt-secret")


def test_env_secrets_reads_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ION_SOME_TOKEN", "v")
    assert EnvSecrets().get("some-token") == "v"


# --- SecretManagerSecrets -----------------------------------------------------------------


def test_found_latest(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "v1-value")
    fake.add_version(PROJECT, "ion-jwt-secret", "v2-välue")
    assert make().get("jwt-secret") == "v2-välue"
    assert fake.requests == {
        f"/v1/projects/{PROJECT}/secrets/ion-jwt-secret/versions/latest:access": 1
    }


def test_not_found_names_secret_and_version(fake: FakeSecretManager, make: Any) -> None:
    with pytest.raises(SecretNotFound) as info:
        make().get("jwt-secret")
    assert "'ion-jwt-secret'" in info.value.message
    assert "'latest'" in info.value.message
    assert PROJECT in info.value.message


def test_missing_pinned_version(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "only")
    with pytest.raises(SecretNotFound, match=r"'ion-jwt-secret' version '7'"):
        make(versions={"jwt-secret": "7"}).get("jwt-secret")


def test_permission_denied(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "hidden")
    fake.forbid(PROJECT, "ion-jwt-secret")
    with pytest.raises(SecretAccessDenied, match="ion-jwt-secret") as info:
        make().get("jwt-secret")
    assert "hidden" not in info.value.message


def test_version_pinning(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "old")
    fake.add_version(PROJECT, "ion-jwt-secret", "new")
    fake.add_version(PROJECT, "ion-gemini-api-key", "key")
    secrets = make(versions={"jwt-secret": "1"})
    assert secrets.get("jwt-secret") == "old"
    assert secrets.get("gemini-api-key") == "key"  # unpinned -> latest
    assert secrets.resource_name("jwt-secret") == (
        f"projects/{PROJECT}/secrets/ion-jwt-secret/versions/1"
    )


def test_latest_skips_disabled_and_disabled_pin_is_unavailable(
    fake: FakeSecretManager, make: Any
) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "one")
    fake.add_version(PROJECT, "ion-jwt-secret", "two")
    fake.disable(PROJECT, "ion-jwt-secret", 2)
    assert make().get("jwt-secret") == "one"
    with pytest.raises(DependencyUnavailable, match="version '2'"):
        make(versions={"jwt-secret": "2"}).get("jwt-secret")


def test_custom_prefix(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "staging-jwt-secret", "x")
    assert make(prefix="staging-").get("jwt-secret") == "x"


def test_cache_hit_makes_one_request(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "cached")
    secrets = make(ttl_s=300)
    assert secrets.get("jwt-secret") == "cached"
    assert secrets.get("jwt-secret") == "cached"
    assert fake.request_count == 1


def test_cache_expiry_picks_up_rotation(
    fake: FakeSecretManager, make: Any, clock: ManualClock
) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "before")
    secrets = make(ttl_s=300)
    assert secrets.get("jwt-secret") == "before"
    fake.add_version(PROJECT, "ion-jwt-secret", "after")  # rotation
    clock.advance(299)
    assert secrets.get("jwt-secret") == "before"
    clock.advance(2)
    assert secrets.get("jwt-secret") == "after"
    assert fake.request_count == 2
    secrets.clear_cache()
    secrets.get("jwt-secret")
    assert fake.request_count == 3


def test_zero_ttl_disables_cache(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "x")
    secrets = make(ttl_s=0)
    secrets.get("jwt-secret")
    secrets.get("jwt-secret")
    assert fake.request_count == 2


def test_errors_are_not_cached(fake: FakeSecretManager, make: Any) -> None:
    secrets = make()
    with pytest.raises(SecretNotFound):
        secrets.get("jwt-secret")
    fake.add_version(PROJECT, "ion-jwt-secret", "created later")
    assert secrets.get("jwt-secret") == "created later"


def test_server_errors_become_dependency_unavailable(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "x")
    fake.fail_with(503)
    with pytest.raises(DependencyUnavailable, match="ion-jwt-secret"):
        make(timeout_s=0.3).get("jwt-secret")
    assert fake.request_count >= 2  # retried within the bound, then gave up


def test_corrupted_payload_is_detected(fake: FakeSecretManager, make: Any) -> None:
    fake.add_version(PROJECT, "ion-jwt-secret", "x")
    fake.corrupt_checksums()
    with pytest.raises(DependencyUnavailable, match="corrupted"):
        make().get("jwt-secret")


def test_unreachable_endpoint() -> None:
    with FakeSecretManager() as stopped:
        endpoint = stopped.endpoint
    secrets = SecretManagerSecrets(
        PROJECT, client=secret_manager_client_for_endpoint(endpoint), timeout_s=0.3
    )
    with pytest.raises(DependencyUnavailable):
        secrets.get("jwt-secret")


def test_configuration_checks() -> None:
    with pytest.raises(ConfigurationError, match="project"):
        SecretManagerSecrets("")
    with pytest.raises(ConfigurationError, match="pinned version"):
        SecretManagerSecrets(PROJECT, versions={"jwt-secret": "v/1"})


def test_crc32c_known_vector() -> None:
    assert crc32c(b"123456789") == 0xE3069283
    assert crc32c(b"") == 0
