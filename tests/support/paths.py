"""Where the repository is, for tests that read its files (Terraform, docs, data, functions)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
