"""The REST adapter over real sockets, against a small in-memory facade.

The facade here follows the documented contract of ``service.core.gateway.Gateway``
(errors as ``ApiError``, generators that fail on their first step); every response is
validated against openapi.yaml by ``tests.support.openapi.call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from service.api.rest import StreamSettings, create_rest_app
from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT
from service.core import errors
from service.core.domain import (
    AuditEvent,
    AuditOutcome,
    AuditVerification,
    Caller,
    Condition,
    DiskSnapshot,
    DiskSnapshotEvent,
    Operation,
    OperationState,
    OperationTransition,
    OperationType,
    Page,
    RequestContext,
    ResourceRef,
    WatchEventType,
)
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
)
from tests.support.openapi import SPEC_PATH, Exchange, call

TOKEN = "secret-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)


class FakeGateway:
    """In-memory stand-in for the core facade with the same signatures and error model."""

    def __init__(self) -> None:
        self.disks = {("demo", "linux-vm-root")}
        self.snapshots: dict[tuple[str, str], DiskSnapshot] = {}
        self.operations: dict[str, list[Operation]] = {}   # every stored version, oldest first
        self.by_key: dict[str, tuple[CreateDiskSnapshotRequest, str]] = {}
        self.events: list[AuditEvent] = []
        self.unimplemented_calls: list[str] = []
        self.rejections: list[tuple[str, str]] = []
        self.authenticated: list[tuple[str, str]] = []     # (action, request_id)
        self.ready = {"database": True, "cluster": True}
        self.explode = False
        self.cluster_down = False
        self.changed = asyncio.Condition()
        self.watches_closed = 0
        self.break_watch_after_first = False
        self.seen_after_versions: list[int] = []

    # ------------------------------------------------------------ auth and audit
    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "") -> Caller:
        assert protocol == "rest"
        self.authenticated.append((action, request_id))
        if authorization != f"Bearer {TOKEN}":
            self._audit("anonymous", action, AuditOutcome.DENIED)
            raise errors.unauthenticated()
        return Caller("alice", ("admins",))

    def _audit(self, actor: str, action: str, outcome: AuditOutcome, namespace: str = "demo") -> None:
        prev = self.events[-1].hash if self.events else ""
        n = len(self.events) + 1
        self.events.append(AuditEvent(n, T0 + timedelta(seconds=n), actor, action, outcome, namespace,
                                      "disk-snapshots/x", "rest", "rid", "", "", "", {"n": n}, prev, f"h{n}"))

    # ------------------------------------------------------------ disk snapshots
    async def create_disk_snapshot(self, ctx: RequestContext, req: CreateDiskSnapshotRequest) -> Operation:
        if self.explode:
            raise RuntimeError("database password=hunter2 leaked in an internal error")
        if self.cluster_down:
            raise errors.unavailable("the cluster does not answer", retry_after_seconds=7)
        violations = []
        if req.name and not _NAME_RE.match(req.name):
            violations.append(errors.FieldViolation("name", "must be a lowercase RFC 1123 subdomain"))
        if len(req.request_id) > 128:
            violations.append(errors.FieldViolation("request_id", "must be no more than 128 characters"))
        if violations:
            raise errors.invalid_argument("invalid request", violations)
        if (req.namespace, req.virtual_disk_name) not in self.disks:
            raise errors.not_found("VirtualDisk", req.virtual_disk_name, req.namespace)
        if req.request_id in self.by_key:
            earlier, op_id = self.by_key[req.request_id]
            if earlier != req:
                raise errors.idempotency_conflict(req.request_id)
            return self.operations[op_id][-1]
        name = req.name or f"{req.generate_name or req.virtual_disk_name + '-'}abcde"
        if (req.namespace, name) in self.snapshots:
            raise errors.already_exists("VirtualDiskSnapshot", name, req.namespace)
        op = Operation(id=str(uuid.uuid4()), type=OperationType.CREATE_DISK_SNAPSHOT, namespace=req.namespace,
                       target=ResourceRef(VIRTUAL_DISK.api_version, "VirtualDisk", req.virtual_disk_name,
                                          req.namespace),
                       actor=ctx.caller.subject, request_hash="h", request_id=req.request_id or None,
                       create_time=T0, update_time=T0)
        self.operations[op.id] = [op]
        if req.request_id:
            self.by_key[req.request_id] = (req, op.id)
        self.snapshots[(req.namespace, name)] = DiskSnapshot(
            req.namespace, name, req.virtual_disk_name, req.required_consistency, uid=str(uuid.uuid4()),
            phase="Pending", labels=dict(req.labels), annotations=dict(req.annotations), operation_id=op.id,
            resource_version=str(len(self.snapshots) + 100), create_time=T0)
        return op

    async def get_disk_snapshot(self, ctx: RequestContext, namespace: str, name: str) -> DiskSnapshot:
        if (namespace, name) not in self.snapshots:
            raise errors.not_found("VirtualDiskSnapshot", name, namespace)
        return self.snapshots[(namespace, name)]

    async def list_disk_snapshots(self, ctx: RequestContext, req: ListRequest) -> Page[DiskSnapshot]:
        items = sorted((s for (ns, _), s in self.snapshots.items() if ns == req.namespace), key=lambda s: s.name)
        start = int(req.page_token or 0)
        size = req.page_size or 50
        rest = items[start:start + size]
        more = start + size < len(items)
        return Page(rest, str(start + size) if more else "")

    async def delete_disk_snapshot(self, ctx: RequestContext, req: DeleteDiskSnapshotRequest) -> Operation:
        snapshot = await self.get_disk_snapshot(ctx, req.namespace, req.name)
        op = Operation(id=str(uuid.uuid4()), type=OperationType.DELETE_DISK_SNAPSHOT, namespace=req.namespace,
                       target=ResourceRef(VIRTUAL_DISK_SNAPSHOT.api_version, "VirtualDiskSnapshot", snapshot.name,
                                          req.namespace, snapshot.uid),
                       actor=ctx.caller.subject, request_hash="h", create_time=T0, update_time=T0)
        self.operations[op.id] = [op]
        return op

    async def watch_disk_snapshots(self, ctx: RequestContext, namespace: str,
                                   name: str = "") -> AsyncIterator[DiskSnapshotEvent]:
        if namespace == "forbidden":
            raise errors.permission_denied("alice may not watch namespace 'forbidden'")
        try:
            for (ns, snapshot_name), snapshot in list(self.snapshots.items()):
                if ns == namespace and name in ("", snapshot_name):
                    yield DiskSnapshotEvent(WatchEventType.ADDED, snapshot)
            while True:
                async with self.changed:
                    await self.changed.wait()
        finally:
            self.watches_closed += 1

    # ------------------------------------------------------------ operations
    def _operation(self, operation_id: str) -> list[Operation]:
        if operation_id not in self.operations:
            raise errors.not_found("Operation", operation_id)
        return self.operations[operation_id]

    async def advance(self, operation_id: str, state: OperationState, phase: str) -> Operation:
        """Store a new version (what the reconciler does) and wake the watchers."""
        last = self.operations[operation_id][-1]
        op = replace(last, state=state, phase=phase, version=last.version + 1,
                     conditions=[Condition("VirtualDiskSnapshotReady", "True", phase, "", T0)],
                     end_time=T0 if state.terminal else None)
        async with self.changed:
            self.operations[operation_id].append(op)
            self.changed.notify_all()
        return op

    async def get_operation(self, ctx: RequestContext, operation_id: str) -> Operation:
        return self._operation(operation_id)[-1]

    async def list_operations(self, ctx: RequestContext, req: ListOperationsRequest) -> Page[Operation]:
        ops = [versions[-1] for versions in self.operations.values()]
        return Page([op for op in ops if req.state is None or op.state is req.state])

    async def get_operation_timeline(self, ctx: RequestContext, operation_id: str) -> list[OperationTransition]:
        return [OperationTransition(operation_id, i + 1, op.state, op.phase, "Changed", "", op.update_time)
                for i, op in enumerate(self._operation(operation_id))]

    async def watch_operation(self, ctx: RequestContext, operation_id: str,
                              after_version: int = 0) -> AsyncIterator[Operation]:
        versions = self._operation(operation_id)
        self.seen_after_versions.append(after_version)
        try:
            sent = after_version
            while True:
                for op in versions:
                    if op.version > sent:
                        sent = op.version
                        yield op
                        if self.break_watch_after_first:
                            raise errors.unavailable("the operation store went away")
                if versions[-1].done:
                    return
                async with self.changed:
                    if versions[-1].version <= sent:
                        await self.changed.wait()
        finally:
            self.watches_closed += 1

    # ------------------------------------------------------------ audit
    async def list_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> Page[AuditEvent]:
        matching = [e for e in self.events if req.outcome is None or e.outcome is req.outcome]
        start = int(req.page_token or 0)
        size = req.page_size or 50
        more = start + size < len(matching)
        return Page(matching[start:start + size], str(start + size) if more else "")

    async def export_audit_events(self, ctx: RequestContext, req: ListAuditEventsRequest) -> AsyncIterator[AuditEvent]:
        if req.since == "not-a-time":
            raise errors.invalid_argument("bad filter", [errors.FieldViolation("since", "must be RFC 3339")])
        for event in list(self.events):
            if req.outcome is None or event.outcome is req.outcome:
                yield event

    async def verify_audit_log(self, ctx: RequestContext) -> AuditVerification:
        return AuditVerification(ok=True, checked=len(self.events))

    # ------------------------------------------------------------ the rest
    async def unimplemented(self, ctx: RequestContext, method: str) -> errors.ApiError:
        self.unimplemented_calls.append(method)
        error = errors.unimplemented(method)
        error.audited = True
        return error

    async def record_rejection(self, ctx: RequestContext, action: str, error: errors.ApiError) -> None:
        if not error.audited:
            self.rejections.append((action, error.reason))

    async def check_ready(self) -> dict[str, bool]:
        return dict(self.ready)


class Served:
    def __init__(self, fake: FakeGateway, url: str, app: web.Application, session: aiohttp.ClientSession) -> None:
        self.fake, self.url, self.app, self.session = fake, url, app, session

    async def call(self, method: str, path: str, **kwargs: object) -> Exchange:
        return await call(self.session, method, self.url + path, **kwargs)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def serve_fake() -> AsyncIterator[Served]:
    """The adapter over the fake facade on 127.0.0.1, with fast keepalives for the SSE tests."""
    fake = FakeGateway()
    app = create_rest_app(fake, openapi_path=SPEC_PATH,
                          stream_settings=StreamSettings(keepalive_seconds=0.05, first_event_grace_seconds=0.2))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = runner.addresses[0][1]
        async with aiohttp.ClientSession() as session:
            yield Served(fake, f"http://127.0.0.1:{port}", app, session)
    finally:
        await runner.cleanup()


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    async with serve_fake() as running:
        yield running


def violations_of(exchange: Exchange) -> dict[str, str]:
    return {v["field"]: v["description"] for v in exchange.json().get("fieldViolations", [])}


async def create(served: Served, body: dict[str, Any], key: str = "") -> Exchange:
    headers = dict(AUTH)
    if key:
        headers["Idempotency-Key"] = key
    return await served.call("POST", "/v1/namespaces/demo/disk-snapshots", json_body=body, headers=headers)


# ---------------------------------------------------------------- health and documents


async def test_healthz_readyz_and_the_served_document(served: Served) -> None:
    assert (await served.call("GET", "/healthz")).status == 200
    ready = await served.call("GET", "/readyz")
    assert ready.status == 200 and ready.json()["checks"] == {"database": True, "cluster": True}
    served.fake.ready["cluster"] = False
    not_ready = await served.call("GET", "/readyz")
    assert not_ready.status == 503 and not_ready.json()["checks"]["cluster"] is False
    document = await served.call("GET", "/openapi.yaml")
    assert document.body == SPEC_PATH.read_bytes()
    assert served.fake.authenticated == []  # probes and the document need no token


# ---------------------------------------------------------------- authentication, request ids, errors


async def test_missing_token_is_401_problem_and_audited_with_the_operation_id(served: Served) -> None:
    denied = await served.call("GET", "/v1/namespaces/demo/disk-snapshots", headers={"X-Request-Id": "trace-1"})
    assert denied.status == 401
    problem = denied.json()
    assert problem["code"] == "UNAUTHENTICATED" and problem["reason"] == "UNAUTHENTICATED"
    assert problem["requestId"] == "trace-1" == denied.headers["X-Request-Id"]
    assert denied.headers["WWW-Authenticate"].startswith("Bearer")
    assert served.fake.authenticated == [("ListDiskSnapshots", "trace-1")]
    assert served.fake.events[-1].outcome is AuditOutcome.DENIED


async def test_request_id_is_generated_when_absent_or_unsafe(served: Served) -> None:
    generated = await served.call("GET", "/v1/operations", headers=AUTH)
    assert re.fullmatch(r"[0-9a-f]{32}", generated.headers["X-Request-Id"])
    unsafe = await served.call("GET", "/v1/operations", headers={**AUTH, "X-Request-Id": "a b\tc"})
    assert unsafe.headers["X-Request-Id"] != "a b\tc"


async def test_unexpected_exception_is_a_generic_500_logged_with_the_request_id(
        served: Served, caplog: pytest.LogCaptureFixture) -> None:
    served.fake.explode = True
    with caplog.at_level(logging.ERROR, logger="dvp.rest"):
        failed = await create(served, {"virtualDiskName": "linux-vm-root"})
    assert failed.status == 500
    assert "hunter2" not in failed.body.decode() and "RuntimeError" not in failed.body.decode()
    assert failed.json()["code"] == "INTERNAL"
    assert any("unhandled error" in r.getMessage() for r in caplog.records)


async def test_unavailable_carries_retry_after(served: Served) -> None:
    served.fake.cluster_down = True
    failed = await create(served, {"virtualDiskName": "linux-vm-root"})
    assert failed.status == 503 and failed.headers["Retry-After"] == "7"
    assert failed.json()["reason"] == "CLUSTER_UNAVAILABLE"


async def test_unknown_route_and_method_are_problems(served: Served) -> None:
    async with served.session.get(served.url + "/v1/nothing-here", headers=AUTH) as resp:
        assert resp.status == 404 and resp.content_type == "application/problem+json"
        assert (await resp.json(content_type=None))["reason"] == "ROUTE_NOT_FOUND"
    async with served.session.put(served.url + "/v1/operations", headers=AUTH) as resp:
        assert resp.status == 405 and resp.content_type == "application/problem+json"
        assert "GET" in resp.headers["Allow"]


# ---------------------------------------------------------------- disk snapshots


async def test_create_returns_202_location_and_the_operation(served: Served) -> None:
    accepted = await create(served, {"name": "linux-vm-root-snapshot", "virtualDiskName": "linux-vm-root",
                                     "requiredConsistency": False, "labels": {"team": "a"}})
    assert accepted.status == 202
    op = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["type"] == "CREATE_DISK_SNAPSHOT" and op["state"] == "PENDING" and op["done"] is False
    assert op["createTime"] == "2026-11-25T12:00:00.000000Z"
    snapshot = (await served.call("GET", "/v1/namespaces/demo/disk-snapshots/linux-vm-root-snapshot",
                                  headers=AUTH)).json()
    assert snapshot["requiredConsistency"] is False and snapshot["labels"] == {"team": "a"}
    assert snapshot["operationId"] == op["id"]


async def test_required_consistency_defaults_to_true(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    assert served.fake.snapshots[("demo", "s1")].required_consistency is True


async def test_idempotency_key_replay_and_conflict(served: Served) -> None:
    body = {"name": "s1", "virtualDiskName": "linux-vm-root"}
    first = await create(served, body, key="key-1")
    again = await create(served, body, key="key-1")
    assert again.status == 202 and again.json()["id"] == first.json()["id"]
    conflict = await create(served, {**body, "requiredConsistency": False}, key="key-1")
    assert conflict.status == 409 and conflict.json()["reason"] == "IDEMPOTENCY_KEY_REUSED"


async def test_core_field_names_are_reported_as_json_names(served: Served) -> None:
    bad = await create(served, {"name": "Bad_Name", "virtualDiskName": "linux-vm-root"}, key="k" * 129)
    assert bad.status == 400
    assert set(violations_of(bad)) == {"name", "Idempotency-Key"}


@pytest.mark.parametrize(("body", "field"), [
    ({"virtualDiskName": "linux-vm-root", "colour": "red"}, "colour"),
    ({"virtualDiskName": 7}, "virtualDiskName"),
    ({"name": "x"}, "virtualDiskName"),
    ({"virtualDiskName": "linux-vm-root", "requiredConsistency": "yes"}, "requiredConsistency"),
    ({"virtualDiskName": "linux-vm-root", "labels": ["a"]}, "labels"),
    ({"virtualDiskName": "linux-vm-root", "annotations": {"a": 1}}, "annotations['a']"),
])
async def test_unconvertible_bodies_are_400_naming_the_field(served: Served, body: dict[str, object],
                                                            field: str) -> None:
    bad = await create(served, body)
    assert bad.status == 400 and field in violations_of(bad)
    assert served.fake.snapshots == {}


@pytest.mark.parametrize("raw", [b"[1, 2]", b"{not json", b'{"name": "a", "name": "b"}', b"\xff\xfe",
                                 b'{"virtualDiskName": NaN}', b""])
async def test_malformed_json_is_400(served: Served, raw: bytes) -> None:
    bad = await served.call("POST", "/v1/namespaces/demo/disk-snapshots", data=raw,
                            headers={**AUTH, "Content-Type": "application/json"})
    assert bad.status == 400 and bad.json()["code"] == "INVALID_ARGUMENT"


async def test_bodies_over_one_mebibyte_are_413(served: Served) -> None:
    huge = b'{"virtualDiskName": "' + b"a" * (1024 * 1024) + b'"}'
    too_large = await served.call("POST", "/v1/namespaces/demo/disk-snapshots", data=huge,
                                  headers={**AUTH, "Content-Type": "application/json"})
    assert too_large.status == 413 and too_large.json()["reason"] == "PAYLOAD_TOO_LARGE"

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the limit holds while reading
        for _ in range(20):
            yield b" " * 65536
        yield b"{}"

    async with served.session.post(served.url + "/v1/namespaces/demo/disk-snapshots", data=chunks(),
                                   headers={**AUTH, "Content-Type": "application/json"}) as resp:
        assert resp.status == 413


async def test_other_media_types_are_415(served: Served) -> None:
    bad = await served.call("POST", "/v1/namespaces/demo/disk-snapshots", data=b"virtualDiskName=x",
                            headers={**AUTH, "Content-Type": "application/x-www-form-urlencoded"})
    assert bad.status == 415 and bad.json()["reason"] == "UNSUPPORTED_MEDIA_TYPE"


async def test_missing_disk_is_404_with_metadata(served: Served) -> None:
    missing = await create(served, {"virtualDiskName": "no-such-disk"})
    assert missing.status == 404
    assert missing.json()["metadata"] == {"kind": "VirtualDisk", "name": "no-such-disk", "namespace": "demo"}


async def test_list_pages_and_query_parameters_are_checked(served: Served) -> None:
    for i in range(5):
        await create(served, {"name": f"snap-{i}", "virtualDiskName": "linux-vm-root"})
    names: list[str] = []
    token = ""
    while True:
        page = (await served.call("GET", f"/v1/namespaces/demo/disk-snapshots?pageSize=2&pageToken={token}",
                                  headers=AUTH)).json()
        names += [s["name"] for s in page["items"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert names == [f"snap-{i}" for i in range(5)]
    for query, field in (("pageSize=abc", "pageSize"), ("pageSize=-1", "pageSize"), ("colour=red", "colour"),
                         ("pageSize=1&pageSize=2", "pageSize")):
        bad = await served.call("GET", f"/v1/namespaces/demo/disk-snapshots?{query}", headers=AUTH)
        assert bad.status == 400 and field in violations_of(bad), query


async def test_delete_returns_an_operation(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    deleted = await served.call("DELETE", "/v1/namespaces/demo/disk-snapshots/s1", headers=AUTH)
    assert deleted.status == 202 and deleted.json()["type"] == "DELETE_DISK_SNAPSHOT"
    assert deleted.headers["Location"] == f"/v1/operations/{deleted.json()['id']}"
    missing = await served.call("DELETE", "/v1/namespaces/demo/disk-snapshots/nope", headers=AUTH)
    assert missing.status == 404


# ---------------------------------------------------------------- operations and audit


async def test_operations_get_list_timeline_and_filters(served: Served) -> None:
    op_id = (await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})).json()["id"]
    await served.fake.advance(op_id, OperationState.RUNNING, "InProgress")
    got = (await served.call("GET", f"/v1/operations/{op_id}", headers=AUTH)).json()
    assert got["state"] == "RUNNING" and got["version"] == 2
    timeline = (await served.call("GET", f"/v1/operations/{op_id}/timeline", headers=AUTH)).json()
    assert [t["state"] for t in timeline["items"]] == ["PENDING", "RUNNING"]
    listed = (await served.call("GET", "/v1/operations?state=RUNNING&type=CREATE_DISK_SNAPSHOT", headers=AUTH)).json()
    assert [op["id"] for op in listed["items"]] == [op_id]
    bad = await served.call("GET", "/v1/operations?state=DONE", headers=AUTH)
    assert bad.status == 400 and "state" in violations_of(bad)
    assert (await served.call("GET", f"/v1/operations/{uuid.uuid4()}", headers=AUTH)).status == 404


async def test_audit_listing_json_lines_csv_and_verify(served: Served) -> None:
    for _ in range(3):
        await served.call("GET", "/v1/operations", headers={"Authorization": "Bearer wrong"})
    served.fake.events.append(replace(served.fake.events[0], id=4, actor="=cmd|' /C calc'!A0", hash="h4"))
    page = (await served.call("GET", "/v1/audit/events?pageSize=2&outcome=DENIED", headers=AUTH)).json()
    assert len(page["items"]) == 2 and page["nextPageToken"] and page["items"][0]["time"].endswith("Z")

    lines = await served.call("GET", "/v1/audit/events?pageSize=1",
                              headers={**AUTH, "Accept": "application/x-ndjson"})
    assert lines.headers["Content-Type"].startswith("application/x-ndjson")
    rows = [line for line in lines.body.decode().split("\n") if line]
    assert len(rows) == 4  # the whole log, paging ignored
    from tests.support.openapi import api_spec
    for row in rows:
        api_spec().validate_schema("AuditEvent", __import__("json").loads(row))

    table = await served.call("GET", "/v1/audit/events", headers={**AUTH, "Accept": "text/csv"})
    text = table.body.decode().splitlines()
    assert text[0].startswith("id,time,actor,action,outcome") and len(text) == 5
    assert "'=cmd" in text[4]  # no spreadsheet formula survives the export

    bad_filter = await served.call("GET", "/v1/audit/events?since=not-a-time",
                                   headers={**AUTH, "Accept": "application/x-ndjson"})
    assert bad_filter.status == 400 and "since" in violations_of(bad_filter)

    verified = await served.call("POST", "/v1/audit:verify", headers=AUTH)
    assert verified.json() == {"ok": True, "checked": 4, "firstBadId": None, "message": ""}


# ---------------------------------------------------------------- custom methods and later capabilities

LATER = [
    ("GET", "/v1/namespaces/demo/disk-snapshots/s1:export", "ExportDiskSnapshot"),
    ("GET", "/v1/namespaces/demo/vm-snapshots", "ListVirtualMachineSnapshots"),
    ("POST", "/v1/namespaces/demo/vm-snapshots", "CreateVirtualMachineSnapshot"),
    ("GET", "/v1/namespaces/demo/vm-snapshots:watch", "WatchVirtualMachineSnapshots"),
    ("GET", "/v1/namespaces/demo/vm-snapshots/v1", "GetVirtualMachineSnapshot"),
    ("DELETE", "/v1/namespaces/demo/vm-snapshots/v1", "DeleteVirtualMachineSnapshot"),
    ("POST", "/v1/namespaces/demo/vm-snapshots/v1:clone", "CreateVirtualMachineFromSnapshot"),
    ("POST", "/v1/namespaces/demo/disks:restore", "RestoreDisk"),
    ("GET", "/v1/namespaces/demo/disks/linux-vm-root:export", "ExportDisk"),
    ("POST", "/v1/namespaces/demo/virtual-machines/linux-vm:restore", "RestoreVirtualMachine"),
    ("POST", "/v1/namespaces/demo/virtual-machines/linux-vm:clone", "CloneVirtualMachine"),
    ("POST", f"/v1/operations/{uuid.UUID(int=1)}:cancel", "CancelOperation"),
]


@pytest.mark.parametrize(("method", "path", "operation_id"), LATER)
async def test_later_capabilities_are_routed_to_501(served: Served, method: str, path: str,
                                                   operation_id: str) -> None:
    answer = await served.call(method, path, headers=AUTH)
    assert answer.status == 501 and answer.json()["reason"] == "NOT_IMPLEMENTED_YET"
    assert served.fake.unimplemented_calls == [operation_id]
    assert served.fake.authenticated[-1][0] == operation_id


async def test_a_custom_method_is_not_taken_for_a_name(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    # "s1:export" must reach ExportDiskSnapshot, never GetDiskSnapshot with name "s1:export".
    assert (await served.call("GET", "/v1/namespaces/demo/disk-snapshots/s1:export", headers=AUTH)).status == 501
    assert (await served.call("GET", "/v1/namespaces/demo/disk-snapshots/s1", headers=AUTH)).status == 200
    unknown_verb = await served.session.get(served.url + "/v1/namespaces/demo/disk-snapshots/s1:frobnicate",
                                            headers=AUTH)
    assert unknown_verb.status == 404
    unknown_verb.release()
