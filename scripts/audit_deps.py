"""Dependency audit: pip-audit over the project's virtualenv, strict, never a silent pass.

pip-audit asks PyPI's JSON API for each installed distribution's known vulnerabilities.
When that service cannot be reached, plain pip-audit reports every package as "not found"
and still says "No known vulnerabilities found"; here that is a clear failure (exit 2),
unless AUDIT_OFFLINE=allow says, on purpose, that this machine cannot audit (then a loud
banner, exit 0). Vulnerabilities found always fail. Accepted vulnerability ids, each with
its reason, live in pyproject.toml under [tool.ion-audit].
"""

from __future__ import annotations

import os
import subprocess  # nosec B404
import sys
import tomllib
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def service_reachable() -> str | None:
    """None when PyPI's per-release JSON API (what pip-audit asks) answers, else why not."""
    probe = f"https://pypi.org/pypi/pip/{version('pip')}/json"
    try:
        with urllib.request.urlopen(probe, timeout=15) as response:  # nosec B310
            return None if response.status == 200 else f"HTTP {response.status} from {probe}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} from {probe}"
    except (urllib.error.URLError, OSError) as exc:
        return f"{type(exc).__name__}: {exc}"


def ignored() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    entries = config.get("tool", {}).get("ion-audit", {}).get("ignore", [])
    for entry in entries:
        if not entry.get("reason"):
            sys.exit(f"audit: ignored vulnerability {entry.get('id')} has no reason")
    return [str(entry["id"]) for entry in entries]


def main() -> int:
    problem = service_reachable()
    if problem is not None:
        if os.environ.get("AUDIT_OFFLINE") == "allow":
            print(
                "#" * 78 + "\n# DEPENDENCY AUDIT NOT RUN: PyPI's vulnerability API is unreachable"
                f" ({problem}).\n# AUDIT_OFFLINE=allow accepted that; run `make audit` where"
                " the API is reachable.\n" + "#" * 78,
                file=sys.stderr,
            )
            return 0
        print(
            f"audit: cannot reach PyPI's vulnerability API ({problem}); no dependency was"
            " audited.\n  Run where pypi.org/pypi/<name>/json is reachable, or set"
            " AUDIT_OFFLINE=allow to accept an unaudited run on purpose.",
            file=sys.stderr,
        )
        return 2
    command = [
        sys.executable,
        "-m",
        "pip_audit",
        "--strict",  # a package that cannot be audited fails the run
        "--skip-editable",  # the project itself is not on PyPI
        "--progress-spinner",
        "off",
        "--desc",
        "on",
    ]
    for vuln in ignored():
        command += ["--ignore-vuln", vuln]
    # A fixed argv (this interpreter, pip_audit, constant flags): no shell, no input.
    return subprocess.run(command, check=False).returncode  # noqa: S603  # nosec B603


if __name__ == "__main__":
    sys.exit(main())
