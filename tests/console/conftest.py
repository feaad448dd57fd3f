"""The web console in a real browser: headless Chromium (Debian's package, which
`scripts/run-tests` installs when it is missing) driven by Playwright's async API against a
real gateway on the embedded cluster (the gateway runs on the test's own event loop, so
the browser must be driven asynchronously too).

Every test signs in through the token form, as a person does. Screenshots go to
``var/test-screenshots/console/`` (or ``$DVP_SCREENSHOTS``) for a reviewer to look at.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.support.gateway import GatewayServer

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("DVP_CHROMIUM", "/usr/bin/chromium")
SCREENSHOTS = Path(os.environ.get("DVP_SCREENSHOTS", REPO / "var" / "test-screenshots" / "console"))
# As root and offline: no sandbox (needs a user namespace), no background connections to
# Google's hosts (refused here, and slow to give up on).
CHROMIUM_FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage"]
# Browser tests run on SQLite only: each module sets
#     pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


@pytest_asyncio.fixture
async def browser() -> AsyncIterator[Browser]:
    if shutil.which(CHROMIUM) is None:
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM} (apt-get install chromium; "
                    "scripts/run-tests installs it when run as root)")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        try:
            yield launched
        finally:
            await launched.close()


@pytest_asyncio.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab (empty sessionStorage); console errors and CSP violations fail the test."""
    context = await browser.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    tab = await context.new_page()
    problems: list[str] = []
    tab.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
    tab.on("pageerror", lambda error: problems.append(str(error)))
    try:
        yield tab
    finally:
        await context.close()
    # A refused API call logs "Failed to load resource" (the page shows it as a problem box).
    unexpected = [text for text in problems if "Failed to load resource" not in text]
    assert not unexpected, f"the page logged errors: {unexpected}"


async def api_call(server: GatewayServer, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
    """A call of the REST API as the dev user, outside the page (what another client does)."""
    async with aiohttp.ClientSession(headers=server.auth()) as http, \
            http.request(method, f"{server.rest_url}{path}", json=body) as response:
        assert response.status < 300, await response.text()
        return await response.json()


async def sign_in(page: Page, server: GatewayServer, *, user: str = "dev", start: str = "") -> None:
    """Open the console and enter the token in its form, as a person does."""
    await page.goto(f"{server.rest_url}/console/{start}")
    await page.get_by_label("Bearer token").fill(server.tokens[user])
    await page.get_by_role("button", name="Use token").click()
    await expect(page.get_by_role("button", name="Forget token")).to_be_visible()


async def screenshot(page: Page, name: str) -> Path:
    """The whole page as a PNG (the directory is made by Playwright)."""
    path = SCREENSHOTS / f"{name}.png"
    await page.screenshot(path=str(path), full_page=True)
    return path
