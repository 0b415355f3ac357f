"""Run a local emulator (Firestore, Pub/Sub, ...) as a child process for the test session.

Generic on purpose: any command that serves HTTP on a given port. Typical use from a
session-scoped fixture:

    port = free_port()
    emu = start_emulator([launcher, "start", "--host=127.0.0.1", f"--port={port}"], port,
                         "/", name="firestore", log_dir=tmp)
    with env_var("FIRESTORE_EMULATOR_HOST", emu.address):
        yield emu
    emu.stop()

Failures raise `EmulatorError` with the tail of the emulator's log; fixtures turn it into
`pytest.fail(..., pytrace=False)`.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path

DEFAULT_SDK_ROOT = Path("/usr/lib/google-cloud-sdk")
JAVA_HINT = "a Java runtime (11+) on PATH or JAVA_HOME, e.g. `apt-get install default-jre-headless`"


class EmulatorError(RuntimeError):
    """The emulator could not be found, started, or did not become ready."""


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port that was free a moment ago (the usual small race is acceptable in tests)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@functools.cache
def gcloud_sdk_root() -> Path:
    """The google-cloud-cli install root (`gcloud info`), else the Debian package location."""
    gcloud = shutil.which("gcloud")
    if gcloud:
        try:
            out = subprocess.run(
                [gcloud, "info", "--format=value(installation.sdk_root)"],
                capture_output=True,
                text=True,
                timeout=30,
                check=True,
            ).stdout.strip()
            if out:
                return Path(out)
        except (subprocess.SubprocessError, OSError):
            pass  # fall back below
    return DEFAULT_SDK_ROOT


def find_java() -> str | None:
    """The java binary the gcloud emulator launchers will use, or None."""
    for candidate in (os.environ.get("JAVA"), os.environ.get("JAVA_HOME")):
        if candidate:
            path = Path(candidate)
            path = path / "bin" / "java" if path.is_dir() else path
            if path.is_file() and os.access(path, os.X_OK):
                return str(path)
    return shutil.which("java")


def http_status(method: str, url: str, timeout_s: float = 5.0) -> int:
    """The HTTP status of a bodiless request (error statuses are returned, not raised)."""
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


@contextmanager
def env_var(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for the duration of the block, then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


@dataclass
class EmulatorProcess:
    name: str
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path
    startup_s: float = 0.0
    _stopped: bool = field(default=False, repr=False)

    @property
    def address(self) -> str:
        """`host:port`, the value for FIRESTORE_EMULATOR_HOST / PUBSUB_EMULATOR_HOST."""
        return f"{self.host}:{self.port}"

    def url(self, path: str = "/") -> str:
        return f"http://{self.address}{path}"

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "<no log>"

    def stop(self, timeout_s: float = 10.0) -> None:
        """Terminate the whole process group (launchers are shell scripts that start java)."""
        if self._stopped:
            return
        self._stopped = True
        try:
            os.killpg(self.process.pid, signal.SIGTERM)
        except ProcessLookupError:
            return  # nothing left in the group
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)
        # Whatever outlived the launcher (or ignored SIGTERM) goes now.
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        with suppress(subprocess.TimeoutExpired):
            self.process.wait(timeout=timeout_s)


def start_emulator(
    cmd: list[str],
    port: int,
    ready_url_path: str = "/",
    env: Mapping[str, str] | None = None,
    *,
    name: str | None = None,
    host: str = "127.0.0.1",
    timeout_s: float = 60.0,
    log_dir: Path | None = None,
) -> EmulatorProcess:
    """Start `cmd` in its own process group and wait until `http://host:port{ready_url_path}`
    answers with any HTTP status below 500.

    `env` adds to (not replaces) the current environment. Output goes to a log file, never a
    pipe (a full pipe would block the emulator). Raises `EmulatorError` on early exit or
    timeout, after stopping the process.
    """
    label = name or Path(cmd[0]).name
    directory = log_dir or Path(tempfile.mkdtemp(prefix=f"{label}-emulator-"))
    log_path = directory / f"{label}-emulator.log"
    started = time.monotonic()
    try:
        with log_path.open("wb") as log:
            process = subprocess.Popen(
                cmd,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, **env} if env else None,
                start_new_session=True,  # own process group: stop() reaches java too
            )
    except OSError as exc:
        raise EmulatorError(f"{label} emulator could not be started ({cmd[0]}): {exc}") from exc
    emulator = EmulatorProcess(name=label, host=host, port=port, process=process, log_path=log_path)
    # Safety net for interrupted sessions; stop() is idempotent.
    atexit.register(emulator.stop)
    url = emulator.url(ready_url_path)
    deadline = started + timeout_s
    while True:
        if process.poll() is not None:
            emulator.stop()
            raise EmulatorError(
                f"{label} emulator exited with code {process.returncode} before it was ready; "
                f"log {log_path}:\n{emulator.log_tail()}"
            )
        try:
            if http_status("GET", url, timeout_s=1.0) < 500:
                break
        except (urllib.error.URLError, OSError):
            pass  # not listening yet
        if time.monotonic() > deadline:
            emulator.stop()
            raise EmulatorError(
                f"{label} emulator not ready at {url} after {timeout_s:.0f}s; "
                f"log {log_path}:\n{emulator.log_tail()}"
            )
        time.sleep(0.1)
    emulator.startup_s = time.monotonic() - started
    return emulator
