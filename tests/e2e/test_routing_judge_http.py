"""The routing judge wired by bootstrap (ION_ROUTING_JUDGE=gemini), through the deployed
functions' HTTP APIs and the CLI; Gemini is tests/fakes/gemini.py behind the real client."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from ion.bootstrap import App, build_app, set_app
from ion.entrypoints.cli.main import main
from ion.services.judge import JudgedRouter, judge_key
from tests.fakes.gemini import FakeGemini, http_error, structured
from tests.support.app import function_client, make_settings
from tests.support.openapi_check import CheckedClient

pytest.importorskip("google.genai")

MODEL = "gemini-judge-http"
# The lexicon + semantic router sends this to elro; the scripted judge says nana.
MESSAGE = "How should I structure the modules of my side project?"
VERDICT = {"persona": "nana", "secondary": "elro", "main_need": "organise a side project"}


@pytest.fixture
def judged_app(clean_env: Path, fake_gemini: FakeGemini) -> Iterator[App]:
    settings = make_settings(
        clean_env / "data",
        routing_judge="gemini",
        routing_judge_model=MODEL,
        routing_judge_threshold=1.0,  # every message is "unsure": the judge always decides
        gemini_api_key="test-api-key-0123456789",
        gemini_base_url=fake_gemini.base_url,
    )
    application = build_app(settings)
    set_app(application)
    yield application
    set_app(None)


def client(name: str) -> CheckedClient:
    return CheckedClient(function_client(name))


def auth(app: App) -> dict[str, str]:
    return {"Authorization": f"Bearer {app.dev_token('alice')}"}


def test_bootstrap_wraps_the_local_router_only_when_on(judged_app: App, clean_env: Path) -> None:
    assert isinstance(judged_app.router, JudgedRouter)
    assert judged_app.router.threshold == 1.0
    off = build_app(make_settings(clean_env / "off"))
    assert not isinstance(off.router, JudgedRouter)


def test_route_api_says_judged(judged_app: App, fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(structured(VERDICT), model=MODEL)
    api = client("persona_route")

    response = api.post("/v1/route", json={"message": MESSAGE}, headers=auth(judged_app))

    assert response.status_code == 200
    body = response.get_json()
    assert body["persona"] == {"id": "nana", "name": "Nana"}
    routing = body["routing"]
    assert routing["judged"] is True
    assert (routing["primary"], routing["secondary"]) == ("nana", "elro")
    assert routing["reason"].startswith("judge: organise a side project; local: ")
    assert len(fake_gemini.requests) == 1
    # The same message again: answered from the instance's verdict cache.
    again = api.post("/v1/route", json={"message": MESSAGE}, headers=auth(judged_app))
    assert again.get_json()["routing"] == routing
    assert len(fake_gemini.requests) == 1


def test_route_api_keeps_the_local_decision_when_the_judge_fails(
    judged_app: App, fake_gemini: FakeGemini
) -> None:
    fake_gemini.enqueue(MODEL, http_error(500))
    body = (
        client("persona_route")
        .post("/v1/route", json={"message": MESSAGE}, headers=auth(judged_app))
        .get_json()
    )
    assert body["routing"]["judged"] is False
    assert body["persona"]["id"] == judged_app.router.local.route(MESSAGE).decision.primary  # type: ignore[attr-defined]
    assert len(fake_gemini.requests) == 1


def test_route_api_without_the_judge_says_not_judged(
    app: App, route_client: FlaskClient, auth: dict[str, str], fake_gemini: FakeGemini
) -> None:
    body = (
        CheckedClient(route_client)
        .post("/v1/route", json={"message": MESSAGE}, headers=auth)
        .get_json()
    )
    assert body["routing"]["judged"] is False
    assert fake_gemini.requests == []


def test_chat_json_and_stream_say_judged(judged_app: App, fake_gemini: FakeGemini) -> None:
    fake_gemini.set_default(structured(VERDICT), model=MODEL)
    api = client("chat")

    response = api.post("/v1/chat", json={"message": MESSAGE}, headers=auth(judged_app))
    assert response.status_code == 200
    reply = response.get_json()
    assert reply["persona"]["id"] == "nana"
    assert reply["routing"]["judged"] is True
    assert reply["routing"]["reason"].startswith("judge: organise a side project; local: ")

    stream = api.post(
        "/v1/chat",
        json={"message": MESSAGE + " (again)", "stream": True},
        headers=auth(judged_app),
    )
    assert stream.status_code == 200
    first = stream.get_data(as_text=True).split("\n\n", 1)[0]
    assert first.startswith("event: meta\n")
    meta = json.loads(first.split("data: ", 1)[1])
    assert meta["routing"]["judged"] is True
    assert meta["persona"]["id"] == "nana"
    # One judge call per distinct message; the offline model answered the chats.
    assert len(fake_gemini.requests) == 2


def test_disagreements_reach_the_store_and_the_cli(
    judged_app: App,
    fake_gemini: FakeGemini,
    clean_env: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    local = judged_app.router.local.route(MESSAGE).decision  # type: ignore[attr-defined]
    assert local.primary != "nana"
    fake_gemini.set_default(structured(VERDICT), model=MODEL)
    client("persona_route").post("/v1/route", json={"message": MESSAGE}, headers=auth(judged_app))

    monkeypatch.setenv("ION_DATA_DIR", str(clean_env / "data"))
    code = main(["routing", "disagreements", "--limit", "5"])
    out, _ = capsys.readouterr()
    assert code == 0
    (line,) = out.splitlines()
    row = json.loads(line)
    assert row["message_hash"] == judge_key(MESSAGE, [], None)
    assert row["message"] == MESSAGE
    assert (row["local_persona"], row["judge_persona"], row["judge_secondary"]) == (
        local.primary,
        "nana",
        "elro",
    )
    assert row["confidence"] == local.confidence
    assert row["main_need"] == "organise a side project"
    assert main(["routing", "disagreements", "--limit", "0"]) == 2


def test_eval_routing_never_asks_the_judge(
    clean_env: Path,
    fake_gemini: FakeGemini,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("ION_ROUTING_JUDGE", "gemini")
    monkeypatch.setenv("ION_ROUTING_JUDGE_THRESHOLD", "1.0")
    monkeypatch.setenv("ION_GEMINI_API_KEY", "test-api-key-0123456789")
    monkeypatch.setenv("ION_GEMINI_BASE_URL", fake_gemini.base_url)
    labelled = clean_env / "set.jsonl"
    labelled.write_text(
        json.dumps({"id": "t-1", "text": MESSAGE, "persona": "elro"}) + "\n", encoding="utf-8"
    )
    assert main(["eval", "routing", str(labelled)]) == 0
    out, _ = capsys.readouterr()
    assert out.strip().splitlines()[-1].endswith("n=1")
    assert fake_gemini.requests == []
