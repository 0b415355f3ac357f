"""How the web chat shows special turns, in headless Chromium: a crisis answer from the real
API (its resources first and prominent), and the turn modes of the chat API's SSE `meta`
(duo answers, clarifying questions with quick replies as buttons), played to the page as
the API sends them."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest

from ion.bootstrap import build_app, set_app
from tests.support.app import make_settings
from tests.support.browser import WEB, Tab, chromium, open_tab, playwright_api, serving, shoot

playwright_api()  # fails collection, saying what to install, without the browser


@pytest.fixture(scope="module")
def url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    from ion.entrypoints.http.local import create_local_app

    with pytest.MonkeyPatch.context() as patch:
        for name in list(os.environ):
            if name.startswith("ION_"):
                patch.delenv(name)
        set_app(build_app(make_settings(tmp_path_factory.mktemp("turns") / "data")))
        try:
            with serving(create_local_app(web_dir=WEB, dev_user="learner")) as served:
                yield served
        finally:
            set_app(None)


@pytest.fixture
def tab(url: str) -> Iterator[Tab]:
    with chromium() as browser:
        opened = open_tab(browser, viewport={"width": 1280, "height": 800})
        yield opened
        assert opened.problems == []


def send(tab: Tab, text: str) -> None:
    tab.page.get_by_label("Your message").fill(text)
    tab.page.get_by_label("Your message").press("Enter")


def test_a_crisis_answer_puts_the_crisis_lines_first(tab: Tab, url: str) -> None:
    page = tab.page
    page.goto(url + "/")
    send(tab, "I want to kill myself tonight")
    answer = page.locator("article.assistant").last
    answer.locator(".feedback").wait_for()
    crisis = answer.locator(".crisis")
    assert crisis.get_attribute("role") == "alert"
    assert crisis.locator("strong").inner_text() == "You are not alone. Please reach out now:"
    # Before the answer's text, with phone numbers as tap-to-call links.
    order = answer.evaluate("a => [...a.children].map(c => c.className.split(' ')[0])")
    assert order.index("crisis") < order.index("text")
    calls = crisis.locator("a.call")
    assert calls.count() >= 1
    assert calls.first.get_attribute("href") == "tel:" + calls.first.inner_text().replace("-", "")
    assert answer.get_attribute("data-persona") == "lua"
    shoot(tab, "chat-crisis.png")


def _sse(*events: tuple[str, dict[str, Any]]) -> str:
    return "".join(f"event: {name}\ndata: {json.dumps(data)}\n\n" for name, data in events)


def _turn(mode: str, personas: list[str], quick_replies: list[str], text: str) -> str:
    meta = {
        "conversation_id": "c1",
        "message_id": f"m-{mode}",
        "user_message_id": f"u-{mode}",
        "persona": {"id": personas[0], "name": personas[0].title()},
        "routing": {"primary": personas[0], "confidence": 0.5, "reason": "test", "scores": {}},
        "resonance_key": {"tone": "curious", "pace": "medium", "intent": "planning"},
        "safety": {"crisis": False, "resources": []},
        "mode": mode,
        "personas": personas,
        "quick_replies": quick_replies,
    }
    done = {"model": "test", "usage": {}, "finish_reason": "STOP", "cached": False}
    return _sse(("meta", meta), ("delta", {"text": text}), ("done", done))


def test_clarifying_questions_offer_quick_replies_and_duo_answers_name_both(
    tab: Tab, url: str
) -> None:
    page = tab.page
    sent: list[dict[str, Any]] = []
    turns = [
        _turn(
            "clarify", ["nana", "elro"], ["Plan my week", "Explain a concept"], "What do you need?"
        ),
        _turn("duo", ["elro", "nana"], [], "Here is the design, and here is the plan."),
    ]

    def chat(route: Any) -> None:
        sent.append(json.loads(route.request.post_data or "{}"))
        route.fulfill(status=200, content_type="text/event-stream", body=turns[len(sent) - 1])

    page.route("**/v1/chat", chat)
    page.goto(url + "/")
    send(tab, "help")
    clarify = page.locator("article.assistant").last
    clarify.locator(".quick-replies").wait_for()
    assert clarify.locator(".mode").inner_text() == "a question first"
    assert clarify.locator(".persona-name").all_inner_texts() == ["Nana"]
    buttons = clarify.get_by_role("group", name="Quick replies").get_by_role("button")
    assert buttons.all_inner_texts() == ["Plan my week", "Explain a concept"]

    buttons.first.click()
    duo = page.locator("article.assistant").nth(1)
    duo.locator(".feedback").wait_for()
    assert sent[1] == {"message": "Plan my week", "conversation_id": "c1", "stream": True}
    assert duo.locator(".persona-name").all_inner_texts() == ["Elro", "Nana"]
    assert duo.locator(".mode").inner_text() == "two mentors together"
    assert duo.locator(".text").text_content() == "Here is the design, and here is the plan."
