"""Server-Sent Events over a real socket: framing, resume, keepalive, errors, shutdown."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator

import aiohttp
import pytest
from multidict import CIMultiDict

from service.api.rest import SSE_STREAMS, close_streams
from service.core.domain import OperationState
from service.observability.metrics import GatewayMetrics
from service.observability.telemetry import Telemetry
from tests.gateway.test_rest_adapter import AUTH, Served, create, serve_fake
from tests.support.openapi import api_spec, parse_sse
from tests.support.waiting import wait_for

SSE = {**AUTH, "Accept": "text/event-stream"}


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve_fake() as running:
        yield running


async def new_operation(served: Served) -> str:
    return str((await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})).json()["id"])


async def read_until(resp: aiohttp.ClientResponse, marker: bytes, limit_seconds: float = 5.0) -> bytes:
    """Read a live stream until ``marker`` shows up (or fail after the limit)."""
    body = b""
    async with asyncio.timeout(limit_seconds):
        while marker not in body:
            chunk = await resp.content.readany()
            assert chunk, f"stream ended before {marker!r}: {body!r}"
            body += chunk
    return body


def validate_stream(served: Served, path: str, resp: aiohttp.ClientResponse, body: bytes) -> None:
    api_spec().validate_exchange("GET", served.url + path, SSE, resp.status, CIMultiDict(resp.headers), body)
    assert resp.headers["Content-Type"] == "text/event-stream"
    assert resp.headers["X-Request-Id"]


async def test_operation_watch_streams_every_version_until_done(served: Served) -> None:
    op_id = await new_operation(served)

    async def progress() -> None:
        await asyncio.sleep(0.05)
        await served.fake.advance(op_id, OperationState.RUNNING, "InProgress")
        await served.fake.advance(op_id, OperationState.SUCCEEDED, "Ready")

    mover = asyncio.create_task(progress())
    watched = await served.call("GET", f"/v1/operations/{op_id}:watch", headers=SSE)
    await mover
    assert watched.status == 200 and watched.headers["Content-Type"] == "text/event-stream"
    events, _ = parse_sse(watched.body.decode())
    assert [(e.event, e.id, e.data["state"]) for e in events] == [
        ("operation", "1", "PENDING"), ("operation", "2", "RUNNING"), ("operation", "3", "SUCCEEDED")]
    for event in events:
        api_spec().validate_schema("Operation", event.data)
    assert events[-1].data["done"] is True
    assert served.fake.watches_closed == 1


async def test_last_event_id_resumes_after_that_version(served: Served) -> None:
    op_id = await new_operation(served)
    await served.fake.advance(op_id, OperationState.RUNNING, "InProgress")
    await served.fake.advance(op_id, OperationState.SUCCEEDED, "Ready")
    resumed = await served.call("GET", f"/v1/operations/{op_id}:watch", headers={**SSE, "Last-Event-ID": "2"})
    events, _ = parse_sse(resumed.body.decode())
    assert [e.id for e in events] == ["3"]
    assert served.fake.seen_after_versions == [2]


async def test_bad_last_event_id_and_unknown_operation_are_problems(served: Served) -> None:
    op_id = await new_operation(served)
    bad = await served.call("GET", f"/v1/operations/{op_id}:watch", headers={**SSE, "Last-Event-ID": "three"})
    assert bad.status == 400 and bad.json()["fieldViolations"][0]["field"] == "Last-Event-ID"
    missing = await served.call("GET", f"/v1/operations/{uuid.uuid4()}:watch", headers=SSE)
    assert missing.status == 404 and missing.json()["reason"] == "RESOURCE_NOT_FOUND"


async def test_idle_stream_sends_keepalives_and_notices_the_client_leaving() -> None:
    metrics = GatewayMetrics()
    async with serve_fake(Telemetry(metrics)) as served:
        op_id = await new_operation(served)
        path = f"/v1/operations/{op_id}:watch"
        # Resuming at the current version: nothing to send yet, so headers go out after the grace period.
        async with served.session.get(served.url + path, headers={**SSE, "Last-Event-ID": "1"}) as resp:
            body = await read_until(resp, b": keepalive\n\n: keepalive\n\n")
            await served.fake.advance(op_id, OperationState.RUNNING, "InProgress")
            body += await read_until(resp, b"id: 2\n")
            validate_stream(served, path, resp, body)
            (stream,) = served.app[SSE_STREAMS]
        # The client hung up: the keepalives find it out and the server lets the watch go;
        # the call ends CANCELLED (the caller's doing), as when an event's write finds it out.
        ended = {"method": "WatchOperation", "code": "CANCELLED", "protocol": "rest"}
        async with asyncio.timeout(5):
            await stream.finished.wait()
        await wait_for(lambda: metrics.registry.get_sample_value("dvp_gateway_requests_total", ended) == 1,
                       "the watch did not end CANCELLED")
        assert served.fake.watches_closed == 1 and not served.app[SSE_STREAMS]


async def test_failure_after_the_stream_started_is_an_error_event(served: Served) -> None:
    op_id = await new_operation(served)
    served.fake.break_watch_after_first = True
    watched = await served.call("GET", f"/v1/operations/{op_id}:watch", headers=SSE)
    events, _ = parse_sse(watched.body.decode())
    assert [e.event for e in events] == ["operation", "error"]
    api_spec().validate_schema("Problem", events[1].data)
    assert events[1].data["code"] == "UNAVAILABLE" and events[1].data["status"] == 503


async def test_disk_snapshot_watch_sends_current_objects_and_ends_on_shutdown(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    await create(served, {"name": "s2", "virtualDiskName": "linux-vm-root"})
    path = "/v1/namespaces/demo/disk-snapshots:watch"
    async with served.session.get(served.url + path, headers=SSE) as resp:
        body = await read_until(resp, b'"name":"s2"')
        assert len(served.app[SSE_STREAMS]) == 1
        await close_streams(served.app)
        body += await resp.content.read()  # the server ended the stream: EOF, not a hang
        validate_stream(served, path, resp, body)
    events, _ = parse_sse(body.decode())
    assert [(e.event, e.data["snapshot"]["name"]) for e in events] == [("ADDED", "s1"), ("ADDED", "s2")]
    assert [e.id for e in events] == [served.fake.snapshots[("demo", n)].resource_version for n in ("s1", "s2")]
    for event in events:
        api_spec().validate_schema("DiskSnapshotEvent", event.data)
    assert served.fake.watches_closed == 1 and not served.app[SSE_STREAMS]


async def test_disk_snapshot_watch_by_name_and_denied_namespace(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    await create(served, {"name": "s2", "virtualDiskName": "linux-vm-root"})
    path = "/v1/namespaces/demo/disk-snapshots:watch?name=s2"
    async with served.session.get(served.url + path, headers=SSE) as resp:
        body = await read_until(resp, b"\n\n")
        validate_stream(served, path, resp, body)
    events, _ = parse_sse(body.decode())
    assert [e.data["snapshot"]["name"] for e in events] == ["s2"]
    denied = await served.call("GET", "/v1/namespaces/forbidden/disk-snapshots:watch", headers=SSE)
    assert denied.status == 403 and denied.json()["code"] == "PERMISSION_DENIED"


async def test_application_shutdown_ends_open_streams(served: Served) -> None:
    op_id = await new_operation(served)
    async with served.session.get(served.url + f"/v1/operations/{op_id}:watch", headers=SSE) as resp:
        await read_until(resp, b"id: 1\n")
        await served.app.shutdown()  # what AppRunner.cleanup() runs before draining connections
        async with asyncio.timeout(5):
            rest = await resp.content.read()
    assert b"event: error" not in rest
    assert not served.app[SSE_STREAMS] and served.fake.watches_closed == 1


async def create_vm_snapshot(served: Served, name: str) -> None:
    created = await served.call("POST", "/v1/namespaces/demo/vm-snapshots",
                                json_body={"name": name, "virtualMachineName": "linux-vm"}, headers=AUTH)
    assert created.status == 202


async def test_vm_snapshot_watch_sends_current_objects_and_ends_on_shutdown(served: Served) -> None:
    await create_vm_snapshot(served, "vms-1")
    await create_vm_snapshot(served, "vms-2")
    path = "/v1/namespaces/demo/vm-snapshots:watch"
    async with served.session.get(served.url + path, headers=SSE) as resp:
        body = await read_until(resp, b'"name":"vms-2"')
        assert len(served.app[SSE_STREAMS]) == 1
        await close_streams(served.app)
        body += await resp.content.read()
        validate_stream(served, path, resp, body)
    events, _ = parse_sse(body.decode())
    assert [(e.event, e.data["snapshot"]["name"]) for e in events] == [("ADDED", "vms-1"), ("ADDED", "vms-2")]
    assert [e.id for e in events] == [served.fake.vm_snapshots[("demo", n)].resource_version
                                      for n in ("vms-1", "vms-2")]
    for event in events:
        api_spec().validate_schema("VirtualMachineSnapshotEvent", event.data)
    assert served.fake.authenticated[-1][0] == "WatchVirtualMachineSnapshots"
    assert served.fake.watches_closed == 1 and not served.app[SSE_STREAMS]


async def test_vm_snapshot_watch_by_name_and_denied_namespace(served: Served) -> None:
    await create_vm_snapshot(served, "vms-1")
    await create_vm_snapshot(served, "vms-2")
    path = "/v1/namespaces/demo/vm-snapshots:watch?name=vms-2"
    async with served.session.get(served.url + path, headers=SSE) as resp:
        body = await read_until(resp, b"\n\n")
        validate_stream(served, path, resp, body)
    events, _ = parse_sse(body.decode())
    assert [e.data["snapshot"]["name"] for e in events] == ["vms-2"]
    assert events[0].data["snapshot"]["keepIPAddress"] == "Always"
    denied = await served.call("GET", "/v1/namespaces/forbidden/vm-snapshots:watch", headers=SSE)
    assert denied.status == 403 and denied.json()["code"] == "PERMISSION_DENIED"
    unknown = await served.call("GET", "/v1/namespaces/demo/vm-snapshots:watch?label=x", headers=SSE)
    assert unknown.status == 400 and unknown.json()["fieldViolations"][0]["field"] == "label"
