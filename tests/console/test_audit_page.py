"""The audit page in a real browser: a call found by its filters, keyset paging kept in the
hash, the CSV download, and the hash chain's verdict, green and then red once a row is
altered in the database behind the gateway's back."""

from __future__ import annotations

import asyncio
import re
import sqlite3
from pathlib import Path

import aiohttp
import pytest
from playwright.async_api import Page, expect

from tests.console.conftest import screenshot, sign_in
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

REQUEST_ID = "console-audit-probe-1"


async def disk_snapshot_created(server: GatewayServer, request_id: str) -> None:
    """CreateDiskSnapshot through the API with a known request id, followed until it is done."""
    async with aiohttp.ClientSession() as http:
        async with http.post(f"{server.rest_url}/v1/namespaces/demo/disk-snapshots",
                             json={"name": "audit-probe", "virtualDiskName": "spare-disk"},
                             headers={**server.auth(), "X-Request-Id": request_id}) as response:
            assert response.status == 202, await response.text()
            operation = await response.json()
        async with asyncio.timeout(15), http.get(f"{server.rest_url}/v1/operations/{operation['id']}:watch",
                                                 headers={**server.auth(), "Accept": "text/event-stream"}) as watch:
            assert watch.status == 200
            assert '"state": "SUCCEEDED"' in (await watch.text()).replace('":"', '": "')


def sqlite_path(database_url: str) -> Path:
    return Path(database_url.removeprefix("sqlite+aiosqlite:///"))


async def test_search_paging_and_csv_download(page: Page, gateway_server: GatewayServer, tmp_path: Path) -> None:
    await disk_snapshot_created(gateway_server, REQUEST_ID)
    await sign_in(page, gateway_server, start="#/audit")
    await expect(page.locator(".chain")).to_contain_text("Audit chain intact")

    # The call is found by action and actor, with its request id.
    search = page.get_by_role("form", name="Search the audit log")
    await search.get_by_label("Actor").fill("dev")
    await search.get_by_label("Action").select_option("CreateDiskSnapshot")
    await search.get_by_role("button", name="Search").click()
    rows = page.locator(".results tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first.locator('td[data-label="Request id"]')).to_have_text(REQUEST_ID)
    await expect(rows.first.locator('td[data-label="Outcome"]')).to_contain_text("SUCCESS")
    await expect(rows.first.locator('td[data-label="Resource"]')).to_contain_text("disk-snapshots/audit-probe")
    assert "action=CreateDiskSnapshot" in page.url and "actor=dev" in page.url
    await screenshot(page, "audit")

    # The CSV of the search shown: the header and that call.
    async with page.expect_download() as info:
        await page.get_by_role("button", name="Download CSV").click()
    download = await info.value
    assert re.fullmatch(r"audit-\d{8}\.csv", download.suggested_filename)
    saved = tmp_path / download.suggested_filename
    await download.save_as(saved)
    lines = saved.read_text().splitlines()
    assert lines[0] == ("id,time,actor,action,outcome,namespace,resource,protocol,requestId,operationId,code,"
                        "reason,details,prevHash,hash")
    assert len(lines) == 2 and REQUEST_ID in lines[1] and ",CreateDiskSnapshot,SUCCESS," in lines[1]

    # Keyset paging, two events a page: Next, Previous, and a reload keeps the page.
    await search.get_by_label("Action").select_option("")
    await search.get_by_label("Events per page").fill("2")
    await search.get_by_role("button", name="Search").click()
    caption = page.locator(".results caption")
    await expect(caption).to_have_text("Audit events, page 1")
    await expect(rows).to_have_count(2)
    first_page = await rows.locator('td[data-label="#"]').all_inner_texts()
    previous, following = page.get_by_role("button", name="Previous"), page.get_by_role("button", name="Next")
    await expect(previous).to_be_disabled()
    await following.click()
    await expect(caption).to_have_text("Audit events, page 2")
    second_page = await rows.locator('td[data-label="#"]').all_inner_texts()
    assert [int(n) for n in first_page] < [int(n) for n in second_page], (first_page, second_page)
    assert "pageToken=" in page.url and "pageSize=2" in page.url
    await page.reload()
    await expect(caption).to_have_text("Audit events, page 2")
    await expect(rows.locator('td[data-label="#"]')).to_have_text(second_page)
    await page.get_by_role("button", name="Previous").click()
    await expect(caption).to_have_text("Audit events, page 1")
    await expect(rows.locator('td[data-label="#"]')).to_have_text(first_page)
    await expect(page.get_by_role("button", name="Previous")).to_be_disabled()


async def test_verification_turns_red_when_a_row_is_altered(page: Page, gateway_server: GatewayServer,
                                                             database_url: str) -> None:
    await disk_snapshot_created(gateway_server, REQUEST_ID)
    await sign_in(page, gateway_server, start="#/audit")
    chain = page.locator(".chain")
    await expect(chain).to_contain_text(re.compile(r"Audit chain intact — \d+ events verified"))
    await expect(chain).to_have_class(re.compile(r"\bok\b"))

    # Behind the gateway's back: the CreateDiskSnapshot event now names another actor.
    with sqlite3.connect(sqlite_path(database_url)) as db:
        (event_id,) = db.execute("SELECT id FROM audit_events WHERE request_id = ?", (REQUEST_ID,)).fetchone()
        db.execute("UPDATE audit_events SET actor = 'mallory' WHERE id = ?", (event_id,))
    db.close()

    await page.get_by_role("button", name="Verify again").click()
    await expect(chain).to_contain_text(f"Audit chain broken at event {event_id}")
    await expect(chain).to_contain_text(f"event {event_id} was modified after it was written")
    await expect(chain).to_have_class(re.compile(r"\bbad\b"))
    await expect(chain).to_contain_text(f"{event_id - 1} event")   # intact before it
    # The events shown are read again: the altered row, marked as the first broken link.
    altered = page.locator(f'.results tbody tr[data-key="{event_id}"]')
    await expect(altered).to_have_class(re.compile(r"\bbroken\b"))
    await expect(altered.locator('td[data-label="Actor"]')).to_have_text("mallory")
    await screenshot(page, "audit-verify-broken")
    await page.set_viewport_size({"width": 420, "height": 900})
    await screenshot(page, "audit-narrow")
