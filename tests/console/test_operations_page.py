"""The operations pages in a real browser: the list with its filters, paging and live
refresh; one operation followed live to SUCCEEDED with its timeline, conditions, warnings
and results; and Cancel of an operation that waits."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.async_api import Page, Request, expect

from service.embedded_cluster.controllers.resources import VMSNAPSHOT
from tests.console.conftest import api_call, screenshot, sign_in
from tests.support.doors import pace
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def _snapshot(server: GatewayServer, name: str, disk: str = "spare-disk") -> dict[str, Any]:
    return await api_call(server, "POST", "/v1/namespaces/demo/disk-snapshots", {"name": name, "virtualDiskName": disk})


def _row(page: Page, op: dict[str, Any]) -> Any:
    return page.locator(f'tr[data-key="{op["id"]}"]')


async def test_the_list_filters_pages_and_refreshes_live(page: Page, gateway_server: GatewayServer) -> None:
    first = await _snapshot(gateway_server, "first")
    second = await _snapshot(gateway_server, "second")
    # A consistent snapshot of a running VM without a guest agent waits (RUNNING, Pending).
    waiting = await _snapshot(gateway_server, "waiting", "no-agent-vm-root")

    await sign_in(page, gateway_server, start="#/operations")
    await expect(page.locator("main h1")).to_have_text("Operations")
    for op in (first, second, waiting):
        await expect(_row(page, op)).to_be_visible()
    await expect(_row(page, first).locator('td[data-label="State"]')).to_have_text("SUCCEEDED")
    await expect(_row(page, waiting).locator('td[data-label="State"]')).to_have_text("RUNNING")
    await expect(_row(page, first).locator('td[data-label="Target"]')).to_have_text(
        "VirtualDisk demo/spare-disk")
    await expect(page.locator("tbody tr")).to_have_count(3)

    # Filters narrow the list, and stay in the address.
    await page.get_by_label("State").select_option("SUCCEEDED")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page).to_have_url(re.compile(r"#/operations\?state=SUCCEEDED$"))
    await expect(page.locator("tbody tr")).to_have_count(2)
    await expect(_row(page, waiting)).to_have_count(0)
    await page.get_by_label("Type").select_option("CREATE_VM_SNAPSHOT")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page.get_by_text("No operations match.")).to_be_visible()
    await page.get_by_label("Type").select_option("CREATE_DISK_SNAPSHOT")
    await page.get_by_label("Rows per page").select_option("10")
    await page.get_by_role("button", name="Apply filters").click()
    await expect(page).to_have_url(re.compile(r"type=CREATE_DISK_SNAPSHOT&state=SUCCEEDED&pageSize=10$"))
    await expect(page.locator("tbody tr")).to_have_count(2)

    # Live: a new operation that matches shows up within the refresh, with no reload and
    # the filters as they were.
    await page.evaluate("window.__marker = 1")
    third = await _snapshot(gateway_server, "third")
    await expect(_row(page, third).locator('td[data-label="State"]')).to_have_text("SUCCEEDED", timeout=8_000)
    await expect(page.locator("tbody tr")).to_have_count(3)
    await expect(page.get_by_label("State")).to_have_value("SUCCEEDED")
    await expect(page.get_by_label("Type")).to_have_value("CREATE_DISK_SNAPSHOT")
    assert await page.evaluate("window.__marker") == 1
    await screenshot(page, "operations")

    # Paging: two at a time, More for the rest (newest first).
    await page.goto(f"{gateway_server.rest_url}/console/#/operations?pageSize=2")
    await expect(page.locator("tbody tr")).to_have_count(2)
    await expect(_row(page, waiting)).to_be_visible()
    await expect(_row(page, third)).to_be_visible()
    more = page.get_by_role("button", name="More")
    await more.click()
    await expect(page.locator("tbody tr")).to_have_count(4)
    await expect(more).to_be_hidden()         # the last page: no token left
    order = await page.locator("tbody tr").evaluate_all("rows => rows.map(r => r.dataset.key)")
    assert order == [third["id"], waiting["id"], second["id"], first["id"]]


async def test_one_operation_followed_live_to_succeeded(page: Page, gateway_server: GatewayServer) -> None:
    # Each step of the VM snapshot controller held long enough to open the page before it is done.
    pace(gateway_server.cluster, VMSNAPSHOT, 0.8)
    # image-vm has an image attached: the operation carries the guide's warning.
    op = await api_call(gateway_server, "POST", "/v1/namespaces/demo/vm-snapshots",
                    {"name": "image-vm-snapshot", "virtualMachineName": "image-vm", "keepIPAddress": "Never"})
    await sign_in(page, gateway_server, start=f"#/operations/{op['id']}")
    await expect(page.locator("main h1")).to_have_text("Create VM snapshot: image-vm")
    facts = page.locator("dl.facts")
    state = facts.locator("dt:text-is('State') + dd")
    await expect(state).to_have_text(re.compile("^(PENDING|RUNNING)$"))
    await page.evaluate("window.__marker = 1")
    await expect(page.locator(".live-status")).to_have_text(re.compile("Live"))
    await expect(page.get_by_role("button", name="Cancel operation")).to_be_visible()

    await expect(state).to_have_text("SUCCEEDED", timeout=10_000)
    await expect(page.locator(".live-status")).to_have_text("Done: SUCCEEDED.")
    assert await page.evaluate("window.__marker") == 1
    await expect(page.get_by_role("button", name="Cancel operation")).to_have_count(0)
    await expect(facts.locator("dt:text-is('Resource') + dd")).to_have_text(
        "VirtualMachineSnapshot demo/image-vm-snapshot")
    await expect(facts.locator("dt:text-is('Actor') + dd")).to_have_text("dev")
    await expect(facts.locator("dt:text-is('Ended') + dd time")).to_be_visible()
    await expect(page.locator(".warnings li").first).to_be_visible()

    timeline = page.locator("section[aria-labelledby='timeline-h'] tbody tr")
    await expect(timeline.last.locator('td[data-label="State"]')).to_have_text("SUCCEEDED")
    assert await timeline.count() >= 2
    await expect(page.locator("section[aria-labelledby='conditions-h'] tbody tr").first).to_be_visible()
    results = page.locator("section[aria-labelledby='results-h'] tbody tr")
    await expect(results.filter(has_text="image-vm-root").first).to_be_visible()
    await expect(results.filter(has_text="VirtualMachine").first.locator('td[data-label="Status"]')) \
        .to_have_text("Saved")
    await screenshot(page, "operation-detail")
    # Narrow (about 200% zoom): the tables stack, nothing scrolls sideways.
    await page.set_viewport_size({"width": 640, "height": 900})
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(page, "operation-detail-narrow")


async def test_cancel_an_operation_that_waits(page: Page, gateway_server: GatewayServer) -> None:
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method == "POST" else None)
    op = await _snapshot(gateway_server, "never-ready", "no-agent-vm-root")
    await sign_in(page, gateway_server, start=f"#/operations/{op['id']}")
    state = page.locator("dl.facts dt:text-is('State') + dd")
    await expect(state).to_have_text("RUNNING")
    await expect(page.locator("dl.facts dt:text-is('Phase') + dd")).to_have_text("Pending")
    # Only a VM restore needs force: nothing to tick here.
    await expect(page.get_by_label(re.compile("Force"))).to_have_count(0)
    await page.get_by_role("button", name="Cancel operation").click()
    await expect(state).to_have_text("CANCELLED", timeout=10_000)
    await expect(page.locator(".live-status")).to_have_text("Done: CANCELLED.")
    await expect(page.get_by_role("button", name="Cancel operation")).to_have_count(0)
    await expect(page.locator("main .problem[role=alert]:visible")).to_have_count(0)
    cancels = [r for r in sent if r.url.endswith(":cancel")]
    assert len(cancels) == 1 and cancels[0].headers.get("idempotency-key")
    stored = await api_call(gateway_server, "GET", f"/v1/operations/{op['id']}")
    assert stored["state"] == "CANCELLED"
