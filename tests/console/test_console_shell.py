"""The console's shell: how it is served (strict headers, only its own files, no inline
script anywhere), the capability list, and the token gate in a real browser."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect
from yarl import URL

from service.console import STATIC_DIR
from service.core.contract import METHODS
from tests.console.conftest import screenshot, sign_in
from tests.support.gateway import GatewayServer, start_gateway

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


class _InlineFinder(HTMLParser):
    """Inline script or style the CSP would (rightly) block: <script> without src, style=, on*=."""

    def __init__(self) -> None:
        super().__init__()
        self.found: list[str] = []
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        names = {name for name, _ in attrs}
        if tag == "script" and "src" not in names:
            self.found.append("<script> without src")
        if tag == "style":
            self.found.append("<style>")
        self.found += [f"{tag} {name}=" for name in names if name == "style" or name.startswith("on")]


def test_no_inline_script_or_style_in_any_file() -> None:
    for page in STATIC_DIR.rglob("*.html"):
        finder = _InlineFinder()
        finder.feed(page.read_text())
        assert finder.found == [], f"{page.name}: {finder.found}"
    for module in STATIC_DIR.rglob("*.js"):
        text = module.read_text()
        # Markup from strings would bypass dom.h's text-only values (and the CSP's intent).
        assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML|document\.write|eval\(|new Function",
                             text), module.name
        assert not re.search(r"https?://", text), f"{module.name} names another origin"


@sqlite_only
async def test_served_with_strict_headers_and_nothing_else(gateway_server: GatewayServer) -> None:
    base = gateway_server.rest_url
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{base}/console", allow_redirects=False) as response:
            assert response.status == 308 and response.headers["Location"] == "/console/"
        async with http.get(f"{base}/console/") as response:
            assert response.status == 200 and response.content_type == "text/html"
            csp = response.headers["Content-Security-Policy"]
            assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp and "unsafe" not in csp
            assert "default-src 'none'" in csp and "connect-src 'self'" in csp
            assert response.headers["X-Content-Type-Options"] == "nosniff"
            assert response.headers["X-Frame-Options"] == "DENY"
            etag = response.headers["ETag"]
        async with http.get(f"{base}/console/", headers={"If-None-Match": etag}) as response:
            assert response.status == 304
        async with http.get(f"{base}/console/app.js") as response:
            assert response.status == 200 and response.content_type == "text/javascript"
        for missing in ("nothing.js", "../openapi.yaml", "%2e%2e/openapi.yaml", "pages/../../README.md", "app.js/x"):
            # encoded=True: sent as written, not normalized by the client first.
            async with http.get(URL(f"{base}/console/{missing}", encoded=True)) as response:
                assert response.status == 404, missing
        async with http.get(f"{base}/console/capabilities.json") as response:
            methods = (await response.json())["methods"]
    assert set(methods) == {m.name for m in METHODS}
    assert all(methods.values()), "every contract method is served in this release"


@sqlite_only
async def test_the_token_gate(page: Page, gateway_server: GatewayServer) -> None:
    await page.goto(f"{gateway_server.rest_url}/console/")
    token = page.get_by_label("Bearer token")
    await token.fill("not-a-token")
    await page.get_by_role("button", name="Use token").click()
    # The refusal shows next to the field, and nothing else of the console opens.
    await expect(page.locator('[data-field="token"] .field-error')).to_be_visible()
    await expect(token).to_have_attribute("aria-invalid", "true")
    await screenshot(page, "sign-in-refused")
    await token.fill(gateway_server.token)
    await token.press("Enter")
    await expect(page.get_by_role("button", name="Forget token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 1
    await page.get_by_role("button", name="Forget token").click()
    await expect(page.get_by_label("Bearer token")).to_be_visible()
    assert await page.evaluate("sessionStorage.length") == 0


@sqlite_only
async def test_each_page_opens_by_its_link(page: Page, gateway_server: GatewayServer) -> None:
    await sign_in(page, gateway_server)
    for name in ("Snapshots", "Operations", "Restore and clone", "Audit"):
        await page.get_by_role("link", name=name, exact=True).click()
        await expect(page.get_by_role("link", name=name, exact=True)).to_have_attribute("aria-current", "page")
        await expect(page.locator("main h1")).to_be_visible()
        await expect(page.locator("main .problem:visible")).to_have_count(0)


@sqlite_only
async def test_switched_off_there_is_no_console(embedded_cluster: object, database_url: str, tmp_path: Path) -> None:
    app, _, _ = await start_gateway(embedded_cluster, database_url, tmp_path, console=False)
    try:
        async with aiohttp.ClientSession() as http:
            for path in ("/console", "/console/", "/console/app.js", "/console/capabilities.json"):
                async with http.get(f"http://127.0.0.1:{app.rest_port}{path}", allow_redirects=False) as response:
                    assert response.status == 404, path
            async with http.get(f"http://127.0.0.1:{app.rest_port}/healthz") as response:
                assert response.status == 200
    finally:
        await app.stop()


@sqlite_only
async def test_a_capability_not_served_is_shown_as_not_yet_available(page: Page,
                                                                     gateway_server: GatewayServer) -> None:
    """A gateway whose clone capability is not registered (as in a release where it is still
    being built): the clone form is not offered at all, while its neighbours still are."""
    del gateway_server.app.gateway.registry.unary["CloneVirtualMachine"]
    async with aiohttp.ClientSession() as http, \
            http.get(f"{gateway_server.rest_url}/console/capabilities.json") as response:
        methods = (await response.json())["methods"]
    assert methods["CloneVirtualMachine"] is False and methods["RestoreVirtualMachine"] is True
    await sign_in(page, gateway_server, start="#/restore/clone")
    section = page.locator("main section")
    await expect(section.get_by_text("not yet available")).to_be_visible()
    await expect(section.get_by_role("button")).to_have_count(0)
    await screenshot(page, "capability-not-yet-available")
    await page.get_by_role("link", name="Restore a VM").click()
    await expect(section.get_by_role("button", name="Check (dry run)")).to_be_visible()
