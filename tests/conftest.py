"""Shared pytest fixtures. Each area keeps its fixtures in its own delimited section."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.support.emulators import (
    JAVA_HINT,
    EmulatorError,
    EmulatorProcess,
    env_var,
    find_java,
    free_port,
    gcloud_sdk_root,
    http_status,
    start_emulator,
)

pytest_plugins = ["tests.support.app", "tests.support.pubsub", "tests.support.gemini"]

if TYPE_CHECKING:
    from ion.adapters.firestore.conversations import FirestoreStore
    from ion.adapters.firestore.quota import FirestoreQuotaStore
    from ion.adapters.sqlite.conversations import SqliteStore
    from ion.adapters.sqlite.quota import SqliteQuotaStore


# =====================================================================================
# Storage: SQLite + Firestore emulator fixtures for the store contract suite
# (see tests/contract/test_conversation_store.py and docs/data-model.md)
# =====================================================================================

FIRESTORE_TEST_PROJECT = "ion-test"
_FIRESTORE_INSTALL_HINT = (
    "install google-cloud-cli + google-cloud-cli-firestore-emulator "
    "(apt) or `gcloud components install cloud-firestore-emulator`, and " + JAVA_HINT
)


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmulatorProcess]:
    """Google's Firestore emulator, started once per session; sets FIRESTORE_EMULATOR_HOST."""
    launcher = (
        gcloud_sdk_root() / "platform" / "cloud-firestore-emulator" / "cloud_firestore_emulator"
    )
    if not launcher.is_file():
        pytest.fail(
            f"Firestore emulator not found at {launcher}: {_FIRESTORE_INSTALL_HINT}",
            pytrace=False,
        )
    if find_java() is None:
        pytest.fail(f"the Firestore emulator needs {JAVA_HINT}", pytrace=False)
    port = free_port()
    try:
        emulator = start_emulator(
            [str(launcher), "start", "--host=127.0.0.1", f"--port={port}"],
            port,
            "/",
            name="firestore",
            log_dir=tmp_path_factory.mktemp("firestore-emulator"),
        )
    except EmulatorError as exc:
        pytest.fail(f"{exc}\n({_FIRESTORE_INSTALL_HINT})", pytrace=False)
    try:
        with env_var("FIRESTORE_EMULATOR_HOST", emulator.address):
            yield emulator
    finally:
        emulator.stop()


@pytest.fixture(scope="session")
def firestore_client(firestore_emulator: EmulatorProcess) -> Iterator[Any]:
    """One google.cloud.firestore.Client on the emulator for the whole session."""
    from google.cloud import firestore

    client: Any = firestore.Client(project=FIRESTORE_TEST_PROJECT, database="(default)")
    yield client
    client.close()


@pytest.fixture
def firestore_reset(firestore_emulator: EmulatorProcess) -> None:
    """Delete every document in the emulator's test database (before the test)."""
    url = firestore_emulator.url(
        f"/emulator/v1/projects/{FIRESTORE_TEST_PROJECT}/databases/(default)/documents"
    )
    status = http_status("DELETE", url, timeout_s=10.0)
    if status != 200:
        pytest.fail(f"Firestore emulator reset failed: HTTP {status} from {url}", pytrace=False)


@pytest.fixture
def firestore_store(firestore_client: Any, firestore_reset: None) -> FirestoreStore:
    """A FirestoreStore on an empty emulator database."""
    from ion.adapters.firestore.conversations import FirestoreStore

    return FirestoreStore(firestore_client)


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[SqliteStore]:
    """A SqliteStore on a fresh file in the test's tmp dir."""
    from ion.adapters.sqlite.conversations import SqliteStore

    store = SqliteStore(tmp_path / "ion.sqlite3")
    yield store
    store.close()


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def store(request: pytest.FixtureRequest) -> Any:
    """Every ConversationStore + OutboxStore backend; the contract suite runs once per param.

    Resolved lazily, so `-m "not emulator"` never starts the Firestore emulator.
    """
    return request.getfixturevalue(f"{request.param}_store")


@pytest.fixture
def sqlite_quota(tmp_path: Path) -> Iterator[SqliteQuotaStore]:
    """A SqliteQuotaStore on a fresh file in the test's tmp dir."""
    from ion.adapters.sqlite.quota import SqliteQuotaStore

    store = SqliteQuotaStore(tmp_path / "ion.sqlite3")
    yield store
    store.close()


@pytest.fixture
def firestore_quota(firestore_client: Any, firestore_reset: None) -> FirestoreQuotaStore:
    """A FirestoreQuotaStore on an empty emulator database."""
    from ion.adapters.firestore.quota import FirestoreQuotaStore

    return FirestoreQuotaStore(firestore_client)


# ============================ end of storage section =================================


# =====================================================================================
# Feedback, learned routing and backups: the learning-and-backup stores on both backends
# (see tests/contract/test_learning_stores.py, tests/adapters/test_backup_drill.py)
# =====================================================================================


@dataclass
class LearningBackend:
    """A conversation store and the learning store on the same backend."""

    name: str
    store: Any
    learning: Any


@pytest.fixture
def sqlite_learning(sqlite_store: SqliteStore) -> Iterator[LearningBackend]:
    from ion.adapters.sqlite.records import SqliteLearningAndBackupStore

    sqlite_store.ping()  # creates the app schema first (feedback references conversations)
    learning = SqliteLearningAndBackupStore(sqlite_store.path)
    yield LearningBackend("sqlite", sqlite_store, learning)
    learning.close()


@pytest.fixture
def firestore_learning(firestore_store: FirestoreStore) -> LearningBackend:
    from ion.adapters.firestore.records import FirestoreLearningAndBackupStore

    return LearningBackend(
        "firestore", firestore_store, FirestoreLearningAndBackupStore(firestore_store.client)
    )


@pytest.fixture(params=["sqlite", pytest.param("firestore", marks=pytest.mark.emulator)])
def learning_backend(request: pytest.FixtureRequest) -> LearningBackend:
    """Every backend of the learning ports (FeedbackStore, RoutingStatsStore, BackupCatalog)."""
    backend: LearningBackend = request.getfixturevalue(f"{request.param}_learning")
    return backend


# ============================ end of learning section ================================


@pytest.fixture(autouse=True)
def _restore_log_levels() -> Iterator[None]:
    """In-process `ion` CLI runs configure logging for the whole process (as a real CLI
    run does): give every test the levels it started with."""
    import logging

    loggers = [logging.getLogger(), logging.getLogger("ion")]
    levels = [logger.level for logger in loggers]
    yield
    for logger, level in zip(loggers, levels, strict=True):
        logger.setLevel(level)
