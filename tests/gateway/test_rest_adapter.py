"""The REST adapter over real sockets, against a small in-memory facade.

The facade here follows the documented contract of ``service.core.gateway.Gateway``
(errors as ``ApiError``, generators that fail on their first step); every response is
validated against openapi.yaml by ``tests.support.openapi.call``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar, cast

import aiohttp
import pytest
from aiohttp import web

from service.api.rest import StreamSettings, create_rest_app
from service.api.rest.problems import rest_field_name
from service.api.rest.routes import CONTRACT_ROUTES, ROUTES
from service.cluster.kinds import (
    VIRTUAL_DISK,
    VIRTUAL_DISK_SNAPSHOT,
    VIRTUAL_MACHINE,
    VIRTUAL_MACHINE_OPERATION,
    VIRTUAL_MACHINE_SNAPSHOT,
)
from service.core import contract, errors
from service.core.contract import Method
from service.core.domain import (
    ApplyMode,
    AuditEvent,
    AuditOutcome,
    AuditVerification,
    Caller,
    Condition,
    DiskSnapshot,
    DiskSnapshotEvent,
    ExportData,
    ExportEnd,
    ExportHole,
    ExportItem,
    ExportStart,
    KeepIpAddress,
    Operation,
    OperationState,
    OperationTransition,
    OperationType,
    Page,
    RequestContext,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
    VirtualMachineSnapshotEvent,
    WatchEventType,
)
from service.core.requests import (
    CancelOperationRequest,
    CloneOptions,
    CloneVmRequest,
    CreateDiskSnapshotRequest,
    CreateVmFromSnapshotRequest,
    CreateVmSnapshotRequest,
    DeleteDiskSnapshotRequest,
    DeleteVmSnapshotRequest,
    ExportRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
    NameReplacement,
    ObjectKey,
    OperationKey,
    RestoreDiskRequest,
    RestoreVmRequest,
    VerifyAuditLogRequest,
    WatchOperationRequest,
    WatchRequest,
)
from service.observability.telemetry import Telemetry
from tests.support.openapi import SPEC_PATH, Exchange, call

TOKEN = "secret-token-value"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
T0 = datetime(2026, 11, 25, 12, 0, 0, tzinfo=UTC)

Req = TypeVar("Req")
Res = TypeVar("Res")


def _page(items: list[Any], req: ListRequest) -> Page[Any]:
    start = int(req.page_token or 0)
    size = req.page_size or 50
    more = start + size < len(items)
    return Page(items[start:start + size], str(start + size) if more else "")


class FakeGateway:
    """In-memory stand-in for the core facade (``call``/``stream`` on the contract table)
    with the same error model: every failure an ``ApiError``, streams failing on their
    first step, methods nothing answers are UNIMPLEMENTED (audited)."""

    def __init__(self) -> None:
        self.disks = {("demo", "linux-vm-root")}
        self.vms = {("demo", "linux-vm")}
        self.snapshots: dict[tuple[str, str], DiskSnapshot] = {}
        self.vm_snapshots: dict[tuple[str, str], VirtualMachineSnapshot] = {}
        self.operations: dict[str, list[Operation]] = {}   # every stored version, oldest first
        self.by_key: dict[str, tuple[CreateDiskSnapshotRequest, str]] = {}
        self.events: list[AuditEvent] = []
        self.calls: list[tuple[str, Any]] = []             # (method name, request) as the door sent them
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
        self._unary: dict[str, Callable[[RequestContext, Any], Awaitable[Any]]] = {
            contract.CREATE_DISK_SNAPSHOT.name: self.create_disk_snapshot,
            contract.GET_DISK_SNAPSHOT.name: self.get_disk_snapshot,
            contract.LIST_DISK_SNAPSHOTS.name: self.list_disk_snapshots,
            contract.DELETE_DISK_SNAPSHOT.name: self.delete_disk_snapshot,
            contract.CREATE_VM_SNAPSHOT.name: self.create_vm_snapshot,
            contract.GET_VM_SNAPSHOT.name: self.get_vm_snapshot,
            contract.LIST_VM_SNAPSHOTS.name: self.list_vm_snapshots,
            contract.DELETE_VM_SNAPSHOT.name: self.delete_vm_snapshot,
            contract.RESTORE_DISK.name: self.restore_disk,
            contract.RESTORE_VM.name: self.restore_vm,
            contract.CLONE_VM.name: self.clone_vm,
            contract.CREATE_VM_FROM_SNAPSHOT.name: self.create_vm_from_snapshot,
            contract.GET_OPERATION.name: self.get_operation,
            contract.LIST_OPERATIONS.name: self.list_operations,
            contract.GET_OPERATION_TIMELINE.name: self.get_operation_timeline,
            contract.CANCEL_OPERATION.name: self.cancel_operation,
            contract.LIST_AUDIT_EVENTS.name: self.list_audit_events,
            contract.VERIFY_AUDIT_LOG.name: self.verify_audit_log,
        }
        self._streams: dict[str, Callable[[RequestContext, Any], AsyncIterator[Any]]] = {
            contract.WATCH_DISK_SNAPSHOTS.name: self.watch_disk_snapshots,
            contract.WATCH_VM_SNAPSHOTS.name: self.watch_vm_snapshots,
            contract.WATCH_OPERATION.name: self.watch_operation,
            contract.EXPORT_AUDIT_EVENTS.name: self.export_audit_events,
            contract.EXPORT_DISK.name: self.export_disk,
            contract.EXPORT_DISK_SNAPSHOT.name: self.export_disk,
        }

    # ------------------------------------------------------------ the facade
    async def call(self, ctx: RequestContext, method: Method[Req, Res], req: Req) -> Res:
        assert contract.BY_NAME[method.name] is method
        self.calls.append((method.name, req))
        answer = self._unary.get(method.name)
        if answer is None:
            raise self._unimplemented(method)
        return cast(Res, await answer(ctx, req))

    def stream(self, ctx: RequestContext, method: Method[Req, Res], req: Req) -> AsyncIterator[Res]:
        assert contract.BY_NAME[method.name] is method and method.streaming
        self.calls.append((method.name, req))
        answer = self._streams.get(method.name)
        if answer is None:
            return self._unimplemented_stream(method)
        return cast(AsyncIterator[Res], answer(ctx, req))

    def _unimplemented(self, method: Method[Any, Any]) -> errors.ApiError:
        self.unimplemented_calls.append(method.name)
        error = errors.unimplemented(method.name)
        error.audited = True
        return error

    async def _unimplemented_stream(self, method: Method[Any, Any]) -> AsyncIterator[Any]:
        raise self._unimplemented(method)
        yield  # an async generator: fails on its first step

    def requests_of(self, method: Method[Any, Any]) -> list[Any]:
        return [req for name, req in self.calls if name == method.name]

    # ------------------------------------------------------------ auth and audit
    async def authenticate(self, authorization: str | None, *, action: str, protocol: str,
                           peer: str = "", request_id: str = "", namespace: str = "") -> Caller:
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

    def _new_operation(self, ctx: RequestContext, type_: OperationType, namespace: str, target: ResourceRef,
                       request_id: str = "", **fields: Any) -> Operation:
        op = Operation(id=str(uuid.uuid4()), type=type_, namespace=namespace, target=target,
                       actor=ctx.caller.subject, request_hash="h", request_id=request_id or None,
                       create_time=T0, update_time=T0, **fields)
        self.operations[op.id] = [op]
        return op

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
        op = self._new_operation(ctx, OperationType.CREATE_DISK_SNAPSHOT, req.namespace,
                                 ResourceRef(VIRTUAL_DISK.api_version, "VirtualDisk", req.virtual_disk_name,
                                             req.namespace), req.request_id)
        if req.request_id:
            self.by_key[req.request_id] = (req, op.id)
        self.snapshots[(req.namespace, name)] = DiskSnapshot(
            req.namespace, name, req.virtual_disk_name, req.required_consistency, uid=str(uuid.uuid4()),
            phase="Pending", labels=dict(req.labels), annotations=dict(req.annotations), operation_id=op.id,
            resource_version=str(len(self.snapshots) + 100), create_time=T0)
        return op

    async def get_disk_snapshot(self, ctx: RequestContext, key: ObjectKey) -> DiskSnapshot:
        if (key.namespace, key.name) not in self.snapshots:
            raise errors.not_found("VirtualDiskSnapshot", key.name, key.namespace)
        return self.snapshots[(key.namespace, key.name)]

    async def list_disk_snapshots(self, ctx: RequestContext, req: ListRequest) -> Page[DiskSnapshot]:
        items = sorted((s for (ns, _), s in self.snapshots.items() if ns == req.namespace), key=lambda s: s.name)
        return _page(items, req)

    async def delete_disk_snapshot(self, ctx: RequestContext, req: DeleteDiskSnapshotRequest) -> Operation:
        snapshot = await self.get_disk_snapshot(ctx, ObjectKey(req.namespace, req.name))
        return self._new_operation(ctx, OperationType.DELETE_DISK_SNAPSHOT, req.namespace,
                                   ResourceRef(VIRTUAL_DISK_SNAPSHOT.api_version, "VirtualDiskSnapshot",
                                               snapshot.name, req.namespace, snapshot.uid), req.request_id)

    async def watch_disk_snapshots(self, ctx: RequestContext, req: WatchRequest) -> AsyncIterator[DiskSnapshotEvent]:
        if req.namespace == "forbidden":
            raise errors.permission_denied("alice may not watch namespace 'forbidden'")
        try:
            for (ns, snapshot_name), snapshot in list(self.snapshots.items()):
                if ns == req.namespace and req.name in ("", snapshot_name):
                    yield DiskSnapshotEvent(WatchEventType.ADDED, snapshot)
            while True:
                async with self.changed:
                    await self.changed.wait()
        finally:
            self.watches_closed += 1

    # ------------------------------------------------------------ VM snapshots
    async def create_vm_snapshot(self, ctx: RequestContext, req: CreateVmSnapshotRequest) -> Operation:
        if req.name and not _NAME_RE.match(req.name):
            raise errors.invalid_argument("invalid request", [
                errors.FieldViolation("name", "must be a lowercase RFC 1123 subdomain")])
        if (req.namespace, req.virtual_machine_name) not in self.vms:
            raise errors.not_found("VirtualMachine", req.virtual_machine_name, req.namespace)
        name = req.name or f"{req.generate_name or req.virtual_machine_name + '-'}fghij"
        if (req.namespace, name) in self.vm_snapshots:
            raise errors.already_exists("VirtualMachineSnapshot", name, req.namespace)
        op = self._new_operation(ctx, OperationType.CREATE_VM_SNAPSHOT, req.namespace,
                                 ResourceRef(VIRTUAL_MACHINE.api_version, "VirtualMachine",
                                             req.virtual_machine_name, req.namespace), req.request_id,
                                 warnings=["images are not saved in a VM snapshot"])
        self.vm_snapshots[(req.namespace, name)] = VirtualMachineSnapshot(
            req.namespace, name, req.virtual_machine_name, req.required_consistency,
            keep_ip_address=req.keep_ip_address, uid=str(uuid.uuid4()), phase="Ready", consistent=True,
            resources=[ResourceRef(VIRTUAL_MACHINE.api_version, "VirtualMachine", req.virtual_machine_name,
                                   req.namespace, "vm-uid")],
            virtual_disk_snapshot_names=[f"{name}-root"],
            conditions=[Condition("VirtualMachineSnapshotReady", "True", "VirtualMachineSnapshotReady", "", T0)],
            labels=dict(req.labels), annotations=dict(req.annotations), operation_id=op.id,
            resource_version=str(len(self.vm_snapshots) + 200), create_time=T0)
        return op

    async def get_vm_snapshot(self, ctx: RequestContext, key: ObjectKey) -> VirtualMachineSnapshot:
        if (key.namespace, key.name) not in self.vm_snapshots:
            raise errors.not_found("VirtualMachineSnapshot", key.name, key.namespace)
        return self.vm_snapshots[(key.namespace, key.name)]

    async def list_vm_snapshots(self, ctx: RequestContext, req: ListRequest) -> Page[VirtualMachineSnapshot]:
        items = sorted((s for (ns, _), s in self.vm_snapshots.items() if ns == req.namespace), key=lambda s: s.name)
        return _page(items, req)

    async def delete_vm_snapshot(self, ctx: RequestContext, req: DeleteVmSnapshotRequest) -> Operation:
        snapshot = await self.get_vm_snapshot(ctx, ObjectKey(req.namespace, req.name))
        return self._new_operation(ctx, OperationType.DELETE_VM_SNAPSHOT, req.namespace,
                                   ResourceRef(VIRTUAL_MACHINE_SNAPSHOT.api_version, "VirtualMachineSnapshot",
                                               snapshot.name, req.namespace, snapshot.uid), req.request_id)

    async def watch_vm_snapshots(self, ctx: RequestContext,
                                 req: WatchRequest) -> AsyncIterator[VirtualMachineSnapshotEvent]:
        if req.namespace == "forbidden":
            raise errors.permission_denied("alice may not watch namespace 'forbidden'")
        try:
            for (ns, snapshot_name), snapshot in list(self.vm_snapshots.items()):
                if ns == req.namespace and req.name in ("", snapshot_name):
                    yield VirtualMachineSnapshotEvent(WatchEventType.ADDED, snapshot)
            while True:
                async with self.changed:
                    await self.changed.wait()
        finally:
            self.watches_closed += 1

    # ------------------------------------------------------------ restore
    async def restore_disk(self, ctx: RequestContext, req: RestoreDiskRequest) -> Operation:
        snapshot = await self.get_disk_snapshot(ctx, ObjectKey(req.namespace, req.disk_snapshot_name))
        return self._new_operation(ctx, OperationType.RESTORE_DISK, req.namespace,
                                   ResourceRef(VIRTUAL_DISK_SNAPSHOT.api_version, "VirtualDiskSnapshot",
                                               snapshot.name, req.namespace, snapshot.uid), req.request_id,
                                   resource=ResourceRef(VIRTUAL_DISK.api_version, "VirtualDisk", req.name,
                                                        req.namespace))

    async def restore_vm(self, ctx: RequestContext, req: RestoreVmRequest) -> Operation:
        snapshot = await self.get_vm_snapshot(ctx, ObjectKey(req.namespace, req.virtual_machine_snapshot_name))
        results = []
        if req.mode is ApplyMode.DRY_RUN:   # the conflicts found, per resource
            results = [ResourceResult(VIRTUAL_MACHINE.api_version, "VirtualMachine", req.virtual_machine_name,
                                      "Conflict", "the IP address 10.66.10.14 is in use", "IPAddressInUse")]
        return self._new_operation(ctx, OperationType.RESTORE_VM, req.namespace,
                                   ResourceRef(VIRTUAL_MACHINE.api_version, "VirtualMachine",
                                               req.virtual_machine_name, req.namespace), req.request_id,
                                   resource=ResourceRef(VIRTUAL_MACHINE_OPERATION.api_version,
                                                        "VirtualMachineOperation", f"restore-{snapshot.name}",
                                                        req.namespace, "vmop-uid"),
                                   results=results)

    # ------------------------------------------------------------ clones
    @staticmethod
    def _check_clone_options(options: CloneOptions) -> None:
        """The core's naming rules, reported under the core's (proto) field names."""
        violations: list[errors.FieldViolation] = []
        if options.mode is None:
            violations.append(errors.FieldViolation("mode", "is required"))
        for i, r in enumerate(options.name_replacements):
            if not r.from_name:
                violations.append(errors.FieldViolation(f"name_replacements[{i}].from.name", "is required"))
            if not 1 <= len(r.to) <= 59:
                violations.append(errors.FieldViolation(f"name_replacements[{i}].to", "must be 1-59 characters"))
        for field_name, value in (("name_prefix", options.name_prefix), ("name_suffix", options.name_suffix)):
            if value is not None and not 1 <= len(value) <= 59:
                violations.append(errors.FieldViolation(f"customization.{field_name}", "must be 1-59 characters"))
        if options.name_prefix is None and options.name_suffix is None and not options.name_replacements:
            violations.append(errors.FieldViolation("customization", "set a prefix, a suffix or a name replacement"))
        if violations:
            raise errors.invalid_argument("invalid naming rules", violations)

    @staticmethod
    def _name_map(options: CloneOptions, names: list[tuple[str, str]]) -> list[ResourceResult]:
        renames = {r.from_name: r.to for r in options.name_replacements}
        return [ResourceResult(VIRTUAL_MACHINE.api_version, kind,
                               f"{options.name_prefix or ''}{renames.get(name, name)}{options.name_suffix or ''}",
                               "InProgress", source_name=name) for kind, name in names]

    async def clone_vm(self, ctx: RequestContext, req: CloneVmRequest) -> Operation:
        self._check_clone_options(req.options)
        if (req.namespace, req.virtual_machine_name) not in self.vms:
            raise errors.not_found("VirtualMachine", req.virtual_machine_name, req.namespace)
        results = self._name_map(req.options, [("VirtualMachine", req.virtual_machine_name),
                                               ("VirtualDisk", f"{req.virtual_machine_name}-root")]) \
            if req.options.mode is ApplyMode.DRY_RUN else []
        return self._new_operation(ctx, OperationType.CLONE_VM, req.namespace,
                                   ResourceRef(VIRTUAL_MACHINE.api_version, "VirtualMachine",
                                               req.virtual_machine_name, req.namespace), req.request_id,
                                   results=results)

    async def create_vm_from_snapshot(self, ctx: RequestContext, req: CreateVmFromSnapshotRequest) -> Operation:
        self._check_clone_options(req.options)
        snapshot = await self.get_vm_snapshot(ctx, ObjectKey(req.namespace, req.virtual_machine_snapshot_name))
        results = self._name_map(req.options, [("VirtualMachine", snapshot.virtual_machine_name)]) \
            if req.options.mode is ApplyMode.DRY_RUN else []
        return self._new_operation(ctx, OperationType.CREATE_VM_FROM_SNAPSHOT, req.namespace,
                                   ResourceRef(VIRTUAL_MACHINE_SNAPSHOT.api_version, "VirtualMachineSnapshot",
                                               snapshot.name, req.namespace, snapshot.uid), req.request_id,
                                   results=results)

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

    async def get_operation(self, ctx: RequestContext, key: OperationKey) -> Operation:
        return self._operation(key.operation_id)[-1]

    async def list_operations(self, ctx: RequestContext, req: ListOperationsRequest) -> Page[Operation]:
        ops = [versions[-1] for versions in self.operations.values()]
        return Page([op for op in ops if req.state is None or op.state is req.state])

    async def get_operation_timeline(self, ctx: RequestContext, key: OperationKey) -> list[OperationTransition]:
        return [OperationTransition(key.operation_id, i + 1, op.state, op.phase, "Changed", "", op.update_time)
                for i, op in enumerate(self._operation(key.operation_id))]

    async def cancel_operation(self, ctx: RequestContext, req: CancelOperationRequest) -> Operation:
        last = self._operation(req.operation_id)[-1]
        if last.type is OperationType.RESTORE_VM and not req.force:
            raise errors.ApiError(errors.Code.FAILED_PRECONDITION, "RESTORE_IN_PROGRESS",
                                  "cancelling a VM restore in progress is dangerous; pass force")
        return await self.advance(req.operation_id, OperationState.CANCELLED, "Terminating")

    async def watch_operation(self, ctx: RequestContext, req: WatchOperationRequest) -> AsyncIterator[Operation]:
        versions = self._operation(req.operation_id)
        self.seen_after_versions.append(req.after_version)
        try:
            sent = req.after_version
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

    async def export_disk(self, ctx: RequestContext, req: ExportRequest) -> AsyncIterator[ExportItem]:
        """A 16-byte volume: bytes 0..7 data, 8..15 a hole; ranges honoured like the core."""
        if req.name == "in-use":
            raise errors.failed_precondition("DISK_IN_USE", "in use by 'linux-vm'")
        offset, end = (req.offset, 16 if req.length is None else req.offset + req.length) if req.ranged else (0, 16)
        if req.suffix_length is not None:
            offset, end = 16 - req.suffix_length, 16
        if offset >= 16:
            raise errors.ApiError(errors.Code.OUT_OF_RANGE, "RANGE_NOT_SATISFIABLE", "past the end",
                                  metadata={"size": "16"})
        yield ExportStart(operation_id="op-exp", size=16, offset=offset, length=end - offset, etag='"v1"',
                          sha256="00" * 32 if req.whole_image_sha256 else "", ranged=req.ranged)
        data = bytes(range(1, 9))[offset:end]
        if data:
            yield ExportData(offset, data)
        if end > 8:
            yield ExportHole(max(offset, 8), end - max(offset, 8))
        yield ExportEnd(size=16, offset=offset, length=end - offset, sha256="", range_sha256="", hole_bytes=0)

    async def verify_audit_log(self, ctx: RequestContext, req: VerifyAuditLogRequest) -> AuditVerification:
        return AuditVerification(ok=True, checked=len(self.events))

    # ------------------------------------------------------------ the rest
    async def record_rejection(self, ctx: RequestContext, action: str, error: errors.ApiError, *,
                               namespace: str = "") -> None:
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
async def serve_fake(telemetry: Telemetry | None = None) -> AsyncIterator[Served]:
    """The adapter over the fake facade on 127.0.0.1, with fast keepalives for the SSE tests."""
    fake = FakeGateway()
    app = create_rest_app(fake, openapi_path=SPEC_PATH, telemetry=telemetry,
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
        api_spec().validate_schema("AuditEvent", json.loads(row))

    table = await served.call("GET", "/v1/audit/events", headers={**AUTH, "Accept": "text/csv"})
    text = table.body.decode().splitlines()
    assert text[0].startswith("id,time,actor,action,outcome") and len(text) == 5
    assert "'=cmd" in text[4]  # no spreadsheet formula survives the export

    bad_filter = await served.call("GET", "/v1/audit/events?since=not-a-time",
                                   headers={**AUTH, "Accept": "application/x-ndjson"})
    assert bad_filter.status == 400 and "since" in violations_of(bad_filter)

    verified = await served.call("POST", "/v1/audit:verify", headers=AUTH)
    assert verified.json() == {"ok": True, "checked": 4, "firstBadId": None, "message": ""}


# ---------------------------------------------------------------- exports and custom methods

EXPORT = "/v1/namespaces/demo/disks/d:export"


async def test_an_export_is_served_with_http_range_semantics(served: Served) -> None:
    whole = await served.call("GET", EXPORT, headers=AUTH)
    assert whole.status == 200 and whole.body == bytes(range(1, 9)) + bytes(8)
    assert whole.headers["Content-Length"] == "16" and whole.headers["ETag"] == '"v1"'
    assert whole.headers["Accept-Ranges"] == "bytes" and whole.headers["X-Operation-Id"] == "op-exp"
    assert "Repr-Digest" not in whole.headers and "Content-Range" not in whole.headers

    part = await served.call("GET", EXPORT + "?ttl=90s", headers={**AUTH, "Range": "bytes=6-9", "If-Range": '"v1"',
                                                                 "Want-Repr-Digest": "sha-256=1"})
    assert part.status == 206 and part.body == bytes([7, 8, 0, 0])
    assert part.headers["Content-Range"] == "bytes 6-9/16"
    assert part.headers["Repr-Digest"] == "sha-256=:" + "A" * 43 + "=:"
    assert served.fake.requests_of(contract.EXPORT_DISK)[-1] == ExportRequest(
        namespace="demo", name="d", ttl_seconds=90.0, offset=6, length=4, expand_holes=True,
        whole_image_sha256=True, if_etag='"v1"')

    tail = await served.call("GET", EXPORT, headers={**AUTH, "Range": "bytes=-3"})
    assert tail.status == 206 and tail.body == bytes(3)
    past = await served.call("GET", EXPORT, headers={**AUTH, "Range": "bytes=16-"})
    assert past.status == 416 and past.headers["Content-Range"] == "bytes */16"
    # Several ranges, other units, nonsense and an If-Range date: ignored, as RFC 9110 says.
    for ignored in ("bytes=0-1,4-5", "items=0-1", "bytes=5-2", "bytes=x"):
        assert (await served.call("GET", EXPORT, headers={**AUTH, "Range": ignored})).status == 200
    dated = await served.call("GET", EXPORT, headers={**AUTH, "Range": "bytes=2-", "If-Range": "Sun, 29 Nov 2026"})
    assert served.fake.requests_of(contract.EXPORT_DISK)[-1].if_etag == '"-"' and dated.status == 206


async def test_export_refusals_are_problems_before_any_byte(served: Served) -> None:
    refused = await served.call("GET", "/v1/namespaces/demo/disks/in-use:export", headers=AUTH)
    assert refused.status == 412 and refused.json()["reason"] == "DISK_IN_USE"
    bad_ttl = await served.call("GET", EXPORT + "?ttl=2m", headers=AUTH)
    assert bad_ttl.status == 400 and violations_of(bad_ttl) == {"ttl": 'must be a duration in seconds such as "120s"'}
    unknown = await served.call("GET", EXPORT + "?offset=3", headers=AUTH)
    assert unknown.status == 400
    anonymous = await served.call("GET", EXPORT)
    assert anonymous.status == 401


async def test_a_custom_method_is_not_taken_for_a_name(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    # "s1:export" must reach ExportDiskSnapshot, never GetDiskSnapshot with name "s1:export".
    assert (await served.call("GET", "/v1/namespaces/demo/disk-snapshots/s1:export", headers=AUTH)).status == 200
    assert served.fake.requests_of(contract.EXPORT_DISK_SNAPSHOT)[-1].name == "s1"
    assert (await served.call("GET", "/v1/namespaces/demo/disk-snapshots/s1", headers=AUTH)).status == 200
    unknown_verb = await served.session.get(served.url + "/v1/namespaces/demo/disk-snapshots/s1:frobnicate",
                                            headers=AUTH)
    assert unknown_verb.status == 404
    unknown_verb.release()


# ---------------------------------------------------------------- the route table is the contract table


def test_the_route_table_covers_exactly_the_contract_methods() -> None:
    names = [route.method.name for route in CONTRACT_ROUTES]
    assert len(names) == len(set(names)), "each contract method is served once"
    assert sorted(names) == sorted(m.name for m in contract.METHODS)
    for route in CONTRACT_ROUTES:
        assert contract.BY_NAME[route.method.name] is route.method
    contract_names = {name for _, _, name, _ in ROUTES} - {"Healthz", "Readyz", "GetOpenApi"}
    assert contract_names == set(contract.BY_NAME)


async def test_served_routes_are_named_after_their_contract_method(served: Served) -> None:
    named = [route.name for route in served.app.router.routes() if route.name and route.method != "HEAD"]
    contract_names = [name for name in named if name not in ("Healthz", "Readyz", "GetOpenApi")]
    assert sorted(contract_names) == sorted(m.name for m in contract.METHODS)


# ---------------------------------------------------------------- VM snapshots


async def create_vm_snapshot(served: Served, body: dict[str, Any], key: str = "") -> Exchange:
    headers = dict(AUTH)
    if key:
        headers["Idempotency-Key"] = key
    return await served.call("POST", "/v1/namespaces/demo/vm-snapshots", json_body=body, headers=headers)


async def test_vm_snapshot_create_moves_every_field_and_answers_202(served: Served) -> None:
    accepted = await create_vm_snapshot(served, {
        "name": "linux-vm-snapshot", "virtualMachineName": "linux-vm", "requiredConsistency": False,
        "keepIPAddress": "Never", "labels": {"team": "a"}, "annotations": {"note": "before upgrade"}}, key="vm-key-1")
    assert accepted.status == 202
    op = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["type"] == "CREATE_VM_SNAPSHOT" and op["warnings"] == ["images are not saved in a VM snapshot"]
    assert op["requestId"] == "vm-key-1"
    (req,) = served.fake.requests_of(contract.CREATE_VM_SNAPSHOT)
    assert req == CreateVmSnapshotRequest(
        namespace="demo", virtual_machine_name="linux-vm", name="linux-vm-snapshot", required_consistency=False,
        keep_ip_address=KeepIpAddress.NEVER, labels={"team": "a"}, annotations={"note": "before upgrade"},
        request_id="vm-key-1")


async def test_vm_snapshot_defaults(served: Served) -> None:
    await create_vm_snapshot(served, {"virtualMachineName": "linux-vm", "generateName": "nightly-"})
    (req,) = served.fake.requests_of(contract.CREATE_VM_SNAPSHOT)
    assert req == CreateVmSnapshotRequest(namespace="demo", virtual_machine_name="linux-vm", generate_name="nightly-")
    assert req.required_consistency is True and req.keep_ip_address is KeepIpAddress.ALWAYS


async def test_vm_snapshot_get_list_and_delete(served: Served) -> None:
    for i in range(3):
        await create_vm_snapshot(served, {"name": f"vms-{i}", "virtualMachineName": "linux-vm"})
    got = await served.call("GET", "/v1/namespaces/demo/vm-snapshots/vms-1", headers=AUTH)
    assert got.status == 200
    snapshot = got.json()
    assert snapshot["virtualMachineName"] == "linux-vm" and snapshot["keepIPAddress"] == "Always"
    assert snapshot["consistent"] is True and snapshot["virtualDiskSnapshotNames"] == ["vms-1-root"]
    assert snapshot["resources"][0]["kind"] == "VirtualMachine" and snapshot["createTime"].endswith("Z")
    assert served.fake.requests_of(contract.GET_VM_SNAPSHOT) == [ObjectKey("demo", "vms-1")]

    names: list[str] = []
    token = ""
    while True:
        page = (await served.call("GET", f"/v1/namespaces/demo/vm-snapshots?pageSize=2&pageToken={token}"
                                  "&labelSelector=team%3Da", headers=AUTH)).json()
        names += [s["name"] for s in page["items"]]
        token = page["nextPageToken"]
        if not token:
            break
    assert names == ["vms-0", "vms-1", "vms-2"]
    assert served.fake.requests_of(contract.LIST_VM_SNAPSHOTS)[0] == ListRequest("demo", 2, "", "team=a")
    bad = await served.call("GET", "/v1/namespaces/demo/vm-snapshots?pageSize=x", headers=AUTH)
    assert bad.status == 400 and "pageSize" in violations_of(bad)

    deleted = await served.call("DELETE", "/v1/namespaces/demo/vm-snapshots/vms-1",
                                headers={**AUTH, "Idempotency-Key": "del-1"})
    assert deleted.status == 202 and deleted.json()["type"] == "DELETE_VM_SNAPSHOT"
    assert deleted.headers["Location"] == f"/v1/operations/{deleted.json()['id']}"
    assert served.fake.requests_of(contract.DELETE_VM_SNAPSHOT) == [DeleteVmSnapshotRequest("demo", "vms-1", "del-1")]
    assert (await served.call("GET", "/v1/namespaces/demo/vm-snapshots/nope", headers=AUTH)).status == 404
    assert (await served.call("DELETE", "/v1/namespaces/demo/vm-snapshots/nope", headers=AUTH)).status == 404


async def test_vm_snapshot_of_a_missing_vm_is_404_and_core_fields_are_json_names(served: Served) -> None:
    missing = await create_vm_snapshot(served, {"virtualMachineName": "no-such-vm"})
    assert missing.status == 404 and missing.json()["metadata"]["kind"] == "VirtualMachine"
    bad = await create_vm_snapshot(served, {"name": "Bad_Name", "virtualMachineName": "linux-vm"})
    assert bad.status == 400 and set(violations_of(bad)) == {"name"}
    assert rest_field_name("keep_ip_address") == "keepIPAddress"
    assert rest_field_name("virtual_machine_snapshot_name") == "virtualMachineSnapshotName"
    assert rest_field_name("after_version") == "Last-Event-ID"


@pytest.mark.parametrize(("body", "field"), [
    ({"virtualMachineName": "linux-vm", "virtualDiskName": "x"}, "virtualDiskName"),
    ({"name": "x"}, "virtualMachineName"),
    ({"virtualMachineName": ["linux-vm"]}, "virtualMachineName"),
    ({"virtualMachineName": "linux-vm", "requiredConsistency": 1}, "requiredConsistency"),
    ({"virtualMachineName": "linux-vm", "keepIPAddress": "Sometimes"}, "keepIPAddress"),
    ({"virtualMachineName": "linux-vm", "keepIPAddress": "always"}, "keepIPAddress"),
    ({"virtualMachineName": "linux-vm", "keepIPAddress": True}, "keepIPAddress"),
    ({"virtualMachineName": "linux-vm", "labels": "team=a"}, "labels"),
    ({"virtualMachineName": "linux-vm", "annotations": {"a": None}}, "annotations['a']"),
])
async def test_unconvertible_vm_snapshot_bodies_are_400_naming_the_field(served: Served, body: dict[str, object],
                                                                       field: str) -> None:
    bad = await create_vm_snapshot(served, body)
    assert bad.status == 400 and field in violations_of(bad)
    assert served.fake.calls == [] and served.fake.vm_snapshots == {}
    assert served.fake.rejections == [("CreateVirtualMachineSnapshot", "INVALID_ARGUMENT")]


async def test_vm_snapshot_bodies_must_be_json_objects(served: Served) -> None:
    for raw in (b"", b"[]", b"{"):
        bad = await served.call("POST", "/v1/namespaces/demo/vm-snapshots", data=raw,
                                headers={**AUTH, "Content-Type": "application/json"})
        assert bad.status == 400 and "body" in violations_of(bad)
    wrong_type = await served.call("POST", "/v1/namespaces/demo/vm-snapshots", data=b"x",
                                   headers={**AUTH, "Content-Type": "text/plain"})
    assert wrong_type.status == 415


# ---------------------------------------------------------------- restore


async def test_restore_disk_moves_every_field_and_answers_202(served: Served) -> None:
    await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})
    accepted = await served.call("POST", "/v1/namespaces/demo/disks:restore", json_body={
        "name": "linux-vm-root-restored", "diskSnapshotName": "s1", "size": "20Gi", "storageClassName": "fast",
        "labels": {"restored": "yes"}}, headers={**AUTH, "Idempotency-Key": "restore-1"})
    assert accepted.status == 202
    op = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["type"] == "RESTORE_DISK" and op["resource"]["name"] == "linux-vm-root-restored"
    assert served.fake.requests_of(contract.RESTORE_DISK) == [RestoreDiskRequest(
        namespace="demo", name="linux-vm-root-restored", disk_snapshot_name="s1", size="20Gi",
        storage_class_name="fast", labels={"restored": "yes"}, request_id="restore-1")]
    minimal = await served.call("POST", "/v1/namespaces/demo/disks:restore",
                                json_body={"name": "d2", "diskSnapshotName": "s1"}, headers=AUTH)
    assert minimal.status == 202
    assert served.fake.requests_of(contract.RESTORE_DISK)[1] == RestoreDiskRequest("demo", "d2", "s1")
    missing = await served.call("POST", "/v1/namespaces/demo/disks:restore",
                                json_body={"name": "d3", "diskSnapshotName": "nope"}, headers=AUTH)
    assert missing.status == 404


@pytest.mark.parametrize(("body", "fields"), [
    ({}, {"name", "diskSnapshotName"}),
    ({"name": "d", "diskSnapshotName": "s1", "size": 20}, {"size"}),
    ({"name": "d", "diskSnapshotName": "s1", "storageClassName": None}, {"storageClassName"}),
    ({"name": "d", "diskSnapshotName": "s1", "virtualDiskSnapshotName": "s1"}, {"virtualDiskSnapshotName"}),
    ({"name": "d", "diskSnapshotName": "s1", "labels": {"a": 1}}, {"labels['a']"}),
    ({"name": "d", "diskSnapshotName": "s1", "annotations": {}}, {"annotations"}),
])
async def test_unconvertible_restore_disk_bodies_are_400(served: Served, body: dict[str, object],
                                                         fields: set[str]) -> None:
    bad = await served.call("POST", "/v1/namespaces/demo/disks:restore", json_body=body, headers=AUTH)
    assert bad.status == 400 and set(violations_of(bad)) == fields
    assert served.fake.calls == []


async def test_restore_vm_mode_defaults_to_strict_and_dry_run_reports_conflicts(served: Served) -> None:
    await create_vm_snapshot(served, {"name": "vms", "virtualMachineName": "linux-vm"})
    path = "/v1/namespaces/demo/virtual-machines/linux-vm:restore"
    strict = await served.call("POST", path, json_body={"virtualMachineSnapshotName": "vms"},
                               headers={**AUTH, "Idempotency-Key": "r-1"})
    assert strict.status == 202 and strict.headers["Location"] == f"/v1/operations/{strict.json()['id']}"
    assert strict.json()["type"] == "RESTORE_VM" and strict.json()["results"] == []
    dry = await served.call("POST", path, json_body={"virtualMachineSnapshotName": "vms", "mode": "DryRun"},
                            headers=AUTH)
    assert dry.status == 202
    assert dry.json()["results"] == [{
        "apiVersion": VIRTUAL_MACHINE.api_version, "kind": "VirtualMachine", "name": "linux-vm",
        "status": "Conflict", "message": "the IP address 10.66.10.14 is in use", "reason": "IPAddressInUse",
        "sourceName": ""}]
    best = await served.call("POST", path, json_body={"virtualMachineSnapshotName": "vms", "mode": "BestEffort"},
                             headers=AUTH)
    assert best.status == 202
    assert served.fake.requests_of(contract.RESTORE_VM) == [
        RestoreVmRequest("demo", "linux-vm", "vms", ApplyMode.STRICT, "r-1"),
        RestoreVmRequest("demo", "linux-vm", "vms", ApplyMode.DRY_RUN),
        RestoreVmRequest("demo", "linux-vm", "vms", ApplyMode.BEST_EFFORT),
    ]
    # The operation's results (with their reason) read back the same way.
    got = await served.call("GET", f"/v1/operations/{dry.json()['id']}", headers=AUTH)
    assert got.json()["results"][0]["reason"] == "IPAddressInUse"


@pytest.mark.parametrize(("body", "fields"), [
    ({"virtualMachineSnapshotName": "vms", "mode": "Yolo"}, {"mode"}),
    ({"virtualMachineSnapshotName": "vms", "mode": "DRY_RUN"}, {"mode"}),
    ({"virtualMachineSnapshotName": "vms", "mode": 1}, {"mode"}),
    ({"mode": "DryRun"}, {"virtualMachineSnapshotName"}),
    ({"virtualMachineSnapshotName": "vms", "force": True}, {"force"}),
])
async def test_unconvertible_restore_vm_bodies_are_400(served: Served, body: dict[str, object],
                                                       fields: set[str]) -> None:
    bad = await served.call("POST", "/v1/namespaces/demo/virtual-machines/linux-vm:restore", json_body=body,
                            headers=AUTH)
    assert bad.status == 400 and set(violations_of(bad)) == fields
    assert bad.json()["code"] == "INVALID_ARGUMENT"
    assert served.fake.calls == []
    assert served.fake.rejections == [("RestoreVirtualMachine", "INVALID_ARGUMENT")]


# ---------------------------------------------------------------- clones

CLONE_VM_PATH = "/v1/namespaces/demo/virtual-machines/linux-vm:clone"
FROM_SNAPSHOT_PATH = "/v1/namespaces/demo/vm-snapshots/vms:clone"


async def test_clone_vm_moves_every_field_and_answers_202_with_the_name_map(served: Served) -> None:
    accepted = await served.call("POST", CLONE_VM_PATH, json_body={
        "mode": "DryRun",
        "nameReplacements": [{"from": {"kind": "VirtualMachine", "name": "linux-vm"}, "to": "web"},
                             {"from": {"name": "linux-vm-root"}, "to": "web-root"}],
        "customization": {"namePrefix": "copy-", "nameSuffix": "-2"}}, headers={**AUTH, "Idempotency-Key": "c-1"})
    assert accepted.status == 202
    op = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["type"] == "CLONE_VM" and op["target"]["name"] == "linux-vm"
    assert [(r["kind"], r["name"], r["sourceName"]) for r in op["results"]] == [
        ("VirtualMachine", "copy-web-2", "linux-vm"), ("VirtualDisk", "copy-web-root-2", "linux-vm-root")]
    assert served.fake.requests_of(contract.CLONE_VM) == [CloneVmRequest(
        namespace="demo", virtual_machine_name="linux-vm", request_id="c-1", options=CloneOptions(
            mode=ApplyMode.DRY_RUN,
            name_replacements=(NameReplacement("linux-vm", "web", "VirtualMachine"),
                               NameReplacement("linux-vm-root", "web-root", "")),
            name_prefix="copy-", name_suffix="-2"))]
    # The name map reads back the same way.
    got = await served.call("GET", f"/v1/operations/{op['id']}", headers=AUTH)
    assert [r["sourceName"] for r in got.json()["results"]] == ["linux-vm", "linux-vm-root"]


async def test_create_vm_from_snapshot_moves_every_field_and_answers_202(served: Served) -> None:
    await create_vm_snapshot(served, {"name": "vms", "virtualMachineName": "linux-vm"})
    accepted = await served.call("POST", FROM_SNAPSHOT_PATH, json_body={
        "mode": "Strict", "nameReplacements": [{"from": {"name": "linux-vm"}, "to": "restored"}],
        "customization": {"nameSuffix": "-b"}}, headers={**AUTH, "Idempotency-Key": "c-2"})
    assert accepted.status == 202
    op = accepted.json()
    assert accepted.headers["Location"] == f"/v1/operations/{op['id']}"
    assert op["type"] == "CREATE_VM_FROM_SNAPSHOT" and op["target"]["name"] == "vms" and op["results"] == []
    assert served.fake.requests_of(contract.CREATE_VM_FROM_SNAPSHOT) == [CreateVmFromSnapshotRequest(
        namespace="demo", virtual_machine_snapshot_name="vms", request_id="c-2", options=CloneOptions(
            mode=ApplyMode.STRICT, name_replacements=(NameReplacement("linux-vm", "restored"),),
            name_prefix=None, name_suffix="-b"))]
    dry = await served.call("POST", FROM_SNAPSHOT_PATH, json_body={
        "mode": "DryRun", "customization": {"namePrefix": "new-"}}, headers=AUTH)
    assert dry.status == 202 and dry.json()["results"] == [{
        "apiVersion": VIRTUAL_MACHINE.api_version, "kind": "VirtualMachine", "name": "new-linux-vm",
        "status": "InProgress", "message": "", "reason": "", "sourceName": "linux-vm"}]
    missing = await served.call("POST", "/v1/namespaces/demo/vm-snapshots/nope:clone",
                                json_body={"mode": "Strict", "customization": {"namePrefix": "a-"}}, headers=AUTH)
    assert missing.status == 404


@pytest.mark.parametrize(("customization", "prefix", "suffix"), [
    (None, None, None),
    ({}, None, None),
    ({"namePrefix": "p-"}, "p-", None),
    ({"nameSuffix": "-s"}, None, "-s"),
    ({"namePrefix": "", "nameSuffix": ""}, "", ""),   # present, even empty: the core refuses it
])
async def test_clone_prefix_and_suffix_keep_their_presence(served: Served, customization: dict[str, str] | None,
                                                           prefix: str | None, suffix: str | None) -> None:
    body: dict[str, Any] = {"mode": "Strict", "nameReplacements": [{"from": {"name": "linux-vm"}, "to": "b"}]}
    if customization is not None:
        body["customization"] = customization
    answer = await served.call("POST", CLONE_VM_PATH, json_body=body, headers=AUTH)
    (sent,) = served.fake.requests_of(contract.CLONE_VM)
    assert (sent.options.name_prefix, sent.options.name_suffix) == (prefix, suffix)
    if prefix == "":
        assert answer.status == 400 and set(violations_of(answer)) == {"customization.namePrefix",
                                                                      "customization.nameSuffix"}
    else:
        assert answer.status == 202


@pytest.mark.parametrize("path", [CLONE_VM_PATH, FROM_SNAPSHOT_PATH])
async def test_a_clone_without_a_mode_reaches_the_core_and_is_400(served: Served, path: str) -> None:
    await create_vm_snapshot(served, {"name": "vms", "virtualMachineName": "linux-vm"})
    answer = await served.call("POST", path, json_body={"customization": {"namePrefix": "a-"}}, headers=AUTH)
    assert answer.status == 400 and violations_of(answer) == {"mode": "is required"}
    method = contract.CLONE_VM if path == CLONE_VM_PATH else contract.CREATE_VM_FROM_SNAPSHOT
    (sent,) = served.fake.requests_of(method)
    assert sent.options.mode is None


async def test_core_clone_field_names_are_reported_as_json_names(served: Served) -> None:
    answer = await served.call("POST", CLONE_VM_PATH, json_body={
        "nameReplacements": [{"from": {"name": "linux-vm"}, "to": "ok"}, {"from": {"kind": "VirtualDisk"}, "to": ""}],
        "customization": {"namePrefix": "x" * 60}}, headers=AUTH)
    assert answer.status == 400
    assert set(violations_of(answer)) == {"mode", "nameReplacements[1].from.name", "nameReplacements[1].to",
                                          "customization.namePrefix"}
    nothing = await served.call("POST", CLONE_VM_PATH, json_body={"mode": "Strict"}, headers=AUTH)
    assert nothing.status == 400 and set(violations_of(nothing)) == {"customization"}


@pytest.mark.parametrize(("field", "expected"), [
    ("mode", "mode"),
    ("name_replacements", "nameReplacements"),
    ("name_replacements[3].from.name", "nameReplacements[3].from.name"),
    ("name_replacements[0].from.kind", "nameReplacements[0].from.kind"),
    ("name_replacements[0].to", "nameReplacements[0].to"),
    ("customization", "customization"),
    ("customization.name_prefix", "customization.namePrefix"),
    ("customization.name_suffix", "customization.nameSuffix"),
    ("virtual_machine_name", "virtualMachineName"),
    ("virtual_machine_snapshot_name", "virtualMachineSnapshotName"),
    ("request_id", "Idempotency-Key"),
    # the core request object's own nesting, should it be reported
    ("options.mode", "mode"),
    ("options.name_prefix", "customization.namePrefix"),
    ("options.name_suffix", "customization.nameSuffix"),
    ("options.name_replacements[0].to", "nameReplacements[0].to"),
    ("labels['a_b']", "labels['a_b']"),
])
def test_clone_field_names_map_to_the_body_names(field: str, expected: str) -> None:
    assert rest_field_name(field) == expected


@pytest.mark.parametrize(("body", "fields"), [
    ({"mode": "Yolo"}, {"mode"}),
    ({"mode": "DRY_RUN"}, {"mode"}),
    ({"mode": 2}, {"mode"}),
    ({"mode": "DryRun", "force": True}, {"force"}),
    ({"mode": "DryRun", "nameReplacements": {}}, {"nameReplacements"}),
    ({"mode": "DryRun", "nameReplacements": ["a"]}, {"nameReplacements[0]"}),
    ({"mode": "DryRun", "nameReplacements": [{"from": "a", "to": "b"}]}, {"nameReplacements[0].from"}),
    ({"mode": "DryRun", "nameReplacements": [{"from": {"name": 1}, "to": "b"}]}, {"nameReplacements[0].from.name"}),
    ({"mode": "DryRun", "nameReplacements": [{"from": {"name": "a", "kind": None}, "to": "b"}]},
     {"nameReplacements[0].from.kind"}),
    ({"mode": "DryRun", "nameReplacements": [{"from": {"name": "a", "uid": "u"}, "to": "b"}]},
     {"nameReplacements[0].from.uid"}),
    ({"mode": "DryRun", "nameReplacements": [{"from": {"name": "a"}, "to": "b"}, {"from": {"name": "c"}, "to": 5}]},
     {"nameReplacements[1].to"}),
    ({"mode": "DryRun", "nameReplacements": [{"from": {"name": "a"}, "to": "b", "kind": "VirtualDisk"}]},
     {"nameReplacements[0].kind"}),
    ({"mode": "DryRun", "customization": "copy-"}, {"customization"}),
    ({"mode": "DryRun", "customization": {"namePrefix": None}}, {"customization.namePrefix"}),
    ({"mode": "DryRun", "customization": {"nameSuffix": 1, "name_prefix": "a"}},
     {"customization.nameSuffix", "customization.name_prefix"}),
    ({"mode": 1, "customization": {"prefix": "a"}, "extra": 1}, {"mode", "customization.prefix", "extra"}),
])
@pytest.mark.parametrize("path", [CLONE_VM_PATH, FROM_SNAPSHOT_PATH])
async def test_unconvertible_clone_bodies_are_400(served: Served, path: str, body: dict[str, object],
                                                  fields: set[str]) -> None:
    bad = await served.call("POST", path, json_body=body, headers=AUTH)
    assert bad.status == 400 and set(violations_of(bad)) == fields
    assert bad.json()["code"] == "INVALID_ARGUMENT"
    assert served.fake.calls == []
    action = "CloneVirtualMachine" if path == CLONE_VM_PATH else "CreateVirtualMachineFromSnapshot"
    assert served.fake.rejections == [(action, "INVALID_ARGUMENT")]


@pytest.mark.parametrize("path", [CLONE_VM_PATH, FROM_SNAPSHOT_PATH])
async def test_clone_bodies_must_be_json_objects(served: Served, path: str) -> None:
    for raw in (b"", b"[]", b"{"):
        bad = await served.call("POST", path, data=raw, headers={**AUTH, "Content-Type": "application/json"})
        assert bad.status == 400 and "body" in violations_of(bad)
    wrong_type = await served.call("POST", path, data=b"x", headers={**AUTH, "Content-Type": "text/plain"})
    assert wrong_type.status == 415
    unknown_query = await served.call("POST", path + "?dryRun=true", json_body={"mode": "DryRun"}, headers=AUTH)
    assert unknown_query.status == 400 and set(violations_of(unknown_query)) == {"dryRun"}
    assert served.fake.calls == []


# ---------------------------------------------------------------- cancel


async def test_cancel_without_a_body_and_with_force(served: Served) -> None:
    op_id = (await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})).json()["id"]
    cancelled = await served.call("POST", f"/v1/operations/{op_id}:cancel", headers=AUTH)
    assert cancelled.status == 200 and "Location" not in cancelled.headers
    assert cancelled.json()["id"] == op_id and cancelled.json()["state"] == "CANCELLED"
    assert served.fake.requests_of(contract.CANCEL_OPERATION) == [CancelOperationRequest(op_id)]

    await create_vm_snapshot(served, {"name": "vms", "virtualMachineName": "linux-vm"})
    restore = await served.call("POST", "/v1/namespaces/demo/virtual-machines/linux-vm:restore",
                                json_body={"virtualMachineSnapshotName": "vms"}, headers=AUTH)
    restore_id = restore.json()["id"]
    refused = await served.call("POST", f"/v1/operations/{restore_id}:cancel", json_body={}, headers=AUTH)
    assert refused.status == 412 and refused.json()["reason"] == "RESTORE_IN_PROGRESS"
    forced = await served.call("POST", f"/v1/operations/{restore_id}:cancel", json_body={"force": True},
                               headers={**AUTH, "Idempotency-Key": "cancel-1"})
    assert forced.status == 200 and forced.json()["state"] == "CANCELLED"
    assert served.fake.requests_of(contract.CANCEL_OPERATION)[1:] == [
        CancelOperationRequest(restore_id), CancelOperationRequest(restore_id, force=True, request_id="cancel-1")]
    missing = await served.call("POST", f"/v1/operations/{uuid.uuid4()}:cancel", headers=AUTH)
    assert missing.status == 404


@pytest.mark.parametrize(("raw", "field"), [
    (b'{"force": "yes"}', "force"),
    (b'{"force": true, "reason": "x"}', "reason"),
    (b"[true]", "body"),
    (b"{", "body"),
])
async def test_unconvertible_cancel_bodies_are_400(served: Served, raw: bytes, field: str) -> None:
    bad = await served.call("POST", f"/v1/operations/{uuid.UUID(int=1)}:cancel", data=raw,
                            headers={**AUTH, "Content-Type": "application/json"})
    assert bad.status == 400 and field in violations_of(bad)
    assert served.fake.calls == []


# ---------------------------------------------------------------- requests of the other calls


async def test_reads_build_the_contract_request_objects(served: Served) -> None:
    op_id = (await create(served, {"name": "s1", "virtualDiskName": "linux-vm-root"})).json()["id"]
    await served.call("GET", "/v1/namespaces/demo/disk-snapshots/s1", headers=AUTH)
    await served.call("GET", f"/v1/operations/{op_id}", headers=AUTH)
    await served.call("GET", f"/v1/operations/{op_id}/timeline", headers=AUTH)
    await served.call("POST", "/v1/audit:verify", headers=AUTH)
    assert served.fake.requests_of(contract.GET_DISK_SNAPSHOT) == [ObjectKey("demo", "s1")]
    assert served.fake.requests_of(contract.GET_OPERATION) == [OperationKey(op_id)]
    assert served.fake.requests_of(contract.GET_OPERATION_TIMELINE) == [OperationKey(op_id)]
    assert served.fake.requests_of(contract.VERIFY_AUDIT_LOG) == [VerifyAuditLogRequest()]


async def test_audit_export_has_a_route_of_its_own(served: Served) -> None:
    for _ in range(2):
        await served.call("GET", "/v1/operations", headers={"Authorization": "Bearer wrong"})
    lines = await served.call("GET", "/v1/audit/events:export?outcome=DENIED", headers=AUTH)
    assert lines.status == 200 and lines.headers["Content-Type"].startswith("application/x-ndjson")
    rows = [json.loads(line) for line in lines.body.decode().split("\n") if line]
    assert [row["id"] for row in rows] == [1, 2]
    assert served.fake.authenticated[-1][0] == "ExportAuditEvents"
    assert served.fake.requests_of(contract.EXPORT_AUDIT_EVENTS) == [
        ListAuditEventsRequest(outcome=AuditOutcome.DENIED)]
    table = await served.call("GET", "/v1/audit/events:export", headers={**AUTH, "Accept": "text/csv"})
    assert table.body.decode().splitlines()[0].startswith("id,time,actor")
    paged = await served.call("GET", "/v1/audit/events:export?pageSize=1", headers=AUTH)
    assert paged.status == 400 and "pageSize" in violations_of(paged)
    bad = await served.call("GET", "/v1/audit/events:export?since=not-a-time", headers=AUTH)
    assert bad.status == 400 and "since" in violations_of(bad)
