"""Browser fixtures: the real local stack on a free port and Debian's Chromium driven by Playwright.

Every page opened through ``open_page`` records console errors, uncaught exceptions, failed requests
and HTTP error answers; a test that leaves any of them behind fails, so a page that quietly breaks
(a 404 asset, a script error) cannot pass.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests

from functions.localstack.emulators.base import free_port
from functions.localstack.stack import LocalStack

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "tests" / "artifacts"
DOCS_SCREENSHOTS = ROOT / "docs" / "screenshots"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
# The one screenshot of each page kept in the repository (README), written by tests/browser/screenshots.py.
DOCS_PAGES = ("voice-training", "dashboard")
DESKTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}

ALEX = {"X-Dev-User": "alex@example.com"}
OPS = {"X-Dev-User": "ops@example.com"}


@pytest.fixture(scope="module")
def stack(tmp_path_factory) -> Iterator[LocalStack]:
    stack = LocalStack(port=free_port(), data_dir=tmp_path_factory.mktemp("browser-stack")).start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.skip("Chromium is missing: run `bash .ci/ensure-browser` (installs Debian's chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


class PageProblems:
    """What went wrong on one page, as sentences for the failure message."""

    def __init__(self, page, allowed_status: Callable[[str, int], bool]):
        self.items: list[str] = []
        page.on("console", lambda m: m.type == "error" and self.items.append(f"console error: {m.text}"))
        page.on("pageerror", lambda e: self.items.append(f"uncaught exception: {e}"))
        page.on("requestfailed", lambda r: self.items.append(f"request failed: {r.method} {r.url} ({r.failure})"))
        page.on("response", lambda r: r.status >= 400 and not allowed_status(r.url, r.status)
                and self.items.append(f"HTTP {r.status}: {r.request.method} {r.url}"))


@pytest.fixture
def open_page(browser, stack):
    """``open_page(path, viewport=DESKTOP)`` → a Playwright page at ``stack.url + path``.

    Each page gets its own context (fresh localStorage). After the test, any problem recorded on any
    page fails it.
    """
    contexts = []
    problems: list[PageProblems] = []

    def opener(path: str, viewport: dict | None = None, allowed_status=lambda url, status: False):
        context = browser.new_context(viewport=viewport or DESKTOP)
        contexts.append(context)
        page = context.new_page()
        page.set_default_timeout(30_000)
        problems.append(PageProblems(page, allowed_status))
        page.goto(stack.url + path)
        return page

    yield opener
    found = [item for p in problems for item in p.items]
    for context in contexts:
        context.close()
    if found:
        pytest.fail("the page reported problems:\n" + "\n".join(found))


def screenshot(page, name: str) -> Path:
    """Save a full-page screenshot under tests/artifacts/ (and docs/screenshots/ when asked to)."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    if os.environ.get("LEADVOICE_DOCS_SCREENSHOTS") == "1" and name in DOCS_PAGES:
        DOCS_SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        (DOCS_SCREENSHOTS / f"{name}.png").write_bytes(path.read_bytes())
    return path


def wait_for_api(check: Callable[[], bool], *, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.2)


def samples(stack, headers=ALEX) -> list[dict]:
    r = requests.get(f"{stack.url}/ingest/samples", headers=headers, timeout=30)
    assert r.status_code == 200, r.text
    return r.json()["samples"]


def unlabelled_controls(page) -> list[str]:
    """Form controls a screen reader could not name: no <label>, aria-label or aria-labelledby."""
    return page.evaluate("""() => [...document.querySelectorAll('input, select, textarea, button')]
        .filter((c) => c.type !== 'hidden' && !c.closest('[hidden]'))
        .filter((c) => !(c.labels && c.labels.length) && !c.getAttribute('aria-label')
                       && !c.getAttribute('aria-labelledby')
                       && !(c.tagName === 'BUTTON' && c.textContent.trim()))
        .map((c) => c.outerHTML.slice(0, 120))""")


def horizontal_overflow(page) -> int:
    """How many CSS pixels the page is wider than its viewport (0 when nothing scrolls sideways)."""
    return page.evaluate("() => document.documentElement.scrollWidth - window.innerWidth")
