"""Logs never carry message text, tokens, secrets or raw user ids; users appear as hashes."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from ion.adapters.cloud_logging import StructuredHandler
from ion.adapters.logging import make_handler, redact
from ion.bootstrap import App, build_app, set_app
from ion.domain.events import hash_user_id
from tests.support.app import TEST_JWT_SECRET, function_client, make_settings

USER = "learner-7f3a9c-unique@example.com"
SECRET_TEXT = "my-very-private-confession-xyz"


@pytest.fixture
def logged_app(clean_env: Path) -> Iterator[App]:
    application = build_app(
        make_settings(clean_env / "data", rate_limit_per_minute=3, log_level="DEBUG")
    )
    set_app(application)
    yield application
    set_app(None)


@pytest.fixture
def client(logged_app: App) -> FlaskClient:
    return function_client("chat")


def _everything_logged(records: list[logging.LogRecord]) -> str:
    """Rendered messages, tracebacks and every extra attribute of every record."""
    parts = []
    for record in records:
        parts.append(record.getMessage())
        if record.exc_info:
            parts.append(logging.Formatter().formatException(record.exc_info))
        parts.extend(repr(value) for value in record.__dict__.values())
    return "\n".join(parts)


def test_chats_and_errors_log_no_text_token_or_user_id(
    client: FlaskClient, logged_app: App, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    token = logged_app.dev_token(USER)
    auth = {"Authorization": f"Bearer {token}"}
    first = client.post("/v1/chat", json={"message": f"{SECRET_TEXT} one"}, headers=auth)
    assert first.status_code == 200
    cid = first.get_json()["conversation_id"]
    client.post(
        "/v1/chat",
        json={"message": f"{SECRET_TEXT} two", "stream": True, "conversation_id": cid},
        headers=auth,
    ).get_data()
    client.post("/v1/chat", json={"message": f"{SECRET_TEXT}\x00"}, headers=auth)  # 422
    client.post("/v1/chat", json={"message": f"{SECRET_TEXT} three"}, headers=auth)
    client.post("/v1/chat", json={"message": f"{SECRET_TEXT} four"}, headers=auth)  # 429
    client.get("/v1/conversations", headers={"Authorization": f"Bearer {token}x"})  # 401
    client.get(f"/v1/conversations/{cid}", headers=auth)

    logged = _everything_logged(caplog.records)
    assert caplog.records, "the requests were not logged at all"
    for forbidden in (SECRET_TEXT, token, token[:40], USER, TEST_JWT_SECRET):
        assert forbidden not in logged
    request_lines = [r for r in caplog.records if r.name == "ion.http"]
    hashes = {getattr(r, "user_hash", None) for r in request_lines}
    assert hash_user_id(USER) in hashes
    assert {getattr(r, "status", None) for r in request_lines} >= {200, 401, 422, 429}


def test_redaction_filter_scrubs_tokens_keys_and_user_ids() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.redaction")
    logger.propagate = False
    logger.addHandler(make_handler("text", stream))
    logger.setLevel(logging.INFO)
    jwt_like = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhbGljZSJ9.c2lnbmF0dXJlLXZhbHVl"
    try:
        logger.info("calling with Authorization: Bearer %s", "abc.def-ghi")
        logger.info("token %s in text", jwt_like)
        logger.info("GET https://x.example/v1?key=AIzaSyA-1234567890abcdefghijklmnopqrstu&x=1")
        logger.info("user event", extra={"user_id": USER})
        try:
            raise ValueError(f"bad token {jwt_like}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.handlers.clear()
    output = stream.getvalue()
    assert "abc.def-ghi" not in output
    assert jwt_like not in output
    assert "AIzaSyA-1234567890" not in output
    assert USER not in output
    assert output.count("[redacted") == 4


def test_redact_leaves_ordinary_text_alone() -> None:
    text = "GET /v1/conversations/abc123 -> 200 in 3.1 ms"
    assert redact(text) == text


def test_json_lines_for_cloud_logging() -> None:
    stream = io.StringIO()
    handler = StructuredHandler(stream=stream, project="ion-test")
    record = logging.LogRecord("ion.http", logging.WARNING, __file__, 1, "GET %s", ("/x",), None)
    record.request_id = "req-12345678"
    record.status = 429
    record.latency_ms = 1.5
    record.user_id = USER
    handler.handle(record)  # the filters, then emit
    line = json.loads(stream.getvalue().splitlines()[-1])
    assert line["severity"] == "WARNING"
    assert line["message"] == "GET /x"
    assert line["request_id"] == "req-12345678"
    assert line["status"] == 429
    assert line["user_hash"] == hash_user_id(USER)
    assert USER not in stream.getvalue()


def test_filter_escapes_control_characters_and_redacts_query_credentials() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.controls")
    logger.propagate = False
    logger.addHandler(StructuredHandler(stream=stream, project="ion-test"))
    logger.setLevel(logging.INFO)
    try:
        logger.info(
            "GET %s",
            "/v1/a\x00b\r\nFAKE LINE\x1b[31m?id_token=opaque-1&client_secret=opaque-2&page=3",
            extra={"path": "/v1/a\x00b?access_token=opaque-3"},
        )
    finally:
        logger.handlers.clear()
    # One line, whatever the path held.
    lines = [x for x in stream.getvalue().splitlines() if "GET" in x]
    assert len(lines) == 1
    line = json.loads(lines[0])
    assert line["message"] == (
        "GET /v1/a\\x00b\\x0d\\x0aFAKE LINE\\x1b[31m"
        "?id_token=[redacted]&client_secret=[redacted]&page=3"
    )
    assert line["path"] == "/v1/a\\x00b?access_token=[redacted]"


def test_ion_serve_access_log_has_no_token_and_no_raw_control_characters(
    clean_env: Path,
) -> None:
    import os
    import socket
    import subprocess
    import sys
    import time
    import urllib.error
    import urllib.request

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ION_")}
    env.update({"ION_DATA_DIR": str(clean_env / "data"), "ION_JWT_SECRET": TEST_JWT_SECRET})
    log_path = clean_env / "serve.log"
    with log_path.open("wb") as log_file:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ion.entrypoints.cli.main",
                "serve",
                "--port",
                str(port),
                "--user",
                USER,
            ],
            stdout=subprocess.PIPE,
            stderr=log_file,
            env=env,
        )
        try:
            assert server.stdout is not None
            lines = [server.stdout.readline().decode() for _ in range(3)]
            token = lines[2].strip()
            assert token.startswith("eyJ")
            base = f"http://127.0.0.1:{port}"
            for _ in range(200):  # until the server listens (it prints before it binds)
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    time.sleep(0.05)
            auth = {"Authorization": f"Bearer {token}"}

            def get(path: str) -> int:
                request = urllib.request.Request(base + path, headers=auth)
                try:
                    with urllib.request.urlopen(request, timeout=10) as response:
                        return int(response.status)
                except urllib.error.HTTPError as exc:
                    return exc.code

            assert get(f"/v1/conversations?access_token={token}") == 200
            assert get("/v1/conversations/a%00b") == 400
            assert get("/health") == 200
        finally:
            server.terminate()
            server.wait(timeout=30)
    logged = log_path.read_bytes()
    assert b'"GET /health HTTP/1.1" 200' in logged  # werkzeug's access log was written
    assert token.encode() not in logged
    assert token.split(".")[2].encode() not in logged
    assert b"access_token=[redacted]" in logged
    assert b"\x00" not in logged
    assert b"GET /v1/conversations/a\\x00b -> 400" in logged  # ion.entrypoints.http's request line
