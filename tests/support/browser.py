"""Shared pieces of the browser tests: Debian's Chromium (/usr/bin/chromium, never a
downloaded browser) launched headless through Playwright, tabs that record uncaught errors
and Content Security Policy refusals, screenshots into docs/screenshots/."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.paths import REPO

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
#: The committed screenshots are refreshed only on request (`make screenshots`), so that a
#: test run never changes the working tree; otherwise they go to a scratch folder.
SCREENSHOTS = (
    REPO / "docs" / "screenshots"
    if os.environ.get("ION_SAVE_SCREENSHOTS") == "1"
    else Path(tempfile.gettempdir()) / "ion-screenshots"
)
WEB = REPO / "web"


def playwright_api() -> Any:
    """Playwright's sync API; a collection error naming what to install when the browser
    or the package is missing (the browser tests never skip silently)."""
    if not CHROMIUM.exists():  # pragma: no cover - the message is the point
        pytest.fail(
            f"{CHROMIUM} is missing: the browser tests need Debian's chromium package"
            " (`make browser`, or `apt-get install -y chromium`)",
            pytrace=False,
        )
    try:
        from playwright import sync_api
    except ImportError:  # pragma: no cover
        pytest.fail("playwright is missing: pip install -e '.[dev]' (make setup)", pytrace=False)
    return sync_api


@contextmanager
def chromium() -> Iterator[Any]:
    with playwright_api().sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True
        )
        try:
            yield launched
        finally:
            launched.close()


@dataclass
class Tab:
    page: Any
    problems: list[str]


def open_tab(browser: Any, *, locale: str = "en-US", **options: Any) -> Tab:
    context = browser.new_context(locale=locale, **options)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda exc: problems.append(f"uncaught: {exc}"))
    # A CSP refusal (inline script, a foreign origin) is a console error in Chromium.
    page.on(
        "console",
        lambda msg: (
            problems.append(msg.text)
            if msg.type == "error" and "Content Security Policy" in msg.text
            else None
        ),
    )
    return Tab(page, problems)


def shoot(tab: Tab, name: str, *, full_page: bool = False) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    tab.page.screenshot(path=str(SCREENSHOTS / name), full_page=full_page)


@contextmanager
def serving(wsgi_app: Any) -> Iterator[str]:
    """`wsgi_app` on a free loopback port in a thread, as `ion serve` runs it; its URL."""
    from werkzeug.serving import make_server

    from ion.entrypoints.http.local import JsonErrorRequestHandler

    server = make_server(
        "127.0.0.1", 0, wsgi_app, threaded=True, request_handler=JsonErrorRequestHandler
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()
