"""The backup signing key the tests use (ION_BACKUP_HMAC_KEY)."""

from __future__ import annotations

BACKUP_KEY = b"test-backup-key-" + b"k" * 32
