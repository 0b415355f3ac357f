"""The web chat and the operator page in a real browser: Debian's headless Chromium
(/usr/bin/chromium, never a downloaded browser) driven by Playwright, against the page and
API `ion serve` serves (the real app on embedded defaults, answering through the fake
Gemini server so streams can be paced). Screenshots go to docs/screenshots/.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from ion.bootstrap import App, build_app, set_app
from ion.domain.models import Intent, Pace, ResonanceKey, Tone
from ion.ports import DailyCount, RoutingDisagreement, StatsDelta
from tests.fakes.gemini import FakeGemini, answer, http_error
from tests.support.app import make_settings
from tests.support.browser import WEB, Tab, chromium, open_tab, playwright_api, serving, shoot

MODEL = "gemini-web-test"
CHAT_LIMIT = 5  # chats per user per minute on this server
PAGE_SIZE = 2  # conversations per page, so the list paginates with three

playwright_api()  # fails collection, saying what to install, without the browser


@dataclass
class Site:
    url: str
    app: App
    gemini: FakeGemini

    def token(self, user: str, *, operator: bool = False) -> str:
        return self.app.dev_token(user, operator=operator)

    def api(self, method: str, path: str, user: str, **kwargs: Any) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.token(user)}"}
        return requests.request(method, f"{self.url}{path}", headers=headers, timeout=10, **kwargs)

    def chat(self, user: str, message: str, conversation_id: str | None = None) -> Any:
        body: dict[str, Any] = {"message": message}
        if conversation_id:
            body["conversation_id"] = conversation_id
        response = self.api("POST", "/v1/chat", user, json=body)
        assert response.status_code == 200, response.text
        return response.json()


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Site]:
    from ion.entrypoints.http.local import create_local_app

    data = tmp_path_factory.mktemp("web") / "data"
    with pytest.MonkeyPatch.context() as patch, FakeGemini() as gemini:
        for name in list(os.environ):
            if name.startswith("ION_"):
                patch.delenv(name)
        app = build_app(
            make_settings(
                data,
                llm_provider="gemini",
                gemini_api_key="test-key-web",
                gemini_base_url=gemini.base_url,
                gemini_model=MODEL,
                llm_timeout_s=10.0,
                llm_max_attempts=1,
                llm_backoff_base_s=0.0,
                rate_limit_per_minute=CHAT_LIMIT,
                page_size=PAGE_SIZE,
                cache_ttl_s=0,
            )
        )
        set_app(app)
        # The same app `ion serve` runs: page files, config.json with dev tokens, the API.
        try:
            with serving(create_local_app(web_dir=WEB, dev_user="learner")) as url:
                yield Site(url, app, gemini)
        finally:
            set_app(None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with chromium() as launched:
        yield launched


@pytest.fixture
def tab(browser: Any, site: Site) -> Iterator[Tab]:
    opened = open_tab(browser, viewport={"width": 1280, "height": 800})
    site.gemini.reset()
    yield opened
    opened.page.context.close()
    assert opened.problems == []


def sign_in_as(tab: Tab, site: Site, user: str) -> None:
    """config.json as the deployed page gets it for `user` (a learner: no operator token)."""
    config = {"api_base": "", "page_size": PAGE_SIZE, "auth": {"mode": "dev"}}
    config["auth"]["token"] = site.token(user)  # type: ignore[index]

    def fulfil(route: Any) -> None:
        route.fulfill(status=200, content_type="application/json", body=json.dumps(config))

    tab.page.route("**/config.json", fulfil)


def send(tab: Tab, text: str) -> None:
    tab.page.get_by_label("Your message").fill(text)
    tab.page.get_by_label("Your message").press("Enter")


def test_a_message_streams_in_with_its_mentor(tab: Tab, site: Site) -> None:
    page = tab.page
    site.gemini.enqueue(
        MODEL, answer("Decorators ", "wrap a function ", "in another one.", chunk_delay_s=0.4)
    )
    page.goto(site.url + "/")  # the real config.json: `ion serve` signs the page in
    send(tab, "how do Python decorators work?")
    answer_box = page.locator("article.assistant").last
    # Text shows while the answer is still streaming (aria-busy until `done`).
    page.wait_for_function(
        "() => { const a = document.querySelector('article.assistant');"
        " return a && a.getAttribute('aria-busy') === 'true'"
        " && a.querySelector('.text').textContent === 'Decorators '; }"
    )
    assert page.get_by_role("button", name="Stop").is_visible()
    answer_box.locator(".feedback").wait_for()
    assert answer_box.locator(".text").inner_text() == "Decorators wrap a function in another one."
    assert answer_box.get_attribute("aria-busy") is None
    assert page.get_by_role("button", name="Send").is_visible()

    route = site.api(
        "POST", "/v1/route", "learner", json={"message": "how do Python decorators work?"}
    ).json()
    persona = route["persona"]["id"]
    catalog = {p["id"]: p for p in site.api("GET", "/v1/personas", "learner").json()["personas"]}
    assert answer_box.get_attribute("data-persona") == persona
    assert answer_box.locator(".persona-name").inner_text() == catalog[persona]["name"]
    assert answer_box.locator(".persona-name-ko").inner_text() == catalog[persona]["name_ko"]
    chips = answer_box.locator(".chips li").all_inner_texts()
    key = route["resonance_key"]
    assert chips == [key["tone"], key["pace"], key["intent"]]
    answer_box.get_by_text("Why this mentor?").click()
    assert answer_box.locator(".why p").first.inner_text() == route["routing"]["reason"]
    # The conversation is listed, current, with both messages.
    item = page.locator("#conversation-list li").first
    assert item.locator(".open").get_attribute("aria-current") == "true"
    assert item.locator(".title").inner_text() == "how do Python decorators work?"
    shoot(tab, "chat.png")


def test_stop_keeps_the_partial_answer(tab: Tab, site: Site) -> None:
    page = tab.page
    sign_in_as(tab, site, "stopper")
    chunks = ["First part. ", *[f"more {n}. " for n in range(10)]]
    site.gemini.enqueue(MODEL, answer(*chunks, chunk_delay_s=1.0))
    page.goto(site.url + "/")
    send(tab, "explain how a hash map works")
    answer_box = page.locator("article.assistant").last
    page.wait_for_function(
        "() => document.querySelector('article.assistant .text')?.textContent === 'First part. '"
    )
    page.get_by_role("button", name="Stop").click()
    note = answer_box.locator(".note")
    note.wait_for()
    assert note.inner_text() == "You stopped this answer; the part above was kept."
    assert answer_box.locator(".text").text_content() == "First part. "
    assert page.get_by_role("button", name="Send").is_visible()
    assert not page.get_by_role("button", name="Stop").is_visible()

    # The server noticed the disconnect and kept the partial answer, marked incomplete.
    deadline = time.monotonic() + 15
    stored: dict[str, Any] = {}
    while time.monotonic() < deadline:
        listed = site.api("GET", "/v1/conversations", "stopper").json()["conversations"]
        if listed:
            cid = listed[0]["conversation_id"]
            messages = site.api("GET", f"/v1/conversations/{cid}", "stopper").json()["messages"]
            stored = messages[-1]
            if stored["role"] == "assistant" and stored["status"] == "incomplete":
                break
        time.sleep(0.2)
    assert (stored["role"], stored["status"]) == ("assistant", "incomplete")
    # What the model produced until the server noticed the closed connection (it finds
    # out on its next write, so one more piece may be in): never the whole answer.
    assert stored["text"] in ("First part. ", "First part. more 0. ")
    # Reopened later, the answer says it was cut off.
    page.reload()
    page.locator("#conversation-list .open").first.click()
    reopened = page.locator("article.assistant").last
    reopened.locator(".note").wait_for()
    assert reopened.locator(".note").inner_text() == "This answer was cut off."


def test_conversations_page_open_and_delete_with_confirmation(tab: Tab, site: Site) -> None:
    page = tab.page
    user = "lister"
    for text in ("first topic: sorting", "second topic: graphs", "third topic: tries"):
        site.chat(user, text)
    sign_in_as(tab, site, user)
    page.goto(site.url + "/")
    titles = page.locator("#conversation-list .title")
    titles.nth(1).wait_for()
    assert titles.all_inner_texts() == ["third topic: tries", "second topic: graphs"]
    page.get_by_role("button", name="Show older conversations").click()
    titles.nth(2).wait_for()
    assert titles.all_inner_texts()[2] == "first topic: sorting"
    assert not page.get_by_role("button", name="Show older conversations").is_visible()

    page.locator("#conversation-list .open", has_text="first topic: sorting").click()
    page.locator("article.user").first.wait_for()
    assert page.locator("article.user .text").all_inner_texts() == ["first topic: sorting"]
    assert page.locator("article.assistant .text").all_inner_texts() == [
        "Hello from the fake Gemini."
    ]

    delete = page.get_by_role("button", name="Delete conversation “second topic: graphs”")
    delete.click()
    dialog = page.get_by_role("dialog")
    assert dialog.is_visible()
    assert dialog.locator("#confirm-body").inner_text().startswith("“second topic: graphs”")
    page.get_by_role("button", name="Keep it").click()
    assert titles.count() == 3
    delete.click()
    page.get_by_role("button", name="Delete for good").click()
    page.wait_for_function("() => document.querySelectorAll('#conversation-list li').length === 2")
    remaining = site.api("GET", "/v1/conversations", user).json()["conversations"]
    assert [c["title"] for c in remaining] == ["third topic: tries", "first topic: sorting"]


def test_feedback_with_a_comment(tab: Tab, site: Site) -> None:
    page = tab.page
    user = "rater"
    reply = site.chat(user, "is 200 ms p95 good enough for an API?")
    sign_in_as(tab, site, user)
    page.goto(site.url + "/")
    page.locator("#conversation-list .open").first.click()
    answer_box = page.locator("article.assistant").last
    up = answer_box.get_by_role("button", name="▲ Helpful")
    up.click()
    status = answer_box.locator(".feedback-status")
    page.wait_for_function(
        "() => document.querySelector('.feedback-status')?.textContent"
        " === 'Thank you for your feedback.'"
    )
    assert up.get_attribute("aria-pressed") == "true"
    answer_box.get_by_label("Tell us more (optional)").fill("clear numbers, thanks")
    answer_box.get_by_role("button", name="Send comment").click()
    page.wait_for_function(
        "() => document.querySelector('.feedback-status')?.textContent"
        " === 'Your comment was saved.'"
    )
    stored = site.app.records.get_feedback(reply["conversation_id"], reply["message_id"])
    assert stored is not None
    assert (stored.rating, stored.comment) == ("up", "clear numbers, thanks")

    answer_box.get_by_role("button", name="▼ Not helpful").click()
    page.wait_for_function(
        "() => document.querySelector('.thumb.down')?.getAttribute('aria-pressed') === 'true'"
    )
    assert status.inner_text() == "Thank you for your feedback."
    changed = site.app.records.get_feedback(reply["conversation_id"], reply["message_id"])
    assert changed is not None and changed.rating == "down"


def test_a_rate_limit_says_how_long_to_wait(tab: Tab, site: Site) -> None:
    page = tab.page
    user = "hasty"
    # Windows are whole UTC minutes: start early in one so all the calls share it.
    if datetime.now(UTC).second > 45:
        time.sleep(61 - datetime.now(UTC).second)
    for n in range(CHAT_LIMIT):
        site.chat(user, f"quick question {n}")
    sign_in_as(tab, site, user)
    page.goto(site.url + "/")
    with page.expect_response(lambda r: r.url.endswith("/v1/chat")) as caught:
        send(tab, "one more question")
    refused = caught.value
    assert refused.status == 429
    wait_s = int(refused.headers["retry-after"])
    assert 1 <= wait_s <= 60
    error = page.get_by_role("alert")
    error.wait_for()
    assert error.inner_text() == (
        f"You are sending messages quickly. Please wait {wait_s} seconds and try again."
    )
    # Nothing was sent: no bubble stays, the text is back in the box to send later.
    assert page.locator("article.user").count() == 0
    assert page.get_by_label("Your message").input_value() == "one more question"
    shoot(tab, "rate-limited.png")


def test_unavailable_mentor_and_offline_are_explained(tab: Tab, site: Site) -> None:
    page = tab.page
    sign_in_as(tab, site, "unlucky")
    site.gemini.enqueue(MODEL, http_error(503, "overloaded"))
    page.goto(site.url + "/")
    send(tab, "what should I learn next?")
    error = page.locator("#error")
    error.wait_for()
    assert error.inner_text() == (
        "The mentor cannot answer right now. Your message was kept; please try again in a moment."
    )

    page.context.set_offline(True)
    banner = page.locator("#offline-banner")
    banner.wait_for()
    assert banner.inner_text() == ("Offline: messages will not be sent until you are back online.")
    send(tab, "are you there?")
    page.wait_for_function(
        "() => document.querySelector('#error').textContent.startsWith('You are offline')"
    )
    assert page.get_by_label("Your message").input_value() == "are you there?"
    page.context.set_offline(False)
    banner.wait_for(state="hidden")


def test_korean_ui_from_the_browser_language_and_switchable(browser: Any, site: Site) -> None:
    tab = open_tab(browser, locale="ko-KR", viewport={"width": 1280, "height": 800})
    page = tab.page
    try:
        sign_in_as(tab, site, "minji")
        site.gemini.reset()
        site.gemini.enqueue(MODEL, answer("괜찮아요, ", "같이 준비해 봐요."))
        page.goto(site.url + "/")
        assert page.locator("h1").inner_text() == "ION 멘토링"
        assert page.evaluate("document.documentElement.lang") == "ko"
        message = page.get_by_label("메시지")
        assert message.get_attribute("placeholder", timeout=5000).startswith("멘토에게")
        message.fill("면접이 내일인데 너무 떨려요")
        page.get_by_role("button", name="보내기").click()
        answer_box = page.locator("article.assistant").last
        answer_box.locator(".feedback").wait_for()
        assert answer_box.locator(".text").inner_text() == "괜찮아요, 같이 준비해 봐요."
        assert answer_box.get_by_role("button", name="▲ 도움이 됐어요").is_visible()
        assert answer_box.get_by_text("왜 이 멘토인가요?").is_visible()
        shoot(tab, "chat-ko.png")

        page.get_by_label("언어").select_option("en")
        assert page.locator("h1").inner_text() == "ION Mentoring"
        assert page.get_by_role("button", name="Send").is_visible()
        page.reload()  # the choice is remembered
        assert page.locator("h1").inner_text() == "ION Mentoring"
        assert tab.problems == []
    finally:
        page.context.close()


def test_readable_on_a_phone(browser: Any, site: Site) -> None:
    tab = open_tab(browser, viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    page = tab.page
    try:
        sign_in_as(tab, site, "phone")
        site.chat("phone", "how should I plan my week of study?")
        page.goto(site.url + "/")
        toggle = page.get_by_role("button", name="Conversations")
        assert toggle.is_visible()
        assert not page.locator("#sidebar").is_visible()
        toggle.click()
        assert toggle.get_attribute("aria-expanded") == "true"
        page.locator("#conversation-list .open").first.click()
        page.locator("article.assistant").last.wait_for()
        assert not page.locator("#sidebar").is_visible()
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shoot(tab, "chat-phone.png")
        assert tab.problems == []
    finally:
        page.context.close()


def _crises(day: Any, back: int) -> list[DailyCount]:
    return [DailyCount(day=day, name="crises", count=1)] if back % 4 == 1 else []


def test_operator_page_draws_its_charts(tab: Tab, site: Site) -> None:
    page = tab.page
    reply = site.chat("student", "how do I structure a REST API project?")
    site.chat("student", "I want to kill myself tonight")
    url = f"/v1/conversations/{reply['conversation_id']}/messages/{reply['message_id']}/feedback"
    assert site.api("POST", url, "student", json={"rating": "up"}).status_code == 201
    now = datetime.now(UTC)
    site.app.records.put_disagreement(
        RoutingDisagreement(
            message_hash="a" * 64,
            message="can you make me a study plan for algorithms?",
            local_persona="elro",
            judge_persona="nana",
            confidence=0.38,
            main_need="a plan",
            created_at=now,
            expires_at=now + timedelta(days=30),
        )
    )
    # Earlier days, as the persona_events consumer would have counted them.
    for back in range(1, 12):
        day = (now - timedelta(days=back)).date()
        counts = [
            DailyCount(day=day, name=f"turns.{persona}", count=(back * weight) % 7 + 1)
            for persona, weight in (("lua", 3), ("elro", 5), ("riri", 2), ("nana", 4))
        ]
        site.app.records.apply_event_once(
            f"{back:032x}", [], processed_at=now, daily=[*counts, *_crises(day, back)]
        )
    # Enough votes on one resonance key for two learned nudges, one each way.
    key = ResonanceKey(tone=Tone.ANXIOUS, pace=Pace.FLOWING, intent=Intent.EXPRESSIVE)
    votes = [
        StatsDelta(persona="lua", resonance_key=key, turns=9, ups=8, downs=1),
        StatsDelta(persona="riri", resonance_key=key, turns=7, ups=1, downs=6),
    ]
    site.app.records.apply_event_once("f" * 32, votes, processed_at=now)
    operator = {"Authorization": f"Bearer {site.token('ops', operator=True)}"}
    daily = requests.get(f"{site.url}/v1/operator/daily", headers=operator, timeout=10).json()
    turns = sum(sum(series) for series in daily["turns"].values())  # other tests chat too
    seeded_crises = sum(len(_crises(now.date(), back)) for back in range(1, 12))
    assert turns >= 2 and sum(daily["crises"]) == 1 + seeded_crises

    page.goto(site.url + "/operator")  # the real config.json: the dev operator token
    page.wait_for_selector("body[data-loaded]")
    assert page.locator("body").get_attribute("data-loaded") == "true"
    for chart in ("chart-routing", "chart-feedback", "chart-crises", "chart-disagreements"):
        svg = page.locator(f"#{chart} svg")
        assert svg.count() == 1, chart
        assert svg.locator("rect.bar").count() >= 1, chart
    assert page.locator("#chart-routing svg").get_attribute("aria-label") == (
        f"Routing distribution over time: {turns} in total"
    )
    assert page.locator("#chart-crises svg").get_attribute("aria-label") == (
        f"Crisis detections per day: {sum(daily['crises'])} in total"
    )
    rows = page.locator("#disagreement-table tbody tr")
    assert rows.count() == 1
    assert rows.first.locator("td").nth(4).inner_text() == (
        "can you make me a study plan for algorithms?"
    )
    assert page.locator("#chart-feedback-keys svg rect.bar").count() >= 4
    nudges = page.locator("#chart-nudges svg rect.bar")
    assert nudges.count() == 2
    assert sorted(nudges.locator("title").all_text_contents()) == [
        "Lua · anxious · flowing · expressive · nudge: 0.031818",
        "Riri · anxious · flowing · expressive · nudge: -0.027778",
    ]
    shoot(tab, "operator.png", full_page=True)


def test_operator_page_refuses_a_learner(tab: Tab, site: Site) -> None:
    page = tab.page
    sign_in_as(tab, site, "curious-learner")
    with page.expect_response(lambda r: "/v1/routing/stats" in r.url) as caught:
        page.goto(site.url + "/operator")
    assert caught.value.status == 403
    assert caught.value.json()["error"]["code"] == "operator_only"
    page.wait_for_selector("body[data-loaded='refused']")
    assert page.get_by_role("alert").inner_text() == (
        "This page is for operators. Your account does not have the operator role."
    )
    assert not page.locator("#charts").is_visible()
    shoot(tab, "operator-refused.png")
