"""End to end over REST: the whole gateway (embedded cluster over HTTP, a real database),
every response checked against openapi.yaml."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest

from tests.support.gateway import GatewayServer
from tests.support.openapi import Exchange, api_spec, call, parse_sse

DISK = "linux-vm-root"
SNAPSHOT = "linux-vm-root-snapshot"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


class Rest:
    def __init__(self, server: GatewayServer, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def call(self, method: str, path: str, *, user: str | None = "dev", json_body: Any = None,
                   headers: dict[str, str] | None = None) -> Exchange:
        sent = {**(self.server.auth(user) if user else {}), **(headers or {})}
        return await call(self.session, method, self.server.rest_url + path, json_body=json_body, headers=sent)

    async def create(self, body: dict[str, Any], key: str = "") -> Exchange:
        return await self.call("POST", f"/v1/namespaces/{self.server.namespace}/disk-snapshots", json_body=body,
                               headers={"Idempotency-Key": key} if key else None)

    async def wait_done(self, operation_id: str) -> list[dict[str, Any]]:
        """Follow the operation's SSE stream until it ends (the operation is done)."""
        async with asyncio.timeout(30):
            watched = await self.call("GET", f"/v1/operations/{operation_id}:watch",
                                      headers={"Accept": "text/event-stream"})
        assert watched.status == 200
        events, _ = parse_sse(watched.body.decode())
        for event in events:
            assert event.event == "operation" and event.id == str(event.data["version"])
            api_spec().validate_schema("Operation", event.data)
        return [e.data for e in events]


@pytest.fixture
def rest(gateway_server: GatewayServer, session: aiohttp.ClientSession) -> Rest:
    return Rest(gateway_server, session)


async def test_create_follow_and_read_a_disk_snapshot(rest: Rest) -> None:
    accepted = await rest.create({"name": SNAPSHOT, "virtualDiskName": DISK})
    assert accepted.status == 202
    op = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["type"] == "CREATE_DISK_SNAPSHOT" and op["target"]["name"] == DISK and op["actor"] == "dev"

    followed = await rest.call("GET", accepted.headers["Location"])
    assert followed.status == 200 and followed.json()["id"] == op["id"]

    versions = await rest.wait_done(op["id"])
    assert versions[-1]["state"] == "SUCCEEDED" and versions[-1]["done"] is True
    assert [v["version"] for v in versions] == sorted({v["version"] for v in versions})
    assert versions[-1]["resource"]["kind"] == "VirtualDiskSnapshot"

    snapshot = (await rest.call("GET", f"/v1/namespaces/demo/disk-snapshots/{SNAPSHOT}")).json()
    assert snapshot["phase"] == "Ready" and snapshot["virtualDiskName"] == DISK
    assert snapshot["requiredConsistency"] is True and snapshot["operationId"] == op["id"]

    timeline = (await rest.call("GET", f"/v1/operations/{op['id']}/timeline")).json()["items"]
    assert timeline[0]["state"] == "PENDING" and timeline[-1]["state"] == "SUCCEEDED"

    # A resumed watch of a finished operation sends only what came after the given version.
    before_last = str(versions[-1]["version"] - 1)
    resumed = await rest.call("GET", f"/v1/operations/{op['id']}:watch",
                              headers={"Accept": "text/event-stream", "Last-Event-ID": before_last})
    events, _ = parse_sse(resumed.body.decode())
    assert [e.data["version"] for e in events] == [versions[-1]["version"]]

    deleted = await rest.call("DELETE", f"/v1/namespaces/demo/disk-snapshots/{SNAPSHOT}")
    assert deleted.status == 202 and deleted.json()["type"] == "DELETE_DISK_SNAPSHOT"
    assert (await rest.wait_done(deleted.json()["id"]))[-1]["state"] == "SUCCEEDED"


async def test_list_pages_idempotency_and_errors(rest: Rest) -> None:
    body = {"generateName": "paged-", "virtualDiskName": DISK}
    ids = [(await rest.create(body)).json()["id"] for _ in range(3)]
    assert len(set(ids)) == 3

    names: list[str] = []
    token = ""
    for _ in range(10):
        page = (await rest.call("GET", f"/v1/namespaces/demo/disk-snapshots?pageSize=1&pageToken={token}")).json()
        assert len(page["items"]) <= 1
        names += [s["name"] for s in page["items"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert len([n for n in names if n.startswith("paged-")]) == 3 and len(names) == len(set(names))

    first = await rest.create({"name": "keyed", "virtualDiskName": DISK}, key="rest-key-1")
    replay = await rest.create({"name": "keyed", "virtualDiskName": DISK}, key="rest-key-1")
    assert replay.status == 202 and replay.json()["id"] == first.json()["id"]
    conflict = await rest.create({"name": "keyed", "virtualDiskName": DISK, "requiredConsistency": False},
                                 key="rest-key-1")
    assert conflict.status == 409 and conflict.json()["reason"] == "IDEMPOTENCY_KEY_REUSED"

    bad_name = await rest.create({"name": "Not_A_Name", "virtualDiskName": DISK})
    assert bad_name.status == 400
    assert "name" in {v["field"] for v in bad_name.json()["fieldViolations"]}
    unknown_field = await rest.create({"name": "x", "virtualDiskName": DISK, "virtual_disk_name": DISK})
    assert unknown_field.status == 400
    assert {v["field"] for v in unknown_field.json()["fieldViolations"]} == {"virtual_disk_name"}

    missing = await rest.create({"name": "orphan", "virtualDiskName": "no-such-disk"})
    assert missing.status == 404 and missing.json()["code"] == "NOT_FOUND"
    assert (await rest.call("GET", "/v1/namespaces/demo/disk-snapshots/never-made")).status == 404

    anonymous = await rest.call("GET", "/v1/namespaces/demo/disk-snapshots", user=None)
    assert anonymous.status == 401 and anonymous.json()["code"] == "UNAUTHENTICATED"
    stranger = await rest.call("GET", "/v1/namespaces/demo/disk-snapshots", user="stranger")
    assert stranger.status == 403 and stranger.json()["code"] == "PERMISSION_DENIED"

    in_use = await rest.call("GET", f"/v1/namespaces/demo/disks/{DISK}:export")
    assert in_use.status == 412 and in_use.json()["reason"] == "DISK_IN_USE"


async def test_watch_disk_snapshots_starts_with_current_objects(rest: Rest) -> None:
    op = (await rest.create({"name": SNAPSHOT, "virtualDiskName": DISK})).json()
    await rest.wait_done(op["id"])
    path = "/v1/namespaces/demo/disk-snapshots:watch"
    headers = {**rest.server.auth(), "Accept": "text/event-stream"}
    async with rest.session.get(rest.server.rest_url + path, headers=headers) as resp:
        assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
        body = b""
        async with asyncio.timeout(10):
            while SNAPSHOT.encode() not in body:
                chunk = await resp.content.readany()
                assert chunk
                body += chunk
    events, _ = parse_sse(body.decode().rsplit("\n\n", 1)[0] + "\n\n")
    added = [e for e in events if e.data["snapshot"]["name"] == SNAPSHOT]
    assert added[0].event == "ADDED" and added[0].id == added[0].data["snapshot"]["resourceVersion"]
    api_spec().validate_schema("DiskSnapshotEvent", added[0].data)


async def test_audit_listing_exports_and_verification(rest: Rest) -> None:
    op = (await rest.create({"name": SNAPSHOT, "virtualDiskName": DISK})).json()
    await rest.call("GET", "/v1/operations", user=None)  # a denied call is audited too

    listed = (await rest.call("GET", "/v1/audit/events?action=CreateDiskSnapshot&pageSize=10")).json()
    created = [e for e in listed["items"] if e["operationId"] == op["id"]]
    assert created and created[0]["outcome"] == "SUCCESS" and created[0]["actor"] == "dev"
    denied = (await rest.call("GET", "/v1/audit/events?outcome=DENIED")).json()["items"]
    assert any(e["action"] == "ListOperations" for e in denied)

    everything = (await rest.call("GET", "/v1/audit/events?pageSize=500")).json()["items"]
    lines = await rest.call("GET", "/v1/audit/events", headers={"Accept": "application/x-ndjson"})
    exported = [json.loads(line) for line in lines.body.decode().splitlines() if line]
    for event in exported:
        api_spec().validate_schema("AuditEvent", event)
    # The export holds at least what the page held (the export itself may have been audited after).
    assert [e["id"] for e in exported][:len(everything)] == [e["id"] for e in everything]

    table = await rest.call("GET", "/v1/audit/events?outcome=DENIED", headers={"Accept": "text/csv"})
    rows = list(csv.DictReader(io.StringIO(table.body.decode())))
    assert rows and all(row["outcome"] == "DENIED" for row in rows)

    verified = await rest.call("POST", "/v1/audit:verify")
    assert verified.status == 200 and verified.json()["ok"] is True and verified.json()["checked"] >= len(exported)


async def test_health_and_readiness(rest: Rest) -> None:
    assert (await rest.call("GET", "/healthz", user=None)).status == 200
    ready = await rest.call("GET", "/readyz", user=None)
    assert ready.status == 200 and all(ready.json()["checks"].values())
