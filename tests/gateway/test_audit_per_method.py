"""Every contract method is exactly one audit event, under its own name, on both doors.

For each entry of ``service.core.contract.METHODS`` the whole gateway (``gateway_server``:
real sockets, the embedded cluster, a real database) is called once over gRPC (a real
channel, the generated stubs) and once over REST (a real HTTP client, the route of
``CONTRACT_ROUTES``), each call with its own ``x-request-id``. Streams, watches included,
are opened and closed as soon as their first message arrives or their audit event is
written. The calls may succeed or fail (NOT_FOUND, UNIMPLEMENTED...): what is checked is
that the audit log (read from the store itself, not through the API under test) holds
exactly one event with that request id, whose action is the method's name and whose
protocol is the door's. The set of methods called on each door must be the contract's,
so a method added without a binding on a door fails here.
"""

from __future__ import annotations

import asyncio
import re
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
import pytest
from google.protobuf.message import Message

from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    clone_service_pb2,
    clone_service_pb2_grpc,
    export_service_pb2,
    export_service_pb2_grpc,
    operation_service_pb2,
    operation_service_pb2_grpc,
    restore_service_pb2,
    restore_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.api.rest.routes import CONTRACT_ROUTES
from service.core import contract
from service.core.domain import AuditEvent, AuditFilter
from service.store.db import Database
from tests.support.gateway import GatewayServer

sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

NS = "demo"
DISK = "linux-vm-root"
VM = "linux-vm"
CALL_TIMEOUT = 15.0
AUDIT_WAIT = 10.0
MISSING_OPERATION = "no-such-operation"

# The proto service of each contract service name: its generated module and stub.
GRPC_SERVICES: dict[str, tuple[Any, Any]] = {
    contract.SNAPSHOT_SERVICE: (snapshot_service_pb2, snapshot_service_pb2_grpc.SnapshotServiceStub),
    contract.RESTORE_SERVICE: (restore_service_pb2, restore_service_pb2_grpc.RestoreServiceStub),
    contract.CLONE_SERVICE: (clone_service_pb2, clone_service_pb2_grpc.CloneServiceStub),
    contract.EXPORT_SERVICE: (export_service_pb2, export_service_pb2_grpc.ExportServiceStub),
    contract.OPERATION_SERVICE: (operation_service_pb2, operation_service_pb2_grpc.OperationServiceStub),
    contract.AUDIT_SERVICE: (audit_service_pb2, audit_service_pb2_grpc.AuditServiceStub),
}

snap, restore, clone, export = snapshot_service_pb2, restore_service_pb2, clone_service_pb2, export_service_pb2
ops, audit = operation_service_pb2, audit_service_pb2

# One minimal request per RPC, given the id of the operation the first call (a
# CreateDiskSnapshot) started. Keyed by the proto method name.
GRPC_REQUESTS: dict[str, Callable[[str], Message]] = {
    "CreateDiskSnapshot": lambda op: snap.CreateDiskSnapshotRequest(
        namespace=NS, name="audit-grpc-disk-snap", virtual_disk_name=DISK),
    "GetDiskSnapshot": lambda op: snap.GetDiskSnapshotRequest(namespace=NS, name="audit-grpc-disk-snap"),
    "ListDiskSnapshots": lambda op: snap.ListDiskSnapshotsRequest(namespace=NS),
    "DeleteDiskSnapshot": lambda op: snap.DeleteDiskSnapshotRequest(namespace=NS, name="audit-grpc-missing"),
    "WatchDiskSnapshots": lambda op: snap.WatchDiskSnapshotsRequest(namespace=NS),
    "CreateVirtualMachineSnapshot": lambda op: snap.CreateVirtualMachineSnapshotRequest(
        namespace=NS, name="audit-grpc-vm-snap", virtual_machine_name=VM),
    "GetVirtualMachineSnapshot": lambda op: snap.GetVirtualMachineSnapshotRequest(
        namespace=NS, name="audit-grpc-missing"),
    "ListVirtualMachineSnapshots": lambda op: snap.ListVirtualMachineSnapshotsRequest(namespace=NS),
    "DeleteVirtualMachineSnapshot": lambda op: snap.DeleteVirtualMachineSnapshotRequest(
        namespace=NS, name="audit-grpc-missing"),
    "WatchVirtualMachineSnapshots": lambda op: snap.WatchVirtualMachineSnapshotsRequest(namespace=NS),
    "RestoreDisk": lambda op: restore.RestoreDiskRequest(
        namespace=NS, name="audit-grpc-restored", disk_snapshot_name="audit-grpc-missing"),
    "RestoreVirtualMachine": lambda op: restore.RestoreVirtualMachineRequest(
        namespace=NS, virtual_machine_name=VM, virtual_machine_snapshot_name="audit-grpc-missing"),
    "CloneVirtualMachine": lambda op: clone.CloneVirtualMachineRequest(namespace=NS, virtual_machine_name=VM),
    "CreateVirtualMachineFromSnapshot": lambda op: clone.CreateVirtualMachineFromSnapshotRequest(
        namespace=NS, virtual_machine_snapshot_name="audit-grpc-missing"),
    "ExportDisk": lambda op: export.ExportDiskRequest(namespace=NS, name=DISK),
    "ExportDiskSnapshot": lambda op: export.ExportDiskSnapshotRequest(namespace=NS, name="audit-grpc-missing"),
    "GetOperation": lambda op: ops.GetOperationRequest(operation_id=op),
    "ListOperations": lambda op: ops.ListOperationsRequest(namespace=NS),
    "WatchOperation": lambda op: ops.WatchOperationRequest(operation_id=op),
    "GetOperationTimeline": lambda op: ops.GetOperationTimelineRequest(operation_id=op),
    "CancelOperation": lambda op: ops.CancelOperationRequest(operation_id=op),
    "ListAuditEvents": lambda op: audit.ListAuditEventsRequest(),
    "ExportAuditEvents": lambda op: audit.ExportAuditEventsRequest(),
    "VerifyAuditLog": lambda op: audit.VerifyAuditLogRequest(),
    "VerifyAuditLogStream": lambda op: audit.VerifyAuditLogRequest(),
}

# Path parameters and JSON bodies of the REST calls, by operationId (= method name).
REST_NAMES: dict[str, str] = {
    "GetDiskSnapshot": "audit-rest-disk-snap",
    "RestoreVirtualMachine": VM,
    "CloneVirtualMachine": VM,
    "ExportDisk": DISK,
}
REST_BODIES: dict[str, dict[str, Any]] = {
    "CreateDiskSnapshot": {"name": "audit-rest-disk-snap", "virtualDiskName": DISK},
    "CreateVirtualMachineSnapshot": {"name": "audit-rest-vm-snap", "virtualMachineName": VM},
    "RestoreDisk": {"name": "audit-rest-restored", "diskSnapshotName": "audit-rest-missing"},
    "RestoreVirtualMachine": {"virtualMachineSnapshotName": "audit-rest-missing"},
    "CancelOperation": {},
    "CloneVirtualMachine": {},
    "CreateVirtualMachineFromSnapshot": {},
}
_PATH_PARAM = re.compile(r"\{(\w+)(?::[^}]*)?\}")


@dataclass
class Ledger:
    """The calls one door made: method name -> (request id, what the door answered)."""

    protocol: str
    calls: dict[str, tuple[str, str]] = field(default_factory=dict)

    def request_id(self, method: str) -> str:
        assert method not in self.calls, f"{method} called twice over {self.protocol}"
        rid = f"audit-{self.protocol}-{method}-{uuid.uuid4().hex[:12]}"
        self.calls[method] = (rid, "")
        return rid

    def answered(self, method: str, answer: str) -> None:
        self.calls[method] = (self.calls[method][0], answer)


async def _events(db: Database) -> list[AuditEvent]:
    return [e async for e in db.audit.stream(AuditFilter())]


async def _until_audited(db: Database, rid: str, done: asyncio.Future[Any]) -> None:
    """Until ``done`` (the stream's first message or its end) or an audit event with ``rid``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + AUDIT_WAIT
    while not done.done() and loop.time() < deadline:
        if any(e.request_id == rid for e in await _events(db)):
            return
        await asyncio.wait({done}, timeout=0.05)


def _describe(events: list[AuditEvent]) -> str:
    return ", ".join(f"(action={e.action!r} protocol={e.protocol!r} outcome={e.outcome.value} "
                     f"code={e.code!r} reason={e.reason!r})" for e in events) or "nothing"


async def _check(db: Database, ledger: Ledger) -> None:
    """Exactly one event per call with the method's name and the door's protocol, and
    every contract method called."""
    await asyncio.sleep(0.5)  # let a stream's server side finish unwinding after its close
    events = await _events(db)
    by_request: dict[str, list[AuditEvent]] = {}
    for event in events:
        by_request.setdefault(event.request_id, []).append(event)
    problems = []
    for method, (rid, answer) in ledger.calls.items():
        recorded = by_request.get(rid, [])
        if len(recorded) != 1 or recorded[0].action != method or recorded[0].protocol != ledger.protocol:
            problems.append(f"{method} over {ledger.protocol} (answered {answer}): {len(recorded)} event(s): "
                            f"{_describe(recorded)}")
    contract_methods = {m.name for m in contract.METHODS}
    called = set(ledger.calls)
    if called != contract_methods:
        problems.append(f"methods called over {ledger.protocol} differ from the contract: "
                        f"not called {sorted(contract_methods - called)}, "
                        f"not in the contract {sorted(called - contract_methods)}")
    assert not problems, "\n".join(problems)


@pytest.fixture
async def store(database_url: str, gateway_server: GatewayServer) -> AsyncIterator[Database]:
    """The gateway's database, read directly (the gateway has migrated it by now)."""
    db = await Database.connect(database_url)
    try:
        yield db
    finally:
        await db.close()


# ---------------------------------------------------------------- gRPC


async def _grpc_call(channel: grpc.aio.Channel, db: Database, ledger: Ledger, token: str, method: str,
                     request: Message) -> Message | None:
    """One RPC; the answer of a unary one (None when it failed)."""
    service, module, stub_class = next(
        (name, module, stub) for name, (module, stub) in GRPC_SERVICES.items()
        if method in module.DESCRIPTOR.services_by_name[name].methods_by_name)
    descriptor = module.DESCRIPTOR.services_by_name[service].methods_by_name[method]
    rpc = getattr(stub_class(channel), method)
    rid = ledger.request_id(method)
    metadata = (("authorization", f"Bearer {token}"), ("x-request-id", rid))
    if not descriptor.server_streaming:
        try:
            answer: Message = await rpc(request, metadata=metadata, timeout=CALL_TIMEOUT)
        except grpc.aio.AioRpcError as err:
            ledger.answered(method, err.code().name)
            return None
        ledger.answered(method, "OK")
        return answer
    call = rpc(request, metadata=metadata, timeout=CALL_TIMEOUT)
    first = asyncio.ensure_future(call.read())
    try:
        await _until_audited(db, rid, first)
    finally:
        call.cancel()
        await asyncio.wait({first}, timeout=CALL_TIMEOUT)
    ledger.answered(method, _stream_answer(first))
    return None


def _stream_answer(first: asyncio.Future[Any]) -> str:
    if not first.done():
        return "no answer"
    if first.cancelled():
        return "opened, closed before its first message"
    error = first.exception()
    if isinstance(error, grpc.aio.AioRpcError):
        return str(error.code().name)
    if error is not None:
        return repr(error)
    return "OK (empty stream)" if first.result() is grpc.aio.EOF else "OK (first message read, then closed)"


@sqlite_only
async def test_every_method_is_one_audit_event_over_grpc(gateway_server: GatewayServer, store: Database) -> None:
    ledger = Ledger("grpc")
    async with grpc.aio.insecure_channel(gateway_server.grpc_target) as channel:
        # First a real operation, so the operation methods have one to talk about.
        created = await _grpc_call(channel, store, ledger, gateway_server.token, "CreateDiskSnapshot",
                                   GRPC_REQUESTS["CreateDiskSnapshot"](""))
        operation_id = getattr(created, "id", "") or MISSING_OPERATION
        for method, build in GRPC_REQUESTS.items():
            if method != "CreateDiskSnapshot":
                await _grpc_call(channel, store, ledger, gateway_server.token, method, build(operation_id))
    await _check(store, ledger)


# ---------------------------------------------------------------- REST


async def _rest_call(http: aiohttp.ClientSession, server: GatewayServer, db: Database, ledger: Ledger,
                     route: Any, operation_id: str) -> Any:
    """One call of ``route``; the JSON answer when there is one."""
    method: str = route.method.name
    params = {"namespace": NS, "name": REST_NAMES.get(method, f"audit-rest-missing-{method.lower()}"),
              "id": operation_id}
    path = _PATH_PARAM.sub(lambda m: params[m.group(1)], route.path)
    rid = ledger.request_id(method)
    headers = {**server.auth(), "X-Request-Id": rid}
    body = REST_BODIES.get(method)
    async with http.request(route.http_method, server.rest_url + path, headers=headers, json=body,
                            timeout=aiohttp.ClientTimeout(total=CALL_TIMEOUT)) as resp:
        content_type = resp.headers.get("Content-Type", "")
        if resp.status == 200 and route.method.streaming:
            # Open: read what the door sends first (or nothing), then close.
            first = asyncio.ensure_future(resp.content.readline())
            try:
                await _until_audited(db, rid, first)
            finally:
                first.cancel()
                await asyncio.gather(first, return_exceptions=True)
            ledger.answered(method, f"{resp.status} {content_type} (opened, then closed)")
            return None
        payload = await resp.json(content_type=None) if "json" in content_type else await resp.read()
        ledger.answered(method, f"{resp.status} {content_type}")
        return payload


@sqlite_only
async def test_every_method_is_one_audit_event_over_rest(gateway_server: GatewayServer, store: Database) -> None:
    ledger = Ledger("rest")
    routes = sorted(CONTRACT_ROUTES, key=lambda r: r.method is not contract.CREATE_DISK_SNAPSHOT)
    operation_id = MISSING_OPERATION
    async with aiohttp.ClientSession() as http:
        for route in routes:
            answer = await _rest_call(http, gateway_server, store, ledger, route, operation_id)
            if route.method is contract.CREATE_DISK_SNAPSHOT and isinstance(answer, dict) and answer.get("id"):
                operation_id = str(answer["id"])  # the operation methods talk about this one
    await _check(store, ledger)
