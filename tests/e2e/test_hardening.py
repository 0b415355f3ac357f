"""Configuration, error-envelope and CLI hardening: weak or missing JWT settings, missing
extras, unreachable stores, what a 5xx body may say, answers the web server gives by
itself, and the terminal commands' rough edges."""

from __future__ import annotations

import http.client
import json
import logging
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import jwt
import pytest

from ion.bootstrap import App, build_app, set_app
from ion.entrypoints.cli.main import main
from ion.entrypoints.http.local import create_local_app
from ion.errors import ConfigurationError, DependencyUnavailable
from tests.support.app import TEST_JWT_SECRET, function_client, make_settings
from tests.support.paths import REPO

BIN = Path(sys.executable).parent
SECURITY = {
    "Strict-Transport-Security": "max-age=63072000; includeSubDomains",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}


def envelope(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(body)
    assert set(data) == {"error", "request_id"}
    assert set(data["error"]) == {"code", "message"}
    return data


def assert_secure(headers: Any) -> None:
    assert {name: headers.get(name) for name in SECURITY} == SECURITY
    assert "default-src 'none'" in headers.get("Content-Security-Policy", "")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# ---- weak JWT secrets -------------------------------------------------------------------

WEAK = ["0123456789", "a", " " * 8, "", "x" * 31]


@pytest.mark.parametrize("secret", WEAK, ids=["digits", "one char", "spaces", "empty", "31"])
def test_weak_secrets_are_refused_in_one_line(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    secret: str,
) -> None:
    monkeypatch.setenv("ION_JWT_SECRET", secret)
    code, out, err = run(capsys, "token", "--user", "alice")
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert "ION_JWT_SECRET is too short" in err and "at least 32" in err
    if len(secret) > 3:
        assert secret not in err


def test_a_32_byte_secret_is_accepted(
    capsys: pytest.CaptureFixture[str], clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ION_JWT_SECRET", "k" * 32)
    code, out, _ = run(capsys, "token", "--user", "alice")
    assert code == 0
    assert jwt.decode(out.strip(), "k" * 32, algorithms=["HS256"])["sub"] == "alice"


@pytest.mark.parametrize("secret", ["0123456789", ""], ids=["short", "empty"])
def test_ready_fails_clearly_on_a_weak_secret(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch, secret: str
) -> None:
    monkeypatch.setenv("ION_DATA_DIR", str(clean_env / "data"))
    monkeypatch.setenv("ION_JWT_SECRET", secret)
    set_app(None)
    client = function_client("chat")
    ready = client.get("/ready")
    assert ready.status_code == 503
    body = ready.get_json()
    assert body["status"] == "unavailable"
    assert body["checks"]["app"]["ok"] is False
    assert body["checks"]["app"]["detail"].startswith("ION_JWT_SECRET is too short")
    if secret:
        assert secret not in ready.get_data(as_text=True)
    # Requests fail without detail rather than with every token "invalid".
    chat = client.post("/v1/chat", json={"message": "hi"})
    assert chat.status_code == 500
    assert envelope(chat.data)["error"]["code"] == "internal"
    assert "ION_JWT_SECRET" not in chat.get_data(as_text=True)


def test_a_short_previous_secret_is_refused(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match="ION_JWT_PREVIOUS_SECRET is too short"):
        build_app(make_settings(clean_env / "data", jwt_previous_secret="old"))


# ---- audience, issuer, lifetime, rotation -----------------------------------------------


def test_gcp_backend_needs_issuer_and_audience(
    capsys: pytest.CaptureFixture[str], clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ION_BACKEND", "gcp")
    monkeypatch.setenv("ION_GCP_PROJECT", "demo-ion")
    monkeypatch.setenv("ION_JWT_SECRET", TEST_JWT_SECRET)
    code, out, err = run(capsys, "token", "--user", "alice")
    assert (code, out) == (2, "")
    assert len(err.strip().splitlines()) == 1
    assert "ION_BACKEND=gcp needs ION_JWT_ISSUER and ION_JWT_AUDIENCE" in err
    monkeypatch.setenv("ION_JWT_ISSUER", "https://auth.example")
    code, _, err = run(capsys, "token", "--user", "alice")
    assert code == 2 and "needs ION_JWT_AUDIENCE:" in err


def _token(secret: str, lifetime_s: int | None, **claims: Any) -> str:
    now = datetime.now(UTC)
    body: dict[str, Any] = {"sub": "alice", "iat": int(now.timestamp())}
    if lifetime_s is not None:
        body["exp"] = int((now + timedelta(seconds=lifetime_s)).timestamp())
    body.update(claims)
    return jwt.encode(body, secret, algorithm="HS256")


OLD_SECRET = "old-secret-" + "o" * 40


@pytest.fixture
def rotating_app(clean_env: Path) -> Iterator[App]:
    app = build_app(make_settings(clean_env / "data", jwt_previous_secret=OLD_SECRET))
    set_app(app)
    yield app
    set_app(None)


@pytest.mark.parametrize(
    ("lifetime_s", "status"),
    [(86_400, 200), (86_401, 401), (100 * 365 * 86_400, 401)],
    ids=["24 h", "24 h + 1 s", "100 years"],
)
def test_token_lifetime_is_bounded(rotating_app: App, lifetime_s: int, status: int) -> None:
    client = function_client("chat")
    token = _token(TEST_JWT_SECRET, lifetime_s)
    response = client.get("/v1/conversations", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == status
    if status == 401:
        assert envelope(response.data)["error"]["code"] == "token_lifetime_too_long"


def test_tokens_of_the_previous_secret_still_verify(rotating_app: App) -> None:
    client = function_client("chat")
    old = _token(OLD_SECRET, 3600)
    stranger = _token("s" * 48, 3600)
    ok = client.get("/v1/conversations", headers={"Authorization": f"Bearer {old}"})
    bad = client.get("/v1/conversations", headers={"Authorization": f"Bearer {stranger}"})
    assert ok.status_code == 200
    assert (bad.status_code, envelope(bad.data)["error"]["code"]) == (401, "invalid_signature")
    # New tokens are signed with the current secret only.
    issued = rotating_app.dev_token("alice")
    assert jwt.decode(issued, TEST_JWT_SECRET, algorithms=["HS256"])["sub"] == "alice"
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(issued, OLD_SECRET, algorithms=["HS256"])


def test_dev_token_ttl_must_fit_the_max_lifetime(clean_env: Path) -> None:
    with pytest.raises(ConfigurationError, match="ION_DEV_TOKEN_TTL_S"):
        build_app(make_settings(clean_env / "data", jwt_max_lifetime_s=600))


# ---- missing extras ---------------------------------------------------------------------


def _hide(monkeypatch: pytest.MonkeyPatch, module: str) -> None:
    """Make `import module` fail as if its distribution were not installed."""
    monkeypatch.setitem(sys.modules, module, None)
    parent_name, _, child = module.rpartition(".")
    parent = sys.modules.get(parent_name)
    if parent is not None:
        monkeypatch.delattr(parent, child, raising=False)


@pytest.mark.parametrize(
    ("module", "env", "names"),
    [
        ("google.cloud.firestore", {"ION_BACKEND": "gcp"}, "ION_BACKEND=gcp (Firestore)"),
        (
            "google.cloud.secretmanager",
            {"ION_SECRETS_BACKEND": "secretmanager"},
            "ION_SECRETS_BACKEND=secretmanager (Secret Manager)",
        ),
    ],
    ids=["firestore", "secret manager"],
)
def test_a_missing_gcp_extra_is_one_line_naming_it(
    capsys: pytest.CaptureFixture[str],
    clean_env: Path,
    monkeypatch: pytest.MonkeyPatch,
    module: str,
    env: dict[str, str],
    names: str,
) -> None:
    _hide(monkeypatch, module)
    for key, value in {
        "ION_GCP_PROJECT": "demo-ion",
        "ION_JWT_SECRET": TEST_JWT_SECRET,
        "ION_JWT_ISSUER": "https://auth.example",
        "ION_JWT_AUDIENCE": "ion",
        **env,
    }.items():
        monkeypatch.setenv(key, value)
    code, out, err = run(capsys, "chat", "hello")
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"ion: configuration_error: {names} needs the 'gcp' extra, which is not installed:"
        " pip install 'ion-mentoring[gcp]'"
    ]


def test_a_missing_gemini_extra_is_503_llm_unavailable(
    clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _hide(monkeypatch, "google.genai")
    app = build_app(
        make_settings(clean_env / "data", llm_provider="gemini", gemini_api_key="key-123456")
    )
    set_app(app)
    try:
        client = function_client("chat")
        token = app.dev_token("alice")
        response = client.post(
            "/v1/chat", json={"message": "hi"}, headers={"Authorization": f"Bearer {token}"}
        )
        assert response.status_code == 503
        assert response.get_json()["error"]["code"] == "llm_unavailable"
        ready = client.get("/ready").get_json()
        assert ready["checks"]["llm"] == {
            "ok": False,
            "detail": "gemini: google-genai is not installed (pip install 'ion-mentoring[gemini]')",
            "provider": "gemini",
        }
    finally:
        set_app(None)


# ---- an unreachable Firestore from the terminal -----------------------------------------


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])  # closed again when the block ends


def test_ion_chat_on_an_unreachable_firestore_fails_fast_in_one_line(clean_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update(
        {
            "FIRESTORE_EMULATOR_HOST": f"127.0.0.1:{_closed_port()}",
            "ION_GCP_PROJECT": "demo-ion",
            "ION_DATA_DIR": str(clean_env / "data"),
            "ION_JWT_ISSUER": "https://auth.example",
            "ION_JWT_AUDIENCE": "ion",
        }
    )
    result = subprocess.run(
        [str(BIN / "ion"), "chat", "--backend", "gcp", "how do decorators work?"],
        capture_output=True,
        text=True,
        env=env,
        cwd=clean_env,
        timeout=60,
        check=False,
    )
    assert (result.returncode, result.stdout) == (2, "")
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("ion: dependency_unavailable: the gcp store cannot be reached:")
    assert "Traceback" not in result.stderr


def test_an_answer_that_could_not_be_stored_is_marked_not_saved(
    capsys: pytest.CaptureFixture[str], clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.adapters.sqlite.conversations import SqliteStore

    def down(self: Any, *args: Any, **kwargs: Any) -> None:
        raise DependencyUnavailable("sqlite unavailable: disk I/O error")

    monkeypatch.setattr(SqliteStore, "save_turn", down)
    code, out, err = run(capsys, "chat", "how do python decorators work?")
    assert code == 2
    assert out.rstrip().endswith("[this answer was NOT saved]")
    assert "[model" not in out and "conversation:" not in out
    assert err.strip().splitlines() == [
        "ion: dependency_unavailable: sqlite unavailable: disk I/O error"
    ]


# ---- 5xx bodies: a stable code and message; the detail goes to the log ---------------


INTERNAL = "quota store unavailable: Timeout of 5.0s exceeded, last exception: ipv4:127.0.0.1:8571"


def test_503_bodies_carry_no_internals(
    app: App, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def down(*args: Any, **kwargs: Any) -> None:
        raise DependencyUnavailable(INTERNAL)

    monkeypatch.setattr(app.quota, "admit", down)
    client = function_client("chat")
    headers = {"Authorization": f"Bearer {app.dev_token('alice')}", "X-Request-Id": "req-12345678"}
    with caplog.at_level(logging.INFO, logger="ion.http"):
        response = client.get("/v1/conversations", headers=headers)
    assert response.status_code == 503
    assert envelope(response.data) == {
        "error": {
            "code": "dependency_unavailable",
            "message": "The service is temporarily unavailable. Please try again shortly.",
        },
        "request_id": "req-12345678",
    }
    assert response.headers["Retry-After"] == "5"
    [record] = [r for r in caplog.records if INTERNAL in r.getMessage()]
    assert record.levelno == logging.WARNING
    assert "req-12345678" in record.getMessage()


def test_llm_configuration_detail_stays_in_the_log(
    clean_env: Path, caplog: pytest.LogCaptureFixture
) -> None:
    app = build_app(make_settings(clean_env / "data", llm_provider="gemini"))
    set_app(app)
    try:
        client = function_client("chat")
        with caplog.at_level(logging.INFO, logger="ion.http"):
            response = client.post(
                "/v1/chat",
                json={"message": "hi"},
                headers={"Authorization": f"Bearer {app.dev_token('alice')}"},
            )
    finally:
        set_app(None)
    assert response.status_code == 503
    body = response.get_json()
    assert body["error"] == {
        "code": "llm_unavailable",
        "message": "The mentor cannot answer right now; your message was kept."
        " Please try again shortly.",
    }
    assert "ION_GEMINI" not in response.get_data(as_text=True)
    assert int(response.headers["Retry-After"]) >= 1
    assert any("ION_GEMINI_API_KEY" in r.getMessage() for r in caplog.records)


# ---- answers the web server gives by itself ---------------------------------------------


@pytest.fixture(params=["function", "local"])
def any_client(request: pytest.FixtureRequest, app: App) -> Any:
    if request.param == "function":
        return function_client("chat")
    return create_local_app().test_client()


@pytest.mark.parametrize(
    ("method", "path", "status", "code"),
    [
        ("GET", "/v1/conversations/abc%0aINJ", 404, "not_found"),
        ("TRACE", "/v1/chat", 405, "method_not_allowed"),
        ("PROPFIND", "/health", 405, "method_not_allowed"),
        ("GET", "/favicon.ico", 404, "not_found"),
    ],
    ids=["newline in path", "TRACE", "PROPFIND", "favicon"],
)
def test_every_answer_is_the_json_envelope(
    any_client: Any, method: str, path: str, status: int, code: str
) -> None:
    response = any_client.open(path, method=method)
    assert response.status_code == status
    assert response.mimetype == "application/json"
    assert envelope(response.data)["error"]["code"] == code
    assert_secure(response.headers)


def _raw(host: str, port: int, method: str, path: str, headers: dict[str, str]) -> Any:
    connection = http.client.HTTPConnection(host, port, timeout=30)
    try:
        connection.request(method, path, headers=headers)
        response = connection.getresponse()
        return response.status, dict(response.getheaders()), response.read()
    finally:
        connection.close()


@pytest.fixture
def ion_serve(clean_env: Path) -> Iterator[tuple[int, subprocess.Popen[str]]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update({"ION_DATA_DIR": str(clean_env / "data"), "ION_JWT_SECRET": TEST_JWT_SECRET})
    process = subprocess.Popen(
        [str(BIN / "ion"), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=clean_env,
    )
    try:
        assert process.stdout is not None
        first = process.stdout.readline()
        assert first.startswith("ION Mentoring serving on http://127.0.0.1:"), first
        port = int(first.split("http://127.0.0.1:")[1].split()[0])
        yield port, process
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_ion_serve_answers_server_level_errors_as_json(
    ion_serve: tuple[int, subprocess.Popen[str]],
) -> None:
    port, _ = ion_serve
    status, headers, body = _raw("127.0.0.1", port, "GET", "/health", {"X-Big": "a" * 70_000})
    assert status == 431
    assert headers["Content-Type"] == "application/json"
    assert envelope(body)["error"]["code"] == "request_header_fields_too_large"
    assert_secure(headers)
    status, headers, body = _raw("127.0.0.1", port, "TRACE", "/v1/chat", {})
    assert status == 405
    assert envelope(body)["error"]["code"] == "method_not_allowed"
    assert_secure(headers)


# ---- non-UTF-8 JSON ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw",
    [
        json.dumps({"message": "hi"}).encode("utf-16"),
        json.dumps({"message": "hi"}).encode("utf-16-le"),
        json.dumps({"message": "hi"}).encode("utf-32"),
        b"\xef\xbb\xbf" + json.dumps({"message": "hi"}).encode(),
    ],
    ids=["utf-16 with BOM", "utf-16-le", "utf-32", "utf-8 with BOM"],
)
def test_only_utf8_json_is_accepted(app: App, raw: bytes) -> None:
    client = function_client("chat")
    response = client.post(
        "/v1/chat",
        data=raw,
        content_type="application/json",
        headers={"Authorization": f"Bearer {app.dev_token('alice')}"},
    )
    assert response.status_code == 400
    assert envelope(response.data)["error"]["code"] == "invalid_json"


# ---- the command line's rough edges -----------------------------------------------------


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("a\x1b[31mred", "control characters"),
        ("   ", "must not be empty"),
        ("\u200b\u200d", "must not be empty"),
        ("a" * 4001, "limit of 4000 characters"),
    ],
    ids=["escape", "spaces", "zero-width", "4001 chars"],
)
def test_ion_chat_validates_like_the_api(
    capsys: pytest.CaptureFixture[str], clean_env: Path, text: str, complaint: str
) -> None:
    code, out, err = run(capsys, "chat", text)
    assert (code, out) == (2, "")
    assert err.startswith("ion: validation_failed: message") and complaint in err
    app = build_app(make_settings(clean_env / ".ion"))
    assert app.chat.list_conversations("local", limit=10).conversations == []


def test_ion_serve_with_jwks_prints_a_hint_instead_of_a_token(clean_env: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update(
        {"ION_DATA_DIR": str(clean_env / "data"), "ION_JWKS_URL": "https://idp.example/jwks"}
    )
    process = subprocess.Popen(
        [str(BIN / "ion"), "serve", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
        cwd=clean_env,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().startswith("ION Mentoring serving on")
        hint = process.stdout.readline()
        assert hint.startswith("Tokens come from your identity provider (ION_JWKS_URL is set")
    finally:
        process.terminate()
        process.wait(timeout=30)


def test_ion_serve_on_a_busy_port_is_one_line_and_no_token(
    capsys: pytest.CaptureFixture[str], clean_env: Path
) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code, out, err = run(capsys, "serve", "--port", str(port))
    assert (code, out) == (2, "")
    assert err.strip().splitlines() == [
        f"ion: cannot listen on 127.0.0.1:{port}: the address is already in use"
        " (another server on that port? try --port)"
    ]


def test_interactive_commands(clean_env: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ion.entrypoints.cli.main", "chat"],
        input="/help\nhow do decorators work?\n/new\n/nope\n/quit\n",
        capture_output=True,
        text=True,
        timeout=60,
        cwd=clean_env,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "/new    start a new conversation" in out and "/quit   leave" in out
    assert "(new conversation: your next message starts it)" in out
    assert "unknown command /nope; /help lists the commands" in out
    assert out.count("[Elro (엘로)") == 1  # /help, /new and /nope never reached the mentor
    app = build_app(make_settings(clean_env / ".ion"))
    [conversation] = app.chat.list_conversations("local", limit=10).conversations
    assert conversation.message_count == 2


def test_cached_answer_footer(capsys: pytest.CaptureFixture[str], clean_env: Path) -> None:
    assert run(capsys, "chat", "what is a closure?")[0] == 0
    code, out, _ = run(capsys, "chat", "what is a closure?")
    assert code == 0
    assert "\n[model offline · cached answer]\n" in out


def test_outbox_drain_prints_each_failure_without_payload(
    capsys: pytest.CaptureFixture[str], clean_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ion.adapters.outbox import InProcessTransport
    from ion.ports import OutboxEntry

    app = build_app(make_settings(clean_env / ".ion"))
    app.store.add_outbox(
        OutboxEntry(
            id="entry-1",
            event_type="chat.turn.completed",
            payload={"secret_text": "PAYLOAD-TEXT"},
            created_at=datetime.now(UTC),
        )
    )

    def down(self: Any, event_type: str, envelope: dict[str, Any]) -> None:
        raise ConnectionError("broker down")

    monkeypatch.setattr(InProcessTransport, "send", down)
    code, out, err = run(capsys, "outbox", "drain")
    assert code == 1
    assert json.loads(out) == {"published": 0, "failed": 1, "remaining": 1}
    assert err.strip().splitlines() == [
        "failed: entry-1 (chat.turn.completed, attempt 1): ConnectionError: broker down"
    ]


def test_makefile_run_installs_only_what_running_needs() -> None:
    makefile = (REPO / "Makefile").read_text()
    rules = {
        line.split(":", 1)[0]: line.split(":", 1)[1].split()
        for line in makefile.splitlines()
        if ":" in line and not line.startswith(("\t", "#", " ")) and "=" not in line
    }
    assert rules["run"] == ["$(RUN_STAMP)"]
    run_recipe = makefile.split("$(RUN_STAMP): pyproject.toml\n", 1)[1].split("\n\n", 1)[0]
    assert "-e '.[gcp,gemini]'" in run_recipe and "dev" not in run_recipe
    # The browser tests need Debian's chromium: `make browser` installs it (apt) or says how.
    assert rules["unit"] == ["setup", "browser"] and rules["setup"] == ["$(STAMP)"]
    assert "scripts/ensure_browser.sh" in makefile.split("\nbrowser:\n", 1)[1].split("\n\n", 1)[0]
