"""The `ion` command, run in-process through its real entry point."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jwt
import pytest

from ion.entrypoints.cli.main import main
from tests.support.paths import REPO

# As in tests/unit/test_evaluation.py: ION_ROUTING_DEV_SET wins (e.g. from a git worktree).
DEV_SET = Path(
    os.environ.get("ION_ROUTING_DEV_SET") or REPO.parent / "shared" / "routing" / "dev_set.jsonl"
)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_route_prints_json(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    code, out, _ = run(capsys, "route", "prod is down, who do I call and what do I do first?")
    assert code == 0
    decision = json.loads(out)
    assert set(decision) == {
        "persona",
        "secondary",
        "confidence",
        "scores",
        "resonance_key",
        "reason",
    }
    assert decision["persona"] == "nana"


def test_token_is_last_line_and_matches_the_data_dir_secret(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    code, out, _ = run(capsys, "token", "--user", "alice")
    assert code == 0
    token = out.strip().splitlines()[-1]
    secret = (clean_env / ".ion" / "dev-jwt-secret").read_text().strip()
    assert jwt.decode(token, secret, algorithms=["HS256"])["sub"] == "alice"
    # Same data dir, same secret: a second token verifies with it too.
    _, out2, _ = run(capsys, "token", "--user", "bob")
    assert jwt.decode(out2.strip().splitlines()[-1], secret, algorithms=["HS256"])["sub"] == "bob"


def test_token_rejects_bad_user(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    code, _, err = run(capsys, "token", "--user", "no spaces allowed")
    assert code == 2
    assert "invalid user id" in err


def test_chat_one_shot_and_continue(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    code, out, _ = run(capsys, "chat", "how", "do", "python", "decorators", "work?")
    assert code == 0
    assert "[Elro (엘로) · " in out
    conversation = out.strip().splitlines()[-1].split(": ", 1)[1]
    code, out, _ = run(capsys, "chat", "--conversation", conversation, "and the second one?")
    assert code == 0 and "[Elro" in out
    code, _, err = run(capsys, "chat", "--conversation", "missing", "hi")
    assert code == 2 and "not_found" in err


def test_chat_interactive(clean_env: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ion.entrypoints.cli.main", "chat"],
        input="I'm so nervous about my exam tomorrow\n/new\n다음 주 일정 어떻게 짜야 할지 모르겠어요\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=clean_env,
    )
    assert result.returncode == 0, result.stderr
    assert "[Lua (루아)" in result.stdout
    assert "[Nana (나나)" in result.stdout


def test_eval_routing_ends_with_summary_line(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    assert DEV_SET.exists(), f"persona dev set missing at {DEV_SET}"
    code, out, _ = run(capsys, "eval", "routing", str(DEV_SET))
    assert code == 0
    last = out.strip().splitlines()[-1]
    fields = dict(part.split("=") for part in last.split())
    assert set(fields) == {"accuracy", "top2", "n"}
    assert fields["n"] == "120"
    assert float(fields["accuracy"]) >= 0.85


def test_eval_routing_missing_file(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    code, _, err = run(capsys, "eval", "routing", "nope.jsonl")
    assert code == 2 and "nope.jsonl" in err


def test_outbox_drain_on_embedded_store(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    code, out, _ = run(capsys, "outbox", "drain")
    assert code == 0
    assert json.loads(out) == {"published": 0, "failed": 0, "remaining": 0}


def test_route_rejects_empty_text(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    code, out, err = run(capsys, "route", "   ")
    assert (code, out) == (2, "")
    assert "must not be empty" in err
