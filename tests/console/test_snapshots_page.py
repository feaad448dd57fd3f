"""The snapshots page in a real browser: the guide's disk snapshot made with the form by
keyboard and followed live to Ready, a refused name shown next to its field, the VM
snapshot form with its IP address policy, a snapshot made through the API showing up in
the open page, the inline delete confirmation, methods a gateway does not serve, and the
page at a narrow width."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from playwright.async_api import Page, Request, expect

from service.core.contract import METHODS
from service.embedded_cluster.controllers.resources import VDSNAPSHOT
from tests.console.conftest import api_call, screenshot, sign_in
from tests.support.doors import pace
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def _mutations(page: Page) -> list[Request]:
    """The API calls that change something, as the page sends them."""
    sent: list[Request] = []
    page.on("request", lambda r: sent.append(r) if r.method in ("POST", "DELETE") and "/v1/" in r.url else None)
    return sent


async def test_the_guides_disk_snapshot_made_by_keyboard_and_followed_live(
        page: Page, gateway_server: GatewayServer) -> None:
    # Hold each step of the simulated snapshot controller, so a phase before Ready shows.
    pace(gateway_server.cluster, VDSNAPSHOT, 0.4)
    sent = _mutations(page)
    await sign_in(page, gateway_server, start="#/snapshots?ns=demo&kind=disk")
    await expect(page.locator("main h1")).to_have_text("Snapshots")
    await expect(page.locator(".live-status")).to_have_text(re.compile("Live"))
    await page.evaluate("window.__marker = 1; document.querySelector('form.create-form').__marker = 1")

    # The guide's flow: a name, the disk, the "Required consistency" switch on, Create.
    name = page.get_by_label("Snapshot name")
    await name.focus()
    await page.keyboard.type("linux-vm-root-snapshot")
    await page.keyboard.press("Tab")
    await expect(page.get_by_label("Disk name")).to_be_focused()
    await page.keyboard.type("linux-vm-root")
    await page.keyboard.press("Tab")
    switch = page.get_by_role("switch", name="Required consistency")
    await expect(switch).to_be_focused()
    await expect(switch).to_be_checked()     # on by default, as the API's default
    await page.keyboard.press("Space")
    await expect(switch).not_to_be_checked()
    await page.keyboard.press("Space")
    await expect(switch).to_be_checked()
    await page.keyboard.press("Tab")
    await expect(page.get_by_role("button", name="Create", exact=True)).to_be_focused()
    await page.keyboard.press("Enter")

    # The status under the name, changing as the controller goes: first a phase before Ready.
    created = page.locator("section.created")
    await expect(created.locator("h3")).to_have_text("linux-vm-root-snapshot")
    await expect(created.locator("h3")).to_be_focused()
    phase = created.locator(".status-line .badge")
    # Checked on every frame (expect's polling slows down to once a second).
    await page.wait_for_function(
        "/^(Pending|InProgress)$/.test(document.querySelector('section.created .status-line .badge').textContent)")
    await expect(phase).to_have_text("Ready", timeout=10_000)
    await expect(created.locator(".trail")).to_have_text(re.compile(r"(Pending|InProgress) → .*Ready$"))
    row = page.locator('tr[data-key="linux-vm-root-snapshot"]')
    await expect(row.locator('td[data-label="Phase"]')).to_have_text("Ready")
    await expect(row.locator('td[data-label="Consistent"]')).to_have_text("true")
    await expect(row.locator('td[data-label="Disk"]')).to_have_text("linux-vm-root")
    # No reload, no re-render: the same document and the same form.
    assert await page.evaluate("window.__marker === 1 && document.querySelector('form.create-form').__marker === 1")

    creates = [r for r in sent if r.method == "POST"]
    assert len(creates) == 1
    assert json.loads(creates[0].post_data or "{}") == {
        "name": "linux-vm-root-snapshot", "virtualDiskName": "linux-vm-root", "requiredConsistency": True}
    assert creates[0].headers.get("idempotency-key")
    await screenshot(page, "snapshots")

    # The row's (and the panel's) operation link opens the operation.
    op_id = (await api_call(gateway_server, "GET", "/v1/namespaces/demo/disk-snapshots/linux-vm-root-snapshot"))[
        "operationId"]
    await row.get_by_role("link").click()
    await expect(page).to_have_url(re.compile(f"#/operations/{op_id}$"))
    await expect(page.locator("main h1")).to_have_text(re.compile("Create disk snapshot"))


async def test_a_refused_name_shows_next_to_its_field(page: Page, gateway_server: GatewayServer) -> None:
    await sign_in(page, gateway_server, start="#/snapshots")
    await page.get_by_label("Snapshot name").fill("Bad_Name!")
    await page.get_by_label("Disk name").fill("linux-vm-root")
    await page.get_by_label("Disk name").press("Enter")
    slot = page.locator('[data-field="name"]')
    await expect(slot.locator(".field-error")).to_be_visible()
    await expect(slot.locator(".field-error")).not_to_be_empty()
    name = page.get_by_label("Snapshot name")
    await expect(name).to_have_attribute("aria-invalid", "true")
    await expect(name).to_be_focused()         # the first invalid field takes the focus
    await expect(page.locator("form.create-form .problem")).to_be_visible()
    # The disk field was fine: no error there.
    await expect(page.locator('[data-field="virtualDiskName"] .field-error')).to_be_hidden()
    await screenshot(page, "snapshots-create-error")

    # A disk that does not exist (404, the field named in its metadata) shows at the disk.
    await name.fill("fixed-name")
    await page.get_by_label("Disk name").fill("no-such-disk")
    await name.press("Enter")
    disk_error = page.locator('[data-field="virtualDiskName"] .field-error')
    await expect(disk_error).to_contain_text("no-such-disk")
    await expect(page.get_by_label("Disk name")).to_be_focused()
    await expect(slot.locator(".field-error")).to_be_hidden()
    await expect(name).not_to_have_attribute("aria-invalid", "true")

    # Fixed, the same form succeeds and the errors go.
    await page.get_by_label("Disk name").fill("linux-vm-root")
    await page.get_by_label("Disk name").press("Enter")
    await expect(page.locator("section.created h3")).to_have_text("fixed-name")
    await expect(disk_error).to_be_hidden()
    await expect(page.locator("form.create-form .problem")).to_be_hidden()

    # A namespace that is not a name: the listing's refusal shows at the namespace field.
    await page.get_by_label("Namespace", exact=True).fill("Bad_NS")
    await page.get_by_role("button", name="Apply").click()
    await expect(page).to_have_url(re.compile(r"ns=Bad_NS"))
    await expect(page.locator('[data-field="namespace"] .field-error')).to_contain_text("RFC 1123")
    await expect(page.get_by_label("Namespace", exact=True)).to_have_attribute("aria-invalid", "true")


async def test_a_vm_snapshot_with_its_ip_address_policy(page: Page, gateway_server: GatewayServer) -> None:
    sent = _mutations(page)
    await sign_in(page, gateway_server, start="#/snapshots?ns=demo")
    await page.get_by_role("link", name="VM snapshots").click()
    await expect(page.get_by_role("link", name="VM snapshots")).to_have_attribute("aria-current", "page")
    await expect(page).to_have_url(re.compile(r"kind=vm"))

    await page.get_by_label("Snapshot name").fill("linux-vm-snapshot")
    await page.get_by_label("Virtual machine name").fill("linux-vm")
    await expect(page.get_by_role("switch", name="Required consistency")).to_be_checked()
    always = page.get_by_role("radio", name="Always")
    await expect(always).to_be_checked()
    # The guide picks Never: arrow keys move within the radio group.
    await always.focus()
    await page.keyboard.press("ArrowDown")
    await expect(page.get_by_role("radio", name="Never")).to_be_checked()
    await page.get_by_role("button", name="Create", exact=True).click()

    created = page.locator("section.created")
    await expect(created.locator("h3")).to_have_text("linux-vm-snapshot")
    await expect(created.locator(".status-line .badge")).to_have_text("Ready", timeout=10_000)
    row = page.locator('tr[data-key="linux-vm-snapshot"]')
    await expect(row.locator('td[data-label="IP policy"]')).to_have_text("Never")
    await expect(row.locator('td[data-label="VM"]')).to_have_text("linux-vm")
    assert json.loads(sent[0].post_data or "{}") == {
        "name": "linux-vm-snapshot", "virtualMachineName": "linux-vm", "requiredConsistency": True,
        "keepIPAddress": "Never"}
    await screenshot(page, "snapshots-vm")
    snapshot = await api_call(gateway_server, "GET", "/v1/namespaces/demo/vm-snapshots/linux-vm-snapshot")
    assert snapshot["keepIPAddress"] == "Never" and snapshot["requiredConsistency"] is True


async def test_api_snapshots_appear_live_and_delete_after_confirmation(
        page: Page, gateway_server: GatewayServer) -> None:
    listings: list[str] = []
    page.on("request", lambda r: listings.append(r.url)
            if r.method == "GET" and r.url.split("?")[0].endswith("/disk-snapshots") else None)
    sent = _mutations(page)
    await sign_in(page, gateway_server, start="#/snapshots?ns=demo&kind=disk")
    await expect(page.locator(".live-status")).to_have_text(re.compile("Live"))
    await expect(page.get_by_text("No disk snapshots in this namespace yet.")).to_be_visible()
    await page.evaluate("window.__marker = 1")

    await api_call(gateway_server, "POST", "/v1/namespaces/demo/disk-snapshots",
               {"name": "from-the-api", "virtualDiskName": "spare-disk"})
    row = page.locator('tr[data-key="from-the-api"]')
    await expect(row.locator('td[data-label="Phase"]')).to_have_text("Ready", timeout=10_000)
    assert await page.evaluate("window.__marker") == 1
    assert len(listings) == 1, "the row came through the watch, not another listing"

    # Delete asks first, inline; No puts things back as they were.
    delete = row.get_by_role("button", name="Delete from-the-api")
    await delete.click()
    await expect(row.get_by_text("Delete from-the-api?")).to_be_visible()
    await expect(row.get_by_role("button", name="No")).to_be_focused()
    await row.get_by_role("button", name="No").click()
    await expect(delete).to_be_focused()
    assert sent == []
    await delete.click()
    await row.get_by_role("button", name="Yes, delete").click()
    await expect(row).to_have_count(0, timeout=10_000)
    await expect(page.get_by_role("heading", name="Disk snapshots in demo")).to_be_focused()
    await expect(page.get_by_text("No disk snapshots in this namespace yet.")).to_be_visible()
    assert [r.method for r in sent] == ["DELETE"] and sent[0].headers.get("idempotency-key")
    operations = await api_call(gateway_server, "GET", "/v1/operations?type=DELETE_DISK_SNAPSHOT")
    assert [op["target"]["name"] for op in operations["items"]] == ["from-the-api"]


async def test_the_page_at_a_narrow_width(page: Page, gateway_server: GatewayServer) -> None:
    for name, disk in (("narrow-one", "spare-disk"), ("narrow-two-with-a-rather-long-name", "linux-vm-root")):
        await api_call(gateway_server, "POST", "/v1/namespaces/demo/disk-snapshots",
                   {"name": name, "virtualDiskName": disk, "requiredConsistency": False})
    await page.set_viewport_size({"width": 640, "height": 900})
    await sign_in(page, gateway_server, start="#/snapshots")
    await expect(page.locator('tr[data-key="narrow-one"] td[data-label="Phase"]')).to_have_text("Ready")
    await expect(page.locator('tr[data-key="narrow-two-with-a-rather-long-name"] td[data-label="Phase"]')) \
        .to_have_text("Ready")
    assert await page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    await screenshot(page, "snapshots-narrow")


async def test_methods_not_served_show_as_not_available(page: Page, gateway_server: GatewayServer) -> None:
    missing = {"CreateDiskSnapshot", "DeleteDiskSnapshot", "WatchDiskSnapshots"}
    methods = {m.name: m.name not in missing for m in METHODS}
    await page.route("**/console/capabilities.json",
                     lambda route: route.fulfill(json={"methods": methods}))
    await api_call(gateway_server, "POST", "/v1/namespaces/demo/disk-snapshots",
               {"name": "listed", "virtualDiskName": "spare-disk"})
    await sign_in(page, gateway_server, start="#/snapshots")
    await expect(page.locator('tr[data-key="listed"]')).to_be_visible()
    for what in ("Creating disk snapshots", "Deleting disk snapshots", "Live updates"):
        await expect(page.get_by_text(f"{what}: not yet available on this gateway.")).to_be_visible()
    await expect(page.get_by_role("button", name="Create", exact=True)).to_have_count(0)
    await expect(page.get_by_role("button", name=re.compile("^Delete"))).to_have_count(0)


async def test_the_list_recovers_from_an_overflow_and_a_dropped_stream(
        page: Page, gateway_server: GatewayServer) -> None:
    """The first watch ends with WATCH_OVERFLOW (list and watch again at once), the second
    fails outright (list and watch again after a pause); the third is the real one."""
    overflow = {"type": "about:blank", "title": "Aborted", "status": 409, "detail": "the watch fell behind",
                "code": "ABORTED", "reason": "WATCH_OVERFLOW", "metadata": {"resync": "RESYNC_REQUIRED"},
                "requestId": "r1"}
    watches: list[str] = []
    third = asyncio.Event()

    async def watch(route: Any) -> None:
        watches.append(route.request.url)
        if len(watches) == 1:
            await route.fulfill(status=200, content_type="text/event-stream",
                                body=f"event: error\ndata: {json.dumps(overflow)}\n\n")
        elif len(watches) == 2:
            await route.abort()
        else:
            third.set()
            await route.continue_()

    listings: list[str] = []
    page.on("request", lambda r: listings.append(r.url)
            if r.method == "GET" and r.url.split("?")[0].endswith("/disk-snapshots") else None)
    await page.route(re.compile(r"/disk-snapshots:watch"), watch)
    await api_call(gateway_server, "POST", "/v1/namespaces/demo/disk-snapshots",
               {"name": "before", "virtualDiskName": "spare-disk"})
    await sign_in(page, gateway_server, start="#/snapshots")
    await expect(page.locator('tr[data-key="before"]')).to_be_visible()
    # The real watch delivers the current objects first: "before" Ready shows it is open.
    await expect(page.locator('tr[data-key="before"] td[data-label="Phase"]')).to_have_text("Ready")
    await asyncio.wait_for(third.wait(), 10)
    await expect(page.locator(".live-status")).to_have_text(re.compile("Live"))
    assert len(listings) == 3, "each new watch follows a new listing"
    await api_call(gateway_server, "POST", "/v1/namespaces/demo/disk-snapshots",
               {"name": "after", "virtualDiskName": "spare-disk"})
    await expect(page.locator('tr[data-key="after"] td[data-label="Phase"]')).to_have_text("Ready")
    assert len(listings) == 3
