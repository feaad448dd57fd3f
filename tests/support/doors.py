"""Both doors of the gateway behind one small client, so an end-to-end scenario is written
once and run over gRPC (a real channel, the generated stubs) and over REST (a real aiohttp
client, every response validated against openapi.yaml).

Every answer comes back in the REST JSON shape (camelCase keys, enum names as strings):
a gRPC message is turned into that shape with ``json_format``, so assertions read the same
for both doors. Errors of either door are raised as ``DoorError``.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    clone_service_pb2,
    clone_service_pb2_grpc,
    common_pb2,
    operation_service_pb2,
    operation_service_pb2_grpc,
    restore_service_pb2,
    restore_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.core.requests import NameReplacement
from service.embedded_cluster.schema import SchemaAdmission
from service.embedded_cluster.schema.loader import resource_types_of
from tests.support.gateway import GatewayServer
from tests.support.openapi import Exchange, api_spec, call, parse_sse

Obj = dict[str, Any]
UPSTREAM_CRDS = Path(__file__).resolve().parents[3] / "shared" / "crds"
TIMEOUT = 20.0
_KEEP_IP = {"KEEP_IP_ADDRESS_UNSPECIFIED": "", "ALWAYS": "Always", "NEVER": "Never"}
_MODES = {"DryRun": common_pb2.DRY_RUN, "Strict": common_pb2.STRICT, "BestEffort": common_pb2.BEST_EFFORT}
# A clone's rename: NameReplacement(from_name, to, from_kind), or the tuple (from_name, to[, from_kind]).
Replacement = NameReplacement | tuple[str, str] | tuple[str, str, str]


def _replacements(replacements: Iterable[Replacement]) -> list[NameReplacement]:
    return [r if isinstance(r, NameReplacement) else NameReplacement(*r) for r in replacements]


@dataclass
class DoorError(Exception):
    """A refused call, the same for both doors: the canonical code and reason, the field and
    precondition violations, and (REST) the HTTP status."""

    code: str
    reason: str
    message: str
    fields: dict[str, str] = field(default_factory=dict)
    preconditions: list[Obj] = field(default_factory=list)
    http_status: int | None = None

    def __str__(self) -> str:
        return f"{self.code} {self.reason}: {self.message}"

    @property
    def subjects(self) -> list[str]:
        return [str(p["subject"]) for p in self.preconditions]

    @property
    def types(self) -> list[str]:
        return [str(p["type"]) for p in self.preconditions]


def to_json(message: Message) -> Obj:
    """A gRPC message in the REST JSON shape (camelCase, enum names, unset fields present)."""
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _grpc_vm_snapshot(message: Message) -> Obj:
    snap = to_json(message)
    snap["keepIPAddress"] = _KEEP_IP[snap.pop("keepIpAddress")]
    return snap


def _grpc_error(err: grpc.aio.AioRpcError) -> DoorError:
    status = rpc_status.from_call(err)
    info, bad = error_details_pb2.ErrorInfo(), error_details_pb2.BadRequest()
    pre = error_details_pb2.PreconditionFailure()
    for packed in status.details if status is not None else []:
        for holder in (info, bad, pre):
            if packed.Is(holder.DESCRIPTOR):
                packed.Unpack(holder)
    code = err.code().name if err.code() is not None else "UNKNOWN"
    return DoorError(code, info.reason, err.details() or "",
                     {v.field: v.description for v in bad.field_violations},
                     [{"type": v.type, "subject": v.subject, "description": v.description} for v in pre.violations])


class Door:
    """One door into the gateway. Answers are dicts in the REST JSON shape."""

    name = ""

    def __init__(self, server: GatewayServer) -> None:
        self.server = server
        self.namespace = server.namespace

    # each door implements these
    async def create_vm_snapshot(self, name: str, vm: str, *, required_consistency: bool | None = None,
                                 keep_ip_address: str = "") -> Obj:
        raise NotImplementedError

    async def get_vm_snapshot(self, name: str) -> Obj:
        raise NotImplementedError

    async def list_vm_snapshots(self) -> list[Obj]:
        raise NotImplementedError

    async def watch_vm_snapshot(self, name: str, until: Callable[[Obj], bool]) -> list[Obj]:
        """Events of the VM snapshot ``name`` (``{"type", "snapshot"}``) up to the first that satisfies ``until``."""
        raise NotImplementedError

    async def create_disk_snapshot(self, name: str, disk: str, *, required_consistency: bool | None = None) -> Obj:
        raise NotImplementedError

    async def delete_disk_snapshot(self, name: str) -> Obj:
        raise NotImplementedError

    async def restore_disk(self, name: str, disk_snapshot: str, *, size: str = "", storage_class: str = "") -> Obj:
        raise NotImplementedError

    async def restore_vm(self, vm: str, vm_snapshot: str, mode: str) -> Obj:
        raise NotImplementedError

    async def clone_vm(self, vm_name: str, *, mode: str | None, replacements: Iterable[Replacement] = (),
                       prefix: str | None = None, suffix: str | None = None, request_id: str = "") -> Obj:
        """CloneVirtualMachine. ``mode`` "DryRun" | "Strict" | "BestEffort", or None to send
        none; ``prefix``/``suffix`` None are not sent (an empty string is). The operation's
        results carry "sourceName" (a dry run's name map)."""
        raise NotImplementedError

    async def create_vm_from_snapshot(self, snapshot_name: str, *, mode: str | None,
                                      replacements: Iterable[Replacement] = (), prefix: str | None = None,
                                      suffix: str | None = None, request_id: str = "") -> Obj:
        """CreateVirtualMachineFromSnapshot; the arguments as for ``clone_vm``."""
        raise NotImplementedError

    async def get_operation(self, operation_id: str) -> Obj:
        raise NotImplementedError

    async def watch_operation(self, operation_id: str) -> list[Obj]:
        """Every version WatchOperation sends, to the end of the stream (the operation is done)."""
        raise NotImplementedError

    async def cancel_operation(self, operation_id: str, *, force: bool = False) -> Obj:
        raise NotImplementedError

    async def audit_events(self, action: str) -> list[Obj]:
        raise NotImplementedError

    # shared
    async def wait_done(self, operation_id: str) -> Obj:
        """Follow the operation with WatchOperation to a terminal state; GetOperation agrees."""
        async with asyncio.timeout(TIMEOUT):
            versions = await self.watch_operation(operation_id)
        assert versions, "WatchOperation sent nothing"
        last = versions[-1]
        assert last["done"] is True and last["state"] in ("SUCCEEDED", "FAILED", "CANCELLED"), last
        assert [v["version"] for v in versions] == sorted({v["version"] for v in versions})
        got = await self.get_operation(operation_id)
        assert (got["state"], got["version"]) == (last["state"], last["version"])
        return last

    async def wait_until(self, operation_id: str, check: Callable[[Obj], bool], limit: float = 10.0) -> Obj:
        """Poll GetOperation (bounded) until ``check`` holds; fail with the last version."""
        deadline = time.monotonic() + limit
        op = await self.get_operation(operation_id)
        while not check(op):
            assert time.monotonic() < deadline, f"operation never reached the state: {op}"
            await asyncio.sleep(0.05)
            op = await self.get_operation(operation_id)
        return op

    async def refused(self, call: Any) -> DoorError:
        """The DoorError the awaitable ``call`` raises (it must be refused)."""
        try:
            answer = await call
        except DoorError as err:
            return err
        raise AssertionError(f"the call was not refused: {answer}")


class GrpcDoor(Door):
    name = "grpc"

    def __init__(self, server: GatewayServer, channel: grpc.aio.Channel) -> None:
        super().__init__(server)
        self.auth = (("authorization", f"Bearer {server.token}"),)
        self.snapshots = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        self.restores = restore_service_pb2_grpc.RestoreServiceStub(channel)
        self.clones = clone_service_pb2_grpc.CloneServiceStub(channel)
        self.operations = operation_service_pb2_grpc.OperationServiceStub(channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(channel)

    async def _unary(self, method: Any, request: Message) -> Any:
        try:
            return await method(request, metadata=self.auth, timeout=TIMEOUT)
        except grpc.aio.AioRpcError as err:
            raise _grpc_error(err) from None

    async def create_vm_snapshot(self, name: str, vm: str, *, required_consistency: bool | None = None,
                                 keep_ip_address: str = "") -> Obj:
        keep = snapshot_service_pb2.VirtualMachineSnapshot.KeepIpAddress
        request = snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
            namespace=self.namespace, name=name, virtual_machine_name=vm,
            keep_ip_address=keep.Value(keep_ip_address.upper()) if keep_ip_address else 0)
        if required_consistency is not None:
            request.required_consistency = required_consistency
        return to_json(await self._unary(self.snapshots.CreateVirtualMachineSnapshot, request))

    async def get_vm_snapshot(self, name: str) -> Obj:
        return _grpc_vm_snapshot(await self._unary(self.snapshots.GetVirtualMachineSnapshot,
                                                   snapshot_service_pb2.GetVirtualMachineSnapshotRequest(
                                                       namespace=self.namespace, name=name)))

    async def list_vm_snapshots(self) -> list[Obj]:
        items: list[Obj] = []
        token = ""
        while True:
            page = await self._unary(self.snapshots.ListVirtualMachineSnapshots,
                                     snapshot_service_pb2.ListVirtualMachineSnapshotsRequest(
                                         namespace=self.namespace, page_size=1, page_token=token))
            items += [_grpc_vm_snapshot(s) for s in page.virtual_machine_snapshots]
            token = page.next_page_token
            if not token:
                return items

    async def watch_vm_snapshot(self, name: str, until: Callable[[Obj], bool]) -> list[Obj]:
        events: list[Obj] = []
        stream = self.snapshots.WatchVirtualMachineSnapshots(
            snapshot_service_pb2.WatchVirtualMachineSnapshotsRequest(namespace=self.namespace, name=name),
            metadata=self.auth)
        try:
            async with asyncio.timeout(TIMEOUT):
                async for event in stream:
                    seen = {"type": common_pb2.WatchEventType.Name(event.type),
                            "snapshot": _grpc_vm_snapshot(event.snapshot)}
                    events.append(seen)
                    if until(seen):
                        return events
        finally:
            stream.cancel()
        raise AssertionError(f"the watch ended first: {events}")

    async def create_disk_snapshot(self, name: str, disk: str, *, required_consistency: bool | None = None) -> Obj:
        request = snapshot_service_pb2.CreateDiskSnapshotRequest(namespace=self.namespace, name=name,
                                                                 virtual_disk_name=disk)
        if required_consistency is not None:
            request.required_consistency = required_consistency
        return to_json(await self._unary(self.snapshots.CreateDiskSnapshot, request))

    async def delete_disk_snapshot(self, name: str) -> Obj:
        return to_json(await self._unary(self.snapshots.DeleteDiskSnapshot,
                                         snapshot_service_pb2.DeleteDiskSnapshotRequest(namespace=self.namespace,
                                                                                        name=name)))

    async def restore_disk(self, name: str, disk_snapshot: str, *, size: str = "", storage_class: str = "") -> Obj:
        return to_json(await self._unary(self.restores.RestoreDisk, restore_service_pb2.RestoreDiskRequest(
            namespace=self.namespace, name=name, disk_snapshot_name=disk_snapshot, size=size,
            storage_class_name=storage_class)))

    async def restore_vm(self, vm: str, vm_snapshot: str, mode: str) -> Obj:
        return to_json(await self._unary(self.restores.RestoreVirtualMachine,
                                         restore_service_pb2.RestoreVirtualMachineRequest(
                                             namespace=self.namespace, virtual_machine_name=vm,
                                             virtual_machine_snapshot_name=vm_snapshot, mode=_MODES[mode])))

    @staticmethod
    def _clone_fields(mode: str | None, replacements: Iterable[Replacement], prefix: str | None,
                      suffix: str | None, request_id: str) -> dict[str, Any]:
        customization = common_pb2.Customization()
        if prefix is not None:
            customization.name_prefix = prefix
        if suffix is not None:
            customization.name_suffix = suffix
        return {
            "mode": _MODES[mode] if mode is not None else common_pb2.APPLY_MODE_UNSPECIFIED,
            "name_replacements": [common_pb2.NameReplacement(to=r.to, **{"from": common_pb2.NameReplacement.Source(
                kind=r.from_kind, name=r.from_name)}) for r in _replacements(replacements)],
            "customization": customization,
            "request_id": request_id,
        }

    async def clone_vm(self, vm_name: str, *, mode: str | None, replacements: Iterable[Replacement] = (),
                       prefix: str | None = None, suffix: str | None = None, request_id: str = "") -> Obj:
        return to_json(await self._unary(self.clones.CloneVirtualMachine, clone_service_pb2.CloneVirtualMachineRequest(
            namespace=self.namespace, virtual_machine_name=vm_name,
            **self._clone_fields(mode, replacements, prefix, suffix, request_id))))

    async def create_vm_from_snapshot(self, snapshot_name: str, *, mode: str | None,
                                      replacements: Iterable[Replacement] = (), prefix: str | None = None,
                                      suffix: str | None = None, request_id: str = "") -> Obj:
        return to_json(await self._unary(
            self.clones.CreateVirtualMachineFromSnapshot, clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(
                namespace=self.namespace, virtual_machine_snapshot_name=snapshot_name,
                **self._clone_fields(mode, replacements, prefix, suffix, request_id))))

    async def get_operation(self, operation_id: str) -> Obj:
        return to_json(await self._unary(self.operations.GetOperation,
                                         operation_service_pb2.GetOperationRequest(operation_id=operation_id)))

    async def watch_operation(self, operation_id: str) -> list[Obj]:
        try:
            return [to_json(v) async for v in self.operations.WatchOperation(
                operation_service_pb2.WatchOperationRequest(operation_id=operation_id), metadata=self.auth)]
        except grpc.aio.AioRpcError as err:
            raise _grpc_error(err) from None

    async def cancel_operation(self, operation_id: str, *, force: bool = False) -> Obj:
        return to_json(await self._unary(self.operations.CancelOperation, operation_service_pb2.CancelOperationRequest(
            operation_id=operation_id, force=force)))

    async def audit_events(self, action: str) -> list[Obj]:
        page = await self._unary(self.audit.ListAuditEvents,
                                 audit_service_pb2.ListAuditEventsRequest(action=action, page_size=100))
        return [to_json(e) for e in page.audit_events]


class RestDoor(Door):
    name = "rest"

    def __init__(self, server: GatewayServer, session: aiohttp.ClientSession) -> None:
        super().__init__(server)
        self.session = session
        self.base = f"/v1/namespaces/{self.namespace}"

    async def _call(self, method: str, path: str, body: Any = None, *, ok: int = 200,
                    headers: dict[str, str] | None = None) -> Any:
        exchange: Exchange = await call(self.session, method, self.server.rest_url + path, json_body=body,
                                        headers={**self.server.auth(), **(headers or {})})
        if exchange.status >= 400:
            problem = exchange.json()
            raise DoorError(problem["code"], problem["reason"], problem["detail"],
                            {v["field"]: v["description"] for v in problem.get("fieldViolations") or []},
                            list(problem.get("preconditionViolations") or []), exchange.status)
        assert exchange.status == ok, (exchange.status, exchange.body)
        answer = exchange.json()
        if ok == 202:
            assert exchange.headers["Location"] == f"/v1/operations/{answer['id']}"
        return answer

    async def create_vm_snapshot(self, name: str, vm: str, *, required_consistency: bool | None = None,
                                 keep_ip_address: str = "") -> Obj:
        body: Obj = {"name": name, "virtualMachineName": vm}
        if required_consistency is not None:
            body["requiredConsistency"] = required_consistency
        if keep_ip_address:
            body["keepIPAddress"] = keep_ip_address
        return dict(await self._call("POST", f"{self.base}/vm-snapshots", body, ok=202))

    async def get_vm_snapshot(self, name: str) -> Obj:
        return dict(await self._call("GET", f"{self.base}/vm-snapshots/{name}"))

    async def list_vm_snapshots(self) -> list[Obj]:
        items: list[Obj] = []
        token = ""
        while True:
            page = await self._call("GET", f"{self.base}/vm-snapshots?pageSize=1&pageToken={token}")
            items += page["items"]
            token = page["nextPageToken"]
            if not token:
                return items

    async def watch_vm_snapshot(self, name: str, until: Callable[[Obj], bool]) -> list[Obj]:
        url = f"{self.server.rest_url}{self.base}/vm-snapshots:watch?name={name}"
        headers = {**self.server.auth(), "Accept": "text/event-stream"}
        events: list[Obj] = []
        body = ""
        async with self.session.get(url, headers=headers) as resp, asyncio.timeout(TIMEOUT):
            assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
            while True:
                chunk = await resp.content.readany()
                assert chunk, f"the watch ended first: {events}"
                body += chunk.decode()
                complete, body = body.rsplit("\n\n", 1) if "\n\n" in body else ("", body)
                for message in parse_sse(complete + "\n\n")[0] if complete else []:
                    api_spec().validate_schema("VirtualMachineSnapshotEvent", message.data)
                    assert message.event == message.data["type"]
                    events.append(message.data)
                    if until(message.data):
                        return events

    async def create_disk_snapshot(self, name: str, disk: str, *, required_consistency: bool | None = None) -> Obj:
        body: Obj = {"name": name, "virtualDiskName": disk}
        if required_consistency is not None:
            body["requiredConsistency"] = required_consistency
        return dict(await self._call("POST", f"{self.base}/disk-snapshots", body, ok=202))

    async def delete_disk_snapshot(self, name: str) -> Obj:
        return dict(await self._call("DELETE", f"{self.base}/disk-snapshots/{name}", ok=202))

    async def restore_disk(self, name: str, disk_snapshot: str, *, size: str = "", storage_class: str = "") -> Obj:
        body: Obj = {"name": name, "diskSnapshotName": disk_snapshot}
        if size:
            body["size"] = size
        if storage_class:
            body["storageClassName"] = storage_class
        return dict(await self._call("POST", f"{self.base}/disks:restore", body, ok=202))

    async def restore_vm(self, vm: str, vm_snapshot: str, mode: str) -> Obj:
        return dict(await self._call("POST", f"{self.base}/virtual-machines/{vm}:restore",
                                     {"virtualMachineSnapshotName": vm_snapshot, "mode": mode}, ok=202))

    async def _clone(self, path: str, mode: str | None, replacements: Iterable[Replacement], prefix: str | None,
                     suffix: str | None, request_id: str) -> Obj:
        body: Obj = {}
        if mode is not None:
            body["mode"] = mode
        renames = _replacements(replacements)
        if renames:
            body["nameReplacements"] = [
                {"from": {"kind": r.from_kind, "name": r.from_name} if r.from_kind else {"name": r.from_name},
                 "to": r.to} for r in renames]
        customization = {key: value for key, value in (("namePrefix", prefix), ("nameSuffix", suffix))
                         if value is not None}
        if customization:
            body["customization"] = customization
        headers = {"Idempotency-Key": request_id} if request_id else None
        return dict(await self._call("POST", path, body, ok=202, headers=headers))

    async def clone_vm(self, vm_name: str, *, mode: str | None, replacements: Iterable[Replacement] = (),
                       prefix: str | None = None, suffix: str | None = None, request_id: str = "") -> Obj:
        return await self._clone(f"{self.base}/virtual-machines/{vm_name}:clone", mode, replacements, prefix,
                                 suffix, request_id)

    async def create_vm_from_snapshot(self, snapshot_name: str, *, mode: str | None,
                                      replacements: Iterable[Replacement] = (), prefix: str | None = None,
                                      suffix: str | None = None, request_id: str = "") -> Obj:
        return await self._clone(f"{self.base}/vm-snapshots/{snapshot_name}:clone", mode, replacements, prefix,
                                 suffix, request_id)

    async def get_operation(self, operation_id: str) -> Obj:
        return dict(await self._call("GET", f"/v1/operations/{operation_id}"))

    async def watch_operation(self, operation_id: str) -> list[Obj]:
        exchange = await call(self.session, "GET", f"{self.server.rest_url}/v1/operations/{operation_id}:watch",
                              headers={**self.server.auth(), "Accept": "text/event-stream"})
        assert exchange.status == 200
        events, _ = parse_sse(exchange.body.decode())
        for event in events:
            assert event.event == "operation" and event.id == str(event.data["version"])
            api_spec().validate_schema("Operation", event.data)
        return [dict(e.data) for e in events]

    async def cancel_operation(self, operation_id: str, *, force: bool = False) -> Obj:
        return dict(await self._call("POST", f"/v1/operations/{operation_id}:cancel", {"force": force}))

    async def audit_events(self, action: str) -> list[Obj]:
        return list((await self._call("GET", f"/v1/audit/events?action={action}&pageSize=100"))["items"])


@asynccontextmanager
async def open_door(kind: str, server: GatewayServer) -> AsyncIterator[Door]:
    if kind == "grpc":
        async with grpc.aio.insecure_channel(server.grpc_target) as channel:
            yield GrpcDoor(server, channel)
    else:
        async with aiohttp.ClientSession() as session:
            yield RestDoor(server, session)


def results_by_name(op: Obj) -> dict[tuple[str, str], Obj]:
    return {(r["kind"], r["name"]): r for r in op["results"]}


def assert_valid_upstream(obj: Obj, crd_file: str) -> None:
    """The object (as read from the cluster) validates against the FULL upstream CRD: the
    upstream schema neither rejects nor prunes nor changes its spec and status."""
    crd = yaml.safe_load((UPSTREAM_CRDS / crd_file).read_text())
    (rtype,) = resource_types_of(crd, "upstream")
    admission = SchemaAdmission()
    snapshot = json.loads(json.dumps(obj))
    admitted = admission.admit(rtype, snapshot, None)
    assert admitted["spec"] == obj["spec"], f"the upstream {crd_file} pruned or changed the spec"
    if "status" in obj:
        admitted_status = admission.admit(rtype, snapshot, snapshot, subresource="status")
        assert admitted_status["status"] == obj["status"], f"the upstream {crd_file} pruned or changed the status"


def pace(cluster: Any, resource: str, step_delay: float) -> None:
    """Pace one simulated controller of the embedded cluster (the others keep their delay):
    after each step it writes, it waits ``step_delay`` before the next one. A test uses it to
    hold an object in an intermediate phase (a VM Stopping, a disk still Pending) for as long
    as it needs, deterministically."""
    loops = [loop for loop, _ in cluster._manager._loops if loop.reconciler.resource == resource]
    assert len(loops) == 1, f"no single controller for {resource}"
    loops[0].step_delay = step_delay
