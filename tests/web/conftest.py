"""Browser fixtures: Playwright driving Debian's Chromium (never a downloaded browser) against
the real server (gunicorn + gevent) with the fake upstream; screenshots kept as artifacts."""

import os
import shutil

import pytest

from tests.conftest import UPSTREAM_KEY, UPSTREAM_KEY_ENV, every_provider_type
from tests.live_server import ROOT, GunicornServer

CHROMIUM = os.environ.get("TOLLGATE_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]
SCREENSHOTS = os.path.join(ROOT, "test-artifacts", "screenshots")


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright

    assert shutil.which(CHROMIUM) or os.path.exists(CHROMIUM), (
        f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, headless=True,
                                              args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@pytest.fixture
def live(upstream, tmp_path, monkeypatch):
    """The gateway under gunicorn, 100 credits for every sign-up, providers of every type."""
    monkeypatch.setenv(UPSTREAM_KEY_ENV, UPSTREAM_KEY)
    server = GunicornServer(tmp_path, providers=every_provider_type(upstream),
                            env={"GATEWAY_SIGNUP_CREDITS": "100", "TOLLGATE_GRACEFUL_TIMEOUT": "2"})
    server.secrets = [UPSTREAM_KEY]  # tests add the keys they were shown
    server.start()
    yield server
    server.stop()
    logs = server.log_path.read_text()
    assert not [s for s in server.secrets if s in logs], "a key reached the server's log"


@pytest.fixture
def new_page(browser, live):
    """Pages in fresh browser contexts (separate cookie jars), with CSP reports collected."""
    contexts = []

    def make():
        context = browser.new_context(base_url=live.url, viewport={"width": 1360, "height": 900},
                                      permissions=["clipboard-read", "clipboard-write"])
        context.set_default_timeout(15_000)
        contexts.append(context)
        page = context.new_page()
        page.problems = []
        # script errors and CSP violations; an HTTP error status a test asked for is no problem
        page.on("console", lambda m: m.type == "error" and "Failed to load resource" not in
                m.text and page.problems.append(m.text))
        page.on("pageerror", lambda e: page.problems.append(str(e)))
        page.on("dialog", lambda d: d.accept())
        return page

    yield make
    for context in contexts:
        context.close()


def shot(page, name):
    """Keep a full-page screenshot under test-artifacts/screenshots/."""
    os.makedirs(SCREENSHOTS, exist_ok=True)
    page.screenshot(path=os.path.join(SCREENSHOTS, f"{name}.png"), full_page=True)
