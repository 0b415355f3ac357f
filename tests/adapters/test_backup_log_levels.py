"""The backup run's log lines are what the Terraform alerts read: a failed or stuck managed
export is an ERROR line (the backup_failures metric counts ERROR lines of the backup
function), a confirmed export is the exact line the backup_succeeded metric matches (its
absence for 26 h alerts). Runs a real managed export against the fake Firestore Admin API."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import hcl2
import pytest

from ion.adapters.firestore.backup import GoogleFirestoreAdmin, ManagedExportTarget
from ion.services.backup import BackupRunner
from tests.conftest import LearningBackend
from tests.fakes.clock import ManualClock
from tests.fakes.firestore_admin import FakeFirestoreAdmin
from tests.support.paths import REPO

T0 = datetime(2026, 3, 1, 3, 0, 0, tzinfo=UTC)
TERRAFORM = REPO / "terraform"


def _terraform(name: str) -> dict[str, Any]:
    with (TERRAFORM / name).open(encoding="utf-8") as handle:
        parsed: dict[str, Any] = hcl2.load(handle)
    return parsed


def _string(value: str) -> str:
    """A quoted HCL string's value (python-hcl2 keeps the quotes and backslash escapes)."""
    if len(value) >= 2 and value[0] == value[-1] == '"':
        value = value[1:-1]
    return value.replace('\\"', '"').replace("\\\\", "\\")


@pytest.fixture
def fake_admin() -> Iterator[FakeFirestoreAdmin]:
    with FakeFirestoreAdmin() as fake:
        yield fake


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(T0)


@pytest.fixture
def runner(
    sqlite_learning: LearningBackend,
    fake_admin: FakeFirestoreAdmin,
    clock: ManualClock,
    caplog: pytest.LogCaptureFixture,
) -> BackupRunner:
    """A daily run of managed exports (through the fake Admin API) whose log is captured."""
    caplog.set_level(logging.INFO, logger="ion.backup")
    target = ManagedExportTarget(
        GoogleFirestoreAdmin.for_endpoint(fake_admin.endpoint),
        project="ion-prod",
        database="(default)",
        bucket="gs://ion-backups",
        prefix="firestore",
        list_collections=lambda: ["conversations"],
    )
    return BackupRunner(
        target=target,
        catalog=sqlite_learning.learning,
        dedupe=sqlite_learning.learning,
        clock=clock,
        retention_days=14,
    )


def _lines(caplog: pytest.LogCaptureFixture) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == "ion.backup"]


def test_failed_export_logs_error_and_confirmed_export_the_line_terraform_counts(
    runner: BackupRunner,
    clock: ManualClock,
    fake_admin: FakeFirestoreAdmin,
    caplog: pytest.LogCaptureFixture,
) -> None:
    first = runner.run("m1").started
    assert first is not None and first.operation is not None
    assert _lines(caplog) == [
        (
            logging.INFO,
            "backup 20260301T030000Z (firestore-export): running"
            " at gs://ion-backups/firestore/20260301T030000Z",
        )
    ]

    fake_admin.finish(first.operation, error=(7, "The caller lacks storage.objects.create"))
    clock.advance(timedelta(hours=1))
    second = runner.run("m2").started
    assert second is not None and second.operation is not None
    assert _lines(caplog)[1] == (
        logging.ERROR,
        "backup 20260301T030000Z is now failed: code 7: The caller lacks storage.objects.create",
    )

    fake_admin.finish(second.operation)
    clock.advance(timedelta(hours=1))
    runner.run("m3")
    assert _lines(caplog)[3] == (logging.INFO, "backup 20260301T040000Z is now succeeded")
    _assert_terraform_reads(caplog.records)


def test_export_still_running_at_the_next_daily_run_logs_error(
    runner: BackupRunner, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    runner.run("m1")
    caplog.clear()
    clock.advance(timedelta(hours=2))  # a slow export: not yet a problem
    runner.run("m2")
    assert [level for level, _ in _lines(caplog)] == [logging.INFO]
    caplog.clear()
    clock.advance(timedelta(hours=22))  # the next daily run: both exports still running
    runner.run("m3")
    assert _lines(caplog)[:2] == [
        (
            logging.ERROR,
            "backup 20260301T030000Z is incomplete: still running 24 h after it started",
        ),
        (
            logging.ERROR,
            "backup 20260301T050000Z is incomplete: still running 22 h after it started",
        ),
    ]


def _assert_terraform_reads(records: list[logging.LogRecord]) -> None:
    """The backup_succeeded metric matches exactly the confirmation line, and the
    backup_failures metric (severity>=ERROR) exactly the failure line."""
    records = [r for r in records if r.name == "ion.backup"]
    backup_tf = _terraform("backup.tf")["resource"]
    metric = next(
        block['"google_logging_metric"']['"backup_succeeded"']
        for block in backup_tf
        if '"backup_succeeded"' in block.get('"google_logging_metric"', {})
    )
    found = re.search(r'jsonPayload\.message=~"(.*)"$', _string(metric["filter"]))
    assert found
    succeeded = [r for r in records if re.fullmatch(found.group(1), r.getMessage())]
    assert [r.getMessage() for r in succeeded] == ["backup 20260301T040000Z is now succeeded"]

    # backup_failures counts the backup function's lines at severity ERROR or above; the
    # structured handler writes a record's level name as its severity.
    monitoring_locals = _terraform("monitoring.tf")["locals"]
    counters = next(block["log_counters"] for block in monitoring_locals if "log_counters" in block)
    failures = _string(counters["backup_failures"]["filter"])
    assert "severity>=ERROR" in failures
    assert [r.getMessage() for r in records if r.levelno >= logging.ERROR] == [
        "backup 20260301T030000Z is now failed: code 7: The caller lacks storage.objects.create"
    ]
