"""dvpctl (a real process) against a real gateway: snapshots, formats, --wait, watches."""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
import pytest

from tests.ctl.support import Cli, base_env, interrupt, read_until, table, write_config
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)


def cli_for(server: GatewayServer, directory: Path, user: str = "dev") -> Cli:
    directory.mkdir(parents=True, exist_ok=True)
    config = write_config(directory, server.rest_url, server.tokens[user])
    return Cli(directory, base_env(directory, DVPCTL_CONFIG=str(config)))


async def api_get(server: GatewayServer, path: str) -> object:
    async with aiohttp.ClientSession(headers=server.auth()) as session, \
            session.get(server.rest_url + path) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def test_disk_snapshot_lifecycle_in_every_format(gateway_server: GatewayServer, tmp_path: Path) -> None:
    cli = cli_for(gateway_server, tmp_path)

    # -o id: just the operation id, for OP=$(...) in a shell.
    created = await cli("create", "disk-snapshot", "s1", "--disk", "linux-vm-root", "-o", "id")
    assert created.code == 0, created
    op_id = created.out.strip()
    assert len(op_id) == 36 and "\n" not in op_id, created

    waited = await cli("wait", "operation", op_id, "-o", "json")
    assert waited.code == 0, waited
    assert waited.json()["state"] == "SUCCEEDED" and waited.json()["id"] == op_id

    # The guide's columns, and the row.
    listed = await cli("get", "vdsnapshot")
    assert listed.code == 0, listed
    assert listed.out.splitlines()[0].split() == ["NAME", "PHASE", "CONSISTENT", "AGE"]
    [row] = table(listed.out)
    assert (row["NAME"], row["PHASE"], row["CONSISTENT"]) == ("s1", "Ready", "true")
    assert row["AGE"][-1] in "smhd" and row["AGE"][:-1].isdigit(), row

    wide = await cli("get", "disk-snapshots", "-o", "wide")
    [wide_row] = table(wide.out)
    assert wide_row["DISK"] == "linux-vm-root" and wide_row["OPERATION"] == op_id

    # JSON and YAML are the API's objects as returned; lists are {"items": [...]}.
    api_object = await api_get(gateway_server, "/v1/namespaces/demo/disk-snapshots/s1")
    one_json = await cli("get", "disk-snapshot", "s1", "-o", "json")
    assert one_json.code == 0 and one_json.json() == api_object, one_json
    one_yaml = await cli("get", "vds", "s1", "-o", "yaml")
    assert one_yaml.yaml() == api_object
    many = await cli("get", "vds", "-o", "json")
    assert many.json() == {"items": [api_object]}
    names = await cli("get", "vds", "-o", "name")
    assert names.out == "disk-snapshot/s1\n"

    # The operation, its table and its timeline.
    op_table = await cli("get", "operation", op_id)
    [op_row] = table(op_table.out)
    assert op_table.out.split()[:6] == ["ID", "TYPE", "TARGET", "STATE", "PHASE", "AGE"]
    assert (op_row["ID"], op_row["TYPE"], op_row["TARGET"], op_row["STATE"]) == (
        op_id, "CREATE_DISK_SNAPSHOT", "VirtualDisk/linux-vm-root", "SUCCEEDED")
    assert (await cli("get", "ops", "-o", "id")).out.split() == [op_id]
    timeline = await cli("timeline", "operation", op_id)
    states = [r["STATE"] for r in table(timeline.out)]
    assert states[0] == "PENDING" and states[-1] == "SUCCEEDED", timeline

    # A VM snapshot with --wait: the live status on stderr (not a terminal: a line per change).
    vm = await cli("create", "vm-snapshot", "vs1", "--vm", "linux-vm", "--keep-ip-address", "Never", "--wait")
    assert vm.code == 0, vm
    assert any("SUCCEEDED" in line for line in vm.err_lines), vm
    assert table(vm.out)[0]["STATE"] == "SUCCEEDED"
    got = await cli("get", "vmsnapshot", "vs1", "-o", "json")
    assert got.json()["keepIPAddress"] == "Never" and got.json()["phase"] == "Ready"
    vm_table = await cli("get", "vm-snapshots")
    assert [r["NAME"] for r in table(vm_table.out)] == ["vs1"]

    deleted = await cli("delete", "disk-snapshot", "s1", "--wait", "-o", "json")
    assert deleted.code == 0 and deleted.json()["type"] == "DELETE_DISK_SNAPSHOT", deleted
    remaining = await cli("get", "vds", "-o", "name")
    assert "disk-snapshot/s1" not in remaining.out.split(), remaining   # the VM snapshot's own stay
    gone = await cli("get", "vds", "s1")
    assert gone.code == 1 and gone.out == "" and len(gone.err_lines) == 1, gone
    assert gone.err.startswith("error: ") and "(404 NOT_FOUND" in gone.err, gone


async def test_wait_exits_1_when_the_operation_fails_or_times_out(gateway_server: GatewayServer,
                                                                  tmp_path: Path) -> None:
    cli = cli_for(gateway_server, tmp_path)
    # A consistent snapshot of a VM without a guest agent waits in Pending...
    waiting = asyncio.ensure_future(cli("create", "vds", "pending", "--disk", "no-agent-vm-root", "--wait"))
    timed_out = await cli("create", "vds", "other", "--disk", "no-agent-vm-root", "--wait", "--timeout", "1")
    assert timed_out.code == 1, timed_out
    assert timed_out.err_lines[-1].startswith("error: timed out after 1s waiting for operation"), timed_out
    # ... until it is deleted behind its back: the operation FAILS.
    deleted = await cli("delete", "vds", "pending", "--wait")
    assert deleted.code == 0, deleted
    failed = await waiting
    assert failed.code == 1, failed
    assert "FAILED: RESOURCE_DELETED" in failed.err_lines[-1], failed
    assert "Traceback" not in failed.err

    # A cancelled operation is exit 1 too; cancel answers with the operation.
    op_id = (await cli("get", "ops", "--state", "RUNNING", "-o", "id")).out.split()
    assert len(op_id) == 1, op_id
    wait = asyncio.ensure_future(cli("wait", "op", op_id[0]))
    cancelled = await cli("cancel", "operation", op_id[0], "-o", "json")
    assert cancelled.code == 0 and cancelled.json()["id"] == op_id[0], cancelled
    result = await wait
    assert result.code == 1 and result.err_lines[-1] == f"error: operation {op_id[0]} CANCELLED", result
    timeline = await cli("timeline", "op", op_id[0], "-o", "json")
    assert timeline.json()["items"][-1]["state"] == "CANCELLED"


async def test_watch_prints_changes_until_ctrl_c(gateway_server: GatewayServer, tmp_path: Path) -> None:
    cli = cli_for(gateway_server, tmp_path)
    watcher = await cli.start("get", "vds", "--watch")
    try:
        header = await read_until(watcher, "EVENT")
        assert header[-1].split() == ["EVENT", "NAME", "PHASE", "CONSISTENT", "AGE"]
        created = await cli("create", "vds", "watched", "--disk", "spare-disk", "--wait")
        assert created.code == 0, created
        lines = await read_until(watcher, "Ready")
        assert any(line.split()[:2] == ["ADDED", "watched"] for line in lines), lines
        assert lines[-1].split()[:3] == ["MODIFIED", "watched", "Ready"], lines
        code, err = await interrupt(watcher)
    finally:
        if watcher.returncode is None:
            watcher.kill()
            await watcher.wait()
    assert code == 130 and "Traceback" not in err and err == "", err

    # -o json: one JSON event per line; an operation's watch ends with the operation.
    op_id = created.out.split()[6]     # the ID cell of the table's row
    versions = await cli("get", "operation", op_id, "--watch", "-o", "json")
    assert versions.code == 0, versions
    docs = [__import__("json").loads(line) for line in versions.out.splitlines()]
    assert docs[-1]["id"] == op_id and docs[-1]["done"] is True
