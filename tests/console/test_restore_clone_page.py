"""The "Restore and clone" page in a real browser: the dry run's answer comes first and only
then enables the real call; a clone shows its name map and creates the copy; a bad input
shows its error next to its field."""

from __future__ import annotations

import re

import pytest
from playwright.async_api import Locator, Page, expect

from tests.console.conftest import screenshot, sign_in
from tests.support.doors import open_door
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


async def vm_snapshot_ready(server: GatewayServer, name: str, vm: str) -> None:
    """A VM snapshot made through the API and followed until it is Ready (its operation SUCCEEDED)."""
    async with open_door("rest", server) as door:
        accepted = await door.create_vm_snapshot(name, vm)
        done = await door.wait_done(accepted["id"])
        assert done["state"] == "SUCCEEDED", done
        assert (await door.get_vm_snapshot(name))["phase"] == "Ready"


def error_of(form: Locator, name: str) -> Locator:
    return form.locator(f'[data-field="{name}"] .field-error').first


async def test_restore_vm_shows_the_dry_run_before_restore(page: Page, gateway_server: GatewayServer) -> None:
    await vm_snapshot_ready(gateway_server, "console-linux-snap", "linux-vm")
    await sign_in(page, gateway_server, start="#/restore/vm")
    form = page.locator("form#restore-vm")
    restore = form.get_by_role("button", name="Restore", exact=True)
    await form.get_by_label("VM snapshot").fill("console-linux-snap")
    await form.get_by_label("Virtual machine").fill("linux-vm")
    await expect(restore).to_be_disabled()

    await form.get_by_role("button", name="Check (dry run)").click()
    answer = form.locator(".check-out")
    await expect(answer.locator(".verdict")).to_contain_text("No conflicts found")
    rows = answer.locator("tbody tr")
    await expect(rows.filter(has_text="linux-vm-root")).to_contain_text("Completed")
    await expect(rows.filter(has_text="VirtualMachine").first).to_contain_text("linux-vm")
    await expect(answer).to_contain_text("DryRun: nothing is changed")   # the warnings
    await expect(restore).to_be_enabled()
    await screenshot(page, "restore-vm-dry-run")

    # Any change of the inputs turns the real call off until a dry run of them (or the same inputs again).
    vm = form.get_by_label("Virtual machine")
    await vm.fill("stopped-vm")
    await expect(restore).to_be_disabled()
    await expect(form).to_contain_text("The inputs changed since the dry run")
    await vm.fill("linux-vm")
    await expect(restore).to_be_enabled()

    await form.get_by_label("BestEffort").check()
    await restore.click()
    applied = form.locator(".apply-out")
    await expect(applied.locator("h3")).to_have_text("Restore (BestEffort)")
    await expect(applied.locator(".verdict .badge")).to_have_text("SUCCEEDED", timeout=15_000)
    link = applied.get_by_role("link", name=re.compile(r"^[0-9a-f-]{36}$"))
    assert (await link.get_attribute("href") or "").startswith("#/operations/")
    await expect(restore).to_be_disabled()   # done once: another restore needs another check


async def test_clone_shows_the_name_map_then_clones(page: Page, gateway_server: GatewayServer) -> None:
    await sign_in(page, gateway_server, start="#/restore/clone")
    form = page.locator("form#clone-vm")
    clone = form.get_by_role("button", name="Clone", exact=True)
    await form.get_by_label("Virtual machine").fill("stopped-vm")
    await form.get_by_label("Name prefix").fill("copy-")
    await form.get_by_role("button", name="Check (dry run)").click()

    answer = form.locator(".check-out")
    await expect(answer.locator("caption")).to_have_text("Name map: what each object is made from")
    vm_row = answer.locator("tbody tr").filter(has_text="copy-stopped-vm").filter(has_text="VirtualMachine").first
    await expect(vm_row.locator('td[data-label="Source name"]')).to_have_text("stopped-vm")
    await expect(vm_row.locator('td[data-label="New name"]')).to_have_text("copy-stopped-vm")
    disk_row = answer.locator("tbody tr").filter(has_text="copy-stopped-vm-root")
    await expect(disk_row.locator('td[data-label="Source name"]')).to_have_text("stopped-vm-root")
    await expect(answer.locator(".verdict")).to_contain_text("No conflicts found")
    await expect(clone).to_be_enabled()
    await screenshot(page, "clone-name-map")

    await clone.click()
    applied = form.locator(".apply-out")
    await expect(applied.locator(".verdict .badge")).to_have_text("SUCCEEDED", timeout=15_000)
    await expect(applied.locator('td[data-label="New name"]', has_text="copy-stopped-vm-root")).to_be_visible()
    await expect(applied.locator("tbody tr").filter(has_text="copy-stopped-vm-root")).to_contain_text("Completed")

    # The names are taken now: a new dry run of the same clone reports the conflicts, and the button stays off.
    await form.get_by_role("button", name="Check (dry run)").click()
    await expect(answer.locator(".conflicts")).to_contain_text("copy-stopped-vm")
    await expect(clone).to_be_disabled()

    # A narrow screen (or 200% zoom): the tables become cards of label: value lines.
    await page.set_viewport_size({"width": 420, "height": 900})
    await expect(answer.locator("thead")).not_to_be_in_viewport()
    await screenshot(page, "clone-narrow")


async def test_bad_inputs_show_next_to_their_field(page: Page, gateway_server: GatewayServer) -> None:
    async with open_door("rest", gateway_server) as door:
        accepted = await door.create_disk_snapshot("console-disk-snap", "spare-disk")
        assert (await door.wait_done(accepted["id"]))["state"] == "SUCCEEDED"
    await sign_in(page, gateway_server, start="#/restore/clone")
    form = page.locator("form#clone-vm")
    check = form.get_by_role("button", name="Check (dry run)")
    vm = form.get_by_label("Virtual machine")
    prefix = form.get_by_label("Name prefix")

    # Nothing filled: the path's field is required before any call.
    await check.click()
    await expect(error_of(form, "virtualMachineName")).to_have_text("must not be empty")
    await expect(vm).to_be_focused()

    # A prefix that makes invalid names: the API names the customization, shown at its group.
    await vm.fill("stopped-vm")
    await prefix.fill("Bad_")
    await check.click()
    await expect(error_of(form, "customization")).to_contain_text("'Bad_stopped-vm'")
    await expect(prefix).to_have_attribute("aria-invalid", "true")
    await expect(prefix).to_be_focused()
    await expect(form.locator(".problem")).to_contain_text("Bad Request")
    await expect(form.get_by_role("button", name="Clone", exact=True)).to_be_disabled()

    # An invalid VM name (from the URL path), then a rename to an invalid name.
    await prefix.fill("x-")
    await vm.fill("Bad_vm")
    await check.click()
    await expect(error_of(form, "virtualMachineName")).to_contain_text("RFC 1123")
    await expect(error_of(form, "customization")).to_be_hidden()
    await expect(vm).to_be_focused()
    await vm.fill("stopped-vm")
    await form.get_by_role("button", name="Add a rename").click()
    await form.get_by_label("Current name").fill("stopped-vm")
    await form.get_by_label("New name").fill("Not_ok")
    await check.click()
    await expect(error_of(form, "nameReplacements[0].to")).to_contain_text("would be named 'x-Not_ok'")
    await expect(form.get_by_label("New name")).to_be_focused()

    # A disk restore: no dry run, but the defaults are spelled out; a bad new name is refused at its field.
    await page.get_by_role("link", name="Restore a disk").click()
    disk_form = page.locator("form#restore-disk")
    await disk_form.get_by_label("Disk snapshot").fill("console-disk-snap")
    plan = disk_form.locator(".plan")
    await expect(plan).to_contain_text("of spare-disk")   # the snapshot's source disk, from the list
    await expect(plan).to_contain_text("the same as the source disk spare-disk (the default)")
    name = disk_form.get_by_label("New disk name")
    await name.fill("Bad_disk")
    await disk_form.get_by_role("button", name="Restore").click()
    await expect(error_of(disk_form, "name")).to_contain_text("RFC 1123")
    await expect(name).to_be_focused()
    await name.fill("console-restored-disk")
    await disk_form.get_by_role("button", name="Restore").click()
    await expect(error_of(disk_form, "name")).to_be_hidden()
    await expect(disk_form.locator(".apply-out .verdict .badge")).to_have_text("SUCCEEDED", timeout=15_000)
