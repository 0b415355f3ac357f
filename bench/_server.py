"""Starting functions-framework the way Cloud Functions runs it, for the HTTP benches.

`packaged_chat(tmp)` builds dist/chat.zip with scripts/package.py and unpacks it; the
server then imports `ion` from that copy (PYTHONPATH comes before the editable install),
as the deployed function does. `bare_function(tmp)` writes a functions-framework hello
function: the baseline every figure is printed beside.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from _common import ROOT

FUNCTIONS_FRAMEWORK = str(Path(sys.executable).with_name("functions-framework"))

BARE_SOURCE = '''"""The baseline: a bare functions-framework HTTP function."""

import functions_framework


@functions_framework.http
def hello(request):
    return "hello"
'''


@dataclass(frozen=True)
class Source:
    """A function's unpacked source: its folder, entry point and extra environment."""

    folder: Path
    target: str
    env: Mapping[str, str]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def packaged_chat(tmp: Path) -> Source:
    out = tmp / "dist"
    subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "package.py"), "--out", str(out), "chat"],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    folder = tmp / "chat-src"
    with zipfile.ZipFile(out / "chat.zip") as archive:
        archive.extractall(folder)
    return Source(folder, "chat", {"PYTHONPATH": str(folder)})


def bare_function(tmp: Path) -> Source:
    folder = tmp / "bare-src"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "main.py").write_text(BARE_SOURCE)
    return Source(folder, "hello", {})


def clean_env(extra: Mapping[str, str]) -> dict[str, str]:
    """This environment without ION_* (the developer's shell), plus `extra`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update(extra)
    return env


def start(source: Source, port: int, env: Mapping[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            FUNCTIONS_FRAMEWORK,
            f"--target={source.target}",
            f"--source={source.folder / 'main.py'}",
            "--host=127.0.0.1",
            f"--port={port}",
        ],
        env={**env, **source.env},
        cwd=source.folder,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def wait_answering(url: str, process: subprocess.Popen[bytes], timeout_s: float = 60) -> None:
    """Until GET `url` answers (any HTTP status: the bare function has no /health)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"functions-framework exited during start-up ({process.returncode})")
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except urllib.error.HTTPError:
            return
        except (urllib.error.URLError, ConnectionError):
            time.sleep(0.01)
    raise SystemExit(f"functions-framework did not answer within {timeout_s:.0f} s")


def stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=5)


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (gunicorn's master and workers)."""
    found = [pid]
    index = 0
    while index < len(found):
        current = found[index]
        index += 1
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                found.extend(int(child) for child in task.read_text().split())
            except OSError:
                continue
    return found


def _status_kb(pid: int, field: str, path: str = "status") -> int:
    try:
        for line in Path(f"/proc/{pid}/{path}").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def pss_split_mb(pid: int) -> tuple[float, float]:
    """(anonymous, file-backed) PSS over the process tree, in MB: the heap and the
    memory-mapped files (the model's token table, libraries), whose pages are clean, shared
    and given back under memory pressure."""
    pids = process_tree(pid)
    anon = sum(_status_kb(p, "Pss_Anon", "smaps_rollup") for p in pids)
    file = sum(_status_kb(p, "Pss_File", "smaps_rollup") for p in pids)
    return anon / 1024, file / 1024


def memory_mb(pid: int) -> tuple[float, float]:
    """(sum of VmRSS, sum of Pss) over the process tree, in MB. RSS counts the pages the
    forked workers share with the master once per process; PSS splits them."""
    pids = process_tree(pid)
    rss = sum(_status_kb(p, "VmRSS") for p in pids)
    pss = sum(_status_kb(p, "Pss", "smaps_rollup") for p in pids)
    return rss / 1024, pss / 1024
