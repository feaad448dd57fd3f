"""A disk restore whose snapshot is deleted before the disk is provisioned from it ends
FAILED (SNAPSHOT_DELETED) instead of RUNNING for ever: the platform reports a missing
snapshot as merely not ready, and the disk would wait on it indefinitely.

The race is made deterministic on the embedded cluster: the snapshot loses the
annotation its content comes from (so the disk waits on it, though it is Ready), then is
deleted straight through the cluster's API (bypassing the gateway's IN_USE guard)."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from kubernetes_asyncio.client import CustomObjectsApi

from service.cluster.kinds import VIRTUAL_DISK_SNAPSHOT
from service.embedded_cluster.controllers.resources import ANN_CONTENT_SEED
from tests.support.cluster import api_client
from tests.support.gateway import GatewayServer
from tests.support.waiting import wait_until

sqlite = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
GROUP, VERSION = VIRTUAL_DISK_SNAPSHOT.api_version.split("/")


async def _call(session: aiohttp.ClientSession, server: GatewayServer, method: str, path: str,
                body: dict[str, Any] | None = None) -> dict[str, Any]:
    async with session.request(method, f"{server.rest_url}{path}", json=body, headers=server.auth()) as response:
        assert response.status < 300, await response.text()
        document: dict[str, Any] = await response.json()
        return document


async def _operation(session: aiohttp.ClientSession, server: GatewayServer, op_id: str) -> dict[str, Any]:
    return await _call(session, server, "GET", f"/v1/operations/{op_id}")


@sqlite
async def test_a_restore_whose_snapshot_is_deleted_mid_way_fails_instead_of_waiting(
        gateway_server: GatewayServer) -> None:
    server = gateway_server
    latest: dict[str, dict[str, Any]] = {}
    async with aiohttp.ClientSession() as session, api_client(server.cluster) as kube:
        objects = CustomObjectsApi(kube)

        async def settled(op_id: str, states: tuple[str, ...]) -> None:
            async def poll() -> bool:
                latest[op_id] = await _operation(session, server, op_id)
                return latest[op_id]["state"] in states
            await wait_until(poll, f"operation {op_id} never reached {states}: {latest.get(op_id)}")

        created = await _call(session, server, "POST", "/v1/namespaces/demo/disk-snapshots",
                              {"name": "short-lived", "virtualDiskName": "spare-disk"})
        await settled(created["id"], ("SUCCEEDED",))
        await objects.patch_namespaced_custom_object(
            GROUP, VERSION, "demo", VIRTUAL_DISK_SNAPSHOT.plural, "short-lived",
            {"metadata": {"annotations": {ANN_CONTENT_SEED: None}}}, _content_type="application/merge-patch+json")

        restore = await _call(session, server, "POST", "/v1/namespaces/demo/disks:restore",
                              {"name": "restored-late", "diskSnapshotName": "short-lived"})
        await settled(restore["id"], ("RUNNING",))
        await asyncio.sleep(1.0)  # five resyncs: the snapshot exists, only not usable, so it waits on
        waiting = await _operation(session, server, restore["id"])
        assert waiting["state"] == "RUNNING", waiting
        assert any(c["reason"] == "VirtualDiskSnapshotNotReady" for c in waiting["conditions"]), waiting

        await objects.delete_namespaced_custom_object(GROUP, VERSION, "demo", VIRTUAL_DISK_SNAPSHOT.plural,
                                                      "short-lived")
        await settled(restore["id"], ("FAILED", "SUCCEEDED", "CANCELLED"))
    failed = latest[restore["id"]]
    assert failed["state"] == "FAILED", failed
    assert failed["error"]["reason"] == "SNAPSHOT_DELETED" and failed["error"]["code"] == "FAILED_PRECONDITION"
    assert "'short-lived' was deleted before VirtualDisk 'restored-late'" in failed["error"]["message"]

