"""The fake Cloud Run the rollout tests drive scripts/rollout.sh against."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tests.infra.fake_cloud_run import FakeCloud


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    if shutil.which("bash") is None:
        pytest.fail("bash is required by scripts/rollout.sh")
    return FakeCloud(tmp_path)
