"""Backup naming and retention: pure rules shared by every backup target."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta

_ID_RE = re.compile(r"^(\d{8}T\d{6}Z)(?:-(\d+))?(?:\.sqlite3)?$")


def backup_id(moment: datetime) -> str:
    """The UTC timestamp a backup is named after, e.g. `20260301T093000Z`."""
    return moment.astimezone(UTC).strftime("%Y%m%dT%H%M%SZ")


def backup_time(name: str) -> datetime | None:
    """The time in a backup's file/dir name, or None when `name` is not a backup name."""
    match = _ID_RE.match(name)
    if match is None:
        return None
    return datetime.strptime(match.group(1), "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


def expired_names(names: Iterable[str], now: datetime, retention_days: int) -> list[str]:
    """Backup names older than the retention window (other names are never selected)."""
    cutoff = now - timedelta(days=retention_days)
    old = []
    for name in names:
        moment = backup_time(name)
        if moment is not None and moment < cutoff:
            old.append(name)
    return sorted(old)
