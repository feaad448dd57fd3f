#!/usr/bin/env python3
"""Chaos: kill -9 the gateway under a mixed load, again and again, then prove that nothing
was lost or left unaudited.

The embedded cluster runs as its own process (``dvp-gateway embedded-cluster serve``),
the gateway as another (``dvp-gateway serve --kubeconfig ... --database-url ...``); this
process is only the clients. Several clients call both doors (gRPC and REST) at once:
create disk snapshots and VM snapshots, restore disks, delete snapshots (every mutation
with a request id: gRPC ``request_id``, REST ``Idempotency-Key``), get and list
operations, watch operations and disk snapshots. The gateway is killed with SIGKILL at a
random moment 0.2-2 s after it starts listening and started again on the same database
and cluster, ``--kills`` times. A client retries a call that failed with UNAVAILABLE or a
broken connection with the same request id (the contract: a replay returns the same
operation); with probability ``--abandon`` it gives the call up instead, as a client that
crashed too would (an operation it caused must still be audited and finished).

After the last restart the reconciler is left to settle, then the harness reads the
database directly (SQLAlchemy, ``service/store/models.py``) and the cluster, and prints:

    must be zero
      lost operations           acknowledged to a client (an operation id in an answer or an
                                error) but not in the database
      idempotency violations    one request id answered with two different operation ids
      orphan resources          custom resources labelled with an operation id the database
                                does not hold, or written by the gateway without that label
      operations without audit  operations whose id is in no audit event's operation_id
      audit events, unknown op  audit events naming an operation the database does not hold
      unfinished after settle   operations still PENDING/RUNNING after the settle time
      version regressions       an operation seen through the API at version v (or in a
                                terminal state) whose stored row is older (or left that state)
      version forks             one (operation, version) seen with two different contents
      terminal left             operation_transitions leaving SUCCEEDED/FAILED/CANCELLED
      audit chain problems      VerifyAuditLog not ok, ids not contiguous, a broken prev_hash link

and, for information, the operations by state, the calls and attempts made, the error
codes clients saw, kills per second and the time taken. Exit status 1 when a "must be
zero" figure is not zero.

    .venv/bin/python bench/chaos.py                       # 50 kills, SQLite
    .venv/bin/python bench/chaos.py --kills 10 --clients 4
    .venv/bin/python bench/chaos.py --database postgresql://user@127.0.0.1:5432/emptydb
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

# The harness forks gateway processes while its gRPC channels are busy; the children exec at
# once, so gRPC's fork handlers (and their log lines) are not needed.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import aiohttp
import grpc
import sqlalchemy as sa
from google.protobuf import json_format
from google.protobuf.message import Message
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig
from kubernetes_asyncio.client.exceptions import ApiException
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import GatewayProcess, child_env, embedded_cluster_process
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    operation_service_pb2,
    operation_service_pb2_grpc,
    restore_service_pb2,
    restore_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.cluster import kinds
from service.core.ports import ResourceKind
from service.store.models import audit_chain_head, audit_events, operation_transitions, operations

Obj = dict[str, Any]
NS = "demo"
# Disks whose snapshots complete (a detached disk, a stopped VM's, a running VM with a guest
# agent): no-agent-vm-root would stay Pending (PotentiallyInconsistent) by design.
DISKS = ("spare-disk", "stopped-vm-root", "linux-vm-root")
VMS = ("stopped-vm", "linux-vm")
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "CANCELLED"})
UNFINISHED = ("PENDING", "RUNNING")
# Every kind of custom resource the gateway writes (orphans are looked for in each).
WRITTEN_KINDS: tuple[ResourceKind, ...] = (
    kinds.VIRTUAL_DISK_SNAPSHOT, kinds.VIRTUAL_DISK, kinds.VIRTUAL_MACHINE_SNAPSHOT, kinds.VIRTUAL_MACHINE,
    kinds.VIRTUAL_MACHINE_OPERATION, kinds.VIRTUAL_MACHINE_SNAPSHOT_OPERATION, kinds.DATA_EXPORT)
LEASE_NAMESPACE = "default"
LEASE_NAME = "dvp-snapshot-gateway"
GRPC_OPTIONS = (
    # A restarted gateway is back within seconds: do not let the channel back off for minutes.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 500),
    ("grpc.enable_retries", 0),
)
# Actions and their weights in the mixed load.
ACTIONS: dict[str, int] = {
    "create_disk_snapshot": 30, "create_vm_snapshot": 8, "restore_disk": 8, "delete_disk_snapshot": 8,
    "delete_vm_snapshot": 3, "get_operation": 12, "list_operations": 8, "watch_operation": 6,
    "watch_disk_snapshots": 4,
}
MUTATIONS = frozenset({"create_disk_snapshot", "create_vm_snapshot", "restore_disk", "delete_disk_snapshot",
                       "delete_vm_snapshot"})
TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED", "CONNECTION"})


def normalize_database_url(url: str) -> str:
    """``postgresql://`` -> ``postgresql+asyncpg://`` (the gateway's driver)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix):]
    return url


# ---------------------------------------------------------------- what the clients saw


@dataclass
class CallRecord:
    action: str
    door: str
    request_id: str = ""
    attempts: int = 0
    outcome: str = ""          # ok | refused | abandoned | gave_up
    code: str = ""             # the final error code (refused, abandoned, gave_up)
    operation_ids: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class Seen:
    """One look at an operation through the API."""

    version: int
    state: str
    phase: str
    update_time: str
    where: str                 # "grpc:GetOperation@gateway-a" ...


def _instant(timestamp: str) -> str:
    """One spelling per instant: gRPC's JSON writes ``.926Z``, REST ``.926000Z``."""
    try:
        return datetime.fromisoformat(timestamp).astimezone(UTC).isoformat()
    except ValueError:
        return timestamp


class Ledger:
    """Everything the clients were told: calls, acknowledged operation ids, and every
    version of every operation seen (for the regression and fork checks)."""

    def __init__(self) -> None:
        self.calls: list[CallRecord] = []
        self.attempts = 0
        self.errors: Counter[str] = Counter()
        self.seen: dict[str, list[Seen]] = {}
        self.acked: dict[str, set[str]] = {}     # request id -> operation ids answered for it
        self.stream_regressions: list[str] = []
        self.requested_names: set[str] = set()   # names the clients asked the gateway to create
        self.created_disk_snapshots: list[str] = []
        self.created_vm_snapshots: list[str] = []

    def saw(self, op: Obj, where: str) -> Seen | None:
        op_id = str(op.get("id") or "")
        if not op_id:
            return None
        seen = Seen(int(op.get("version") or 0), str(op.get("state") or ""), str(op.get("phase") or ""),
                    _instant(str(op.get("updateTime") or "")), where)
        self.seen.setdefault(op_id, []).append(seen)
        return seen

    def ack(self, record: CallRecord, operation_id: str) -> None:
        if not operation_id:
            return
        record.operation_ids.add(operation_id)
        if record.request_id:
            self.acked.setdefault(record.request_id, set()).add(operation_id)

    @property
    def acked_operations(self) -> set[str]:
        return {op for ops in self.acked.values() for op in ops}

    def idempotency_violations(self) -> dict[str, set[str]]:
        return {rid: ops for rid, ops in self.acked.items() if len(ops) > 1}

    def version_forks(self) -> list[str]:
        """An (operation, version) seen with two different contents: two writers stored the
        same version (a lost update)."""
        problems = []
        for op_id, looks in self.seen.items():
            by_version: dict[int, Seen] = {}
            for look in looks:
                if look.version <= 0:
                    continue
                first = by_version.setdefault(look.version, look)
                if (first.state, first.phase, first.update_time) != (look.state, look.phase, look.update_time):
                    problems.append(f"{op_id} v{look.version}: {first.state}/{first.phase}@{first.update_time} "
                                    f"({first.where}) vs {look.state}/{look.phase}@{look.update_time} ({look.where})")
                    break
        return problems


# ---------------------------------------------------------------- the two doors


@dataclass
class Answer:
    body: Obj | None = None
    code: str = ""
    reason: str = ""
    message: str = ""
    operation_id: str = ""     # an error naming the operation that holds the request

    @property
    def ok(self) -> bool:
        return not self.code

    @property
    def transient(self) -> bool:
        return self.code in TRANSIENT


def to_json(message: Message) -> Obj:
    return json_format.MessageToDict(message, always_print_fields_with_no_presence=True)


def _grpc_answer(err: grpc.aio.AioRpcError) -> Answer:
    code = err.code().name if err.code() is not None else "UNKNOWN"
    info = error_details_pb2.ErrorInfo()
    status = None
    with contextlib.suppress(Exception):
        status = rpc_status.from_call(err)
    found = False
    for packed in status.details if status is not None else []:
        if packed.Is(info.DESCRIPTOR):
            packed.Unpack(info)
            found = True
    if not found and code in {"UNKNOWN", "INTERNAL", "CANCELLED"}:
        code = "CONNECTION"  # the transport broke (no gateway status): a killed server
    return Answer(code=code, reason=info.reason, message=err.details() or "",
                  operation_id=str(info.metadata.get("operation_id", "")))


class Endpoint:
    """One gateway: a gRPC channel (its stubs) and a REST base URL."""

    def __init__(self, name: str, grpc_target: str, rest_url: str, token: str, session: aiohttp.ClientSession,
                 attempt_timeout: float) -> None:
        self.name = name
        self.rest_url = rest_url
        self.session = session
        self.timeout = attempt_timeout
        self.auth = (("authorization", f"Bearer {token}"),)
        self.headers = {"Authorization": f"Bearer {token}"}
        self.channel = grpc.aio.insecure_channel(grpc_target, options=GRPC_OPTIONS)
        self.snapshots = snapshot_service_pb2_grpc.SnapshotServiceStub(self.channel)
        self.restores = restore_service_pb2_grpc.RestoreServiceStub(self.channel)
        self.operations = operation_service_pb2_grpc.OperationServiceStub(self.channel)
        self.audit = audit_service_pb2_grpc.AuditServiceStub(self.channel)

    async def close(self) -> None:
        await self.channel.close()

    async def unary(self, method: Callable[..., Any], request: Message) -> Answer:
        try:
            reply = await method(request, metadata=self.auth, timeout=self.timeout)
        except grpc.aio.AioRpcError as err:
            return _grpc_answer(err)
        return Answer(body=to_json(reply))

    async def rest(self, method: str, path: str, body: Obj | None = None, *, request_id: str = "") -> Answer:
        headers = dict(self.headers)
        if request_id:
            headers["Idempotency-Key"] = request_id
        try:
            async with self.session.request(method, self.rest_url + path, json=body, headers=headers,
                                            timeout=aiohttp.ClientTimeout(total=self.timeout)) as resp:
                raw = await resp.read()
                status = resp.status
        except (aiohttp.ClientError, TimeoutError, ConnectionError) as exc:
            return Answer(code="CONNECTION", message=f"{type(exc).__name__}: {exc}")
        try:
            doc = json.loads(raw) if raw else {}
        except ValueError:
            doc = {}
        if status < 400:
            return Answer(body=doc if isinstance(doc, dict) else {"value": doc})
        if not isinstance(doc, dict) or "code" not in doc:
            return Answer(code="UNAVAILABLE" if status in (502, 503, 504) else f"HTTP_{status}",
                          message=raw[:200].decode(errors="replace"))
        metadata = doc.get("metadata") if isinstance(doc.get("metadata"), dict) else {}
        return Answer(code=str(doc["code"]), reason=str(doc.get("reason", "")), message=str(doc.get("detail", "")),
                      operation_id=str((metadata or {}).get("operation_id", "")))

    async def verify_audit_log(self, attempts: int = 5) -> Obj:
        for _ in range(attempts):
            answer = await self.unary(self.audit.VerifyAuditLog, audit_service_pb2.VerifyAuditLogRequest())
            if not answer.transient:
                break
            await asyncio.sleep(0.5)
        if not answer.ok or answer.body is None:
            return {"ok": False, "message": f"VerifyAuditLog failed: {answer.code} {answer.message}"}
        return answer.body


def _sse_data(text: str) -> tuple[list[Obj], str]:
    """Complete SSE messages' JSON data, and the unfinished rest."""
    messages: list[Obj] = []
    while "\n\n" in text:
        block, text = text.split("\n\n", 1)
        data = "\n".join(line[5:].lstrip() for line in block.splitlines() if line.startswith("data:"))
        if data:
            with contextlib.suppress(ValueError):
                messages.append(json.loads(data))
    return messages, text


# ---------------------------------------------------------------- the load


@dataclass
class LoadConfig:
    clients: int = 6
    abandon: float = 0.1          # probability to give a mutation up after a transient failure
    call_deadline: float = 120.0  # a call still failing after this long is given up (reported)
    attempt_timeout: float = 10.0
    watch_seconds: float = 1.5
    seed: int = 0
    run: str = ""                 # names and request ids carry it: chaos-<run>-...
    actions: dict[str, int] = field(default_factory=lambda: dict(ACTIONS))


class Load:
    """``clients`` workers calling random actions on the endpoints until stopped. A call's
    attempts go to the endpoints in turn (one endpoint: always it; several: the next one
    after a failure, as behind a load balancer)."""

    def __init__(self, endpoints: Sequence[Endpoint], config: LoadConfig, ledger: Ledger | None = None) -> None:
        self.endpoints = list(endpoints)
        self.config = config
        self.ledger = ledger or Ledger()
        self.stopping = asyncio.Event()
        self._numbers = itertools.count(1)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        for i in range(self.config.clients):
            rng = random.Random(self.config.seed * 1000 + i)
            door = "grpc" if i % 2 == 0 else "rest"
            self._tasks.append(asyncio.create_task(self._worker(i, rng, door), name=f"client-{i}"))

    async def stop(self) -> None:
        """Let every worker finish the call it is in (retries included), then return."""
        self.stopping.set()
        await asyncio.gather(*self._tasks)

    async def _worker(self, index: int, rng: random.Random, door: str) -> None:
        names, weights = zip(*self.config.actions.items(), strict=True)
        while not self.stopping.is_set():
            action = rng.choices(names, weights)[0]
            # Half the calls on the worker's own door, half on the other one.
            use = door if rng.random() < 0.5 else ("rest" if door == "grpc" else "grpc")
            try:
                await getattr(self, action)(rng, use, index)
            except Exception as exc:  # a harness bug must not stop the load silently
                self.ledger.errors[f"HARNESS {type(exc).__name__}: {exc}"] += 1
                await asyncio.sleep(0.1)

    def _name(self, kind: str) -> str:
        return f"chaos-{self.config.run}-{kind}{next(self._numbers)}"

    async def _call(self, record: CallRecord, rng: random.Random,
                    attempt: Callable[[Endpoint], Awaitable[Answer]]) -> Answer:
        """Attempts until an answer that is not transient; mutations keep their request id."""
        ledger = self.ledger
        ledger.calls.append(record)
        start = time.monotonic()
        first = rng.randrange(len(self.endpoints))
        backoff = 0.05
        while True:
            endpoint = self.endpoints[(first + record.attempts) % len(self.endpoints)]
            record.attempts += 1
            ledger.attempts += 1
            answer = await attempt(endpoint)
            where = f"{record.door}:{record.action}@{endpoint.name}"
            if answer.ok:
                record.outcome = "ok"
                if answer.body is not None and record.action in MUTATIONS:
                    ledger.ack(record, str(answer.body.get("id", "")))
                    ledger.saw(answer.body, where)
                return answer
            ledger.errors[f"{record.action} {answer.code} {answer.reason}".rstrip()] += 1
            ledger.ack(record, answer.operation_id)
            record.code = answer.code
            if not answer.transient:
                record.outcome = "refused"
                return answer
            if record.action in MUTATIONS and rng.random() < self.config.abandon:
                record.outcome = "abandoned"
                return answer
            if time.monotonic() - start > self.config.call_deadline:
                record.outcome = "gave_up"
                return answer
            await asyncio.sleep(backoff + rng.random() * backoff)
            backoff = min(backoff * 2, 0.5)

    # ------------------------------------------------------------ mutations

    async def create_disk_snapshot(self, rng: random.Random, door: str, _: int) -> None:
        name = self._name("ds")
        disk = rng.choice(DISKS)
        consistent = rng.random() < 0.5
        record = CallRecord("create_disk_snapshot", door, request_id=f"{name}-rq")
        self.ledger.requested_names.add(name)

        async def attempt(ep: Endpoint) -> Answer:
            if door == "grpc":
                return await ep.unary(ep.snapshots.CreateDiskSnapshot, snapshot_service_pb2.CreateDiskSnapshotRequest(
                    namespace=NS, name=name, virtual_disk_name=disk, required_consistency=consistent,
                    request_id=record.request_id))
            return await ep.rest("POST", f"/v1/namespaces/{NS}/disk-snapshots",
                                 {"name": name, "virtualDiskName": disk, "requiredConsistency": consistent},
                                 request_id=record.request_id)

        if (await self._call(record, rng, attempt)).ok:
            self.ledger.created_disk_snapshots.append(name)

    async def create_vm_snapshot(self, rng: random.Random, door: str, _: int) -> None:
        name = self._name("vms")
        vm = rng.choice(VMS)
        record = CallRecord("create_vm_snapshot", door, request_id=f"{name}-rq")
        self.ledger.requested_names.add(name)

        async def attempt(ep: Endpoint) -> Answer:
            if door == "grpc":
                return await ep.unary(ep.snapshots.CreateVirtualMachineSnapshot,
                                      snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
                                          namespace=NS, name=name, virtual_machine_name=vm,
                                          request_id=record.request_id))
            return await ep.rest("POST", f"/v1/namespaces/{NS}/vm-snapshots",
                                 {"name": name, "virtualMachineName": vm}, request_id=record.request_id)

        if (await self._call(record, rng, attempt)).ok:
            self.ledger.created_vm_snapshots.append(name)

    async def restore_disk(self, rng: random.Random, door: str, index: int) -> None:
        if not self.ledger.created_disk_snapshots:
            await self.create_disk_snapshot(rng, door, index)
            return
        source = rng.choice(self.ledger.created_disk_snapshots)
        name = self._name("rd")
        record = CallRecord("restore_disk", door, request_id=f"{name}-rq")
        self.ledger.requested_names.add(name)

        async def attempt(ep: Endpoint) -> Answer:
            if door == "grpc":
                return await ep.unary(ep.restores.RestoreDisk, restore_service_pb2.RestoreDiskRequest(
                    namespace=NS, name=name, disk_snapshot_name=source, request_id=record.request_id))
            return await ep.rest("POST", f"/v1/namespaces/{NS}/disks:restore",
                                 {"name": name, "diskSnapshotName": source}, request_id=record.request_id)

        await self._call(record, rng, attempt)

    async def _delete(self, rng: random.Random, door: str, names: list[str], action: str, path: str) -> None:
        if not names:
            return
        name = names.pop(rng.randrange(len(names)))
        record = CallRecord(action, door, request_id=f"{name}-del-{next(self._numbers)}")

        async def attempt(ep: Endpoint) -> Answer:
            if door == "rest":
                return await ep.rest("DELETE", f"/v1/namespaces/{NS}/{path}/{name}", request_id=record.request_id)
            if action == "delete_disk_snapshot":
                return await ep.unary(ep.snapshots.DeleteDiskSnapshot, snapshot_service_pb2.DeleteDiskSnapshotRequest(
                    namespace=NS, name=name, request_id=record.request_id))
            return await ep.unary(ep.snapshots.DeleteVirtualMachineSnapshot,
                                  snapshot_service_pb2.DeleteVirtualMachineSnapshotRequest(
                                      namespace=NS, name=name, request_id=record.request_id))

        answer = await self._call(record, rng, attempt)
        if answer.code == "FAILED_PRECONDITION":
            names.append(name)  # still in use: maybe later

    async def delete_disk_snapshot(self, rng: random.Random, door: str, _: int) -> None:
        await self._delete(rng, door, self.ledger.created_disk_snapshots, "delete_disk_snapshot", "disk-snapshots")

    async def delete_vm_snapshot(self, rng: random.Random, door: str, _: int) -> None:
        await self._delete(rng, door, self.ledger.created_vm_snapshots, "delete_vm_snapshot", "vm-snapshots")

    # ------------------------------------------------------------ reads

    def _some_operation(self, rng: random.Random) -> str:
        known = list(self.ledger.seen)
        return rng.choice(known) if known else ""

    async def get_operation(self, rng: random.Random, door: str, _: int) -> None:
        op_id = self._some_operation(rng)
        if not op_id:
            return
        record = CallRecord("get_operation", door)

        async def attempt(ep: Endpoint) -> Answer:
            if door == "grpc":
                return await ep.unary(ep.operations.GetOperation,
                                      operation_service_pb2.GetOperationRequest(operation_id=op_id))
            return await ep.rest("GET", f"/v1/operations/{op_id}")

        answer = await self._call(record, rng, attempt)
        if answer.ok and answer.body is not None:
            self.ledger.saw(answer.body, f"{door}:get_operation")

    async def list_operations(self, rng: random.Random, door: str, _: int) -> None:
        record = CallRecord("list_operations", door)

        async def attempt(ep: Endpoint) -> Answer:
            if door == "grpc":
                return await ep.unary(ep.operations.ListOperations,
                                      operation_service_pb2.ListOperationsRequest(page_size=20))
            return await ep.rest("GET", "/v1/operations?pageSize=20")

        answer = await self._call(record, rng, attempt)
        if answer.ok and answer.body is not None:
            for op in answer.body.get("operations") or answer.body.get("items") or []:
                self.ledger.saw(op, f"{door}:list_operations")

    async def watch_operation(self, rng: random.Random, door: str, _: int) -> None:
        """One watch stream, read for up to watch_seconds (not retried: a broken stream ends it)."""
        op_id = self._some_operation(rng)
        if not op_id:
            return
        record = CallRecord("watch_operation", door, attempts=1, outcome="ok")
        self.ledger.calls.append(record)
        self.ledger.attempts += 1
        endpoint = rng.choice(self.endpoints)
        where = f"{door}:watch_operation@{endpoint.name}"
        looks: list[Seen] = []
        try:
            async with asyncio.timeout(self.config.watch_seconds):
                async with contextlib.aclosing(self._operation_events(endpoint, door, op_id)) as events:
                    async for op in events:
                        seen = self.ledger.saw(op, where)
                        if seen is not None:
                            looks.append(seen)
        except TimeoutError:
            pass
        except (grpc.aio.AioRpcError, aiohttp.ClientError, ConnectionError) as exc:
            record.outcome, record.code = "broken", type(exc).__name__
            self.ledger.errors[f"watch_operation {type(exc).__name__}"] += 1
        for before, after in itertools.pairwise(looks):
            if after.version < before.version or (before.state in TERMINAL and after.state != before.state):
                self.ledger.stream_regressions.append(
                    f"{op_id} on one {where} stream: v{before.version} {before.state} then "
                    f"v{after.version} {after.state}")

    async def _operation_events(self, ep: Endpoint, door: str, op_id: str) -> AsyncGenerator[Obj, None]:
        if door == "grpc":
            stream = ep.operations.WatchOperation(operation_service_pb2.WatchOperationRequest(operation_id=op_id),
                                                  metadata=ep.auth)
            try:
                async for message in stream:
                    yield to_json(message)
            finally:
                stream.cancel()
            return
        headers = {**ep.headers, "Accept": "text/event-stream"}
        async with ep.session.get(f"{ep.rest_url}/v1/operations/{op_id}:watch", headers=headers) as resp:
            if resp.status != 200:
                return
            rest = ""
            while chunk := await resp.content.readany():
                messages, rest = _sse_data(rest + chunk.decode(errors="replace"))
                for message in messages:
                    yield message

    async def watch_disk_snapshots(self, rng: random.Random, door: str, _: int) -> None:
        record = CallRecord("watch_disk_snapshots", door, attempts=1, outcome="ok")
        self.ledger.calls.append(record)
        self.ledger.attempts += 1
        endpoint = rng.choice(self.endpoints)
        try:
            async with asyncio.timeout(self.config.watch_seconds):
                if door == "grpc":
                    stream = endpoint.snapshots.WatchDiskSnapshots(
                        snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace=NS), metadata=endpoint.auth)
                    try:
                        async for _event in stream:
                            pass
                    finally:
                        stream.cancel()
                else:
                    headers = {**endpoint.headers, "Accept": "text/event-stream"}
                    async with endpoint.session.get(f"{endpoint.rest_url}/v1/namespaces/{NS}/disk-snapshots:watch",
                                                    headers=headers) as resp:
                        while await resp.content.readany():
                            pass
        except TimeoutError:
            pass
        except (grpc.aio.AioRpcError, aiohttp.ClientError, ConnectionError) as exc:
            record.outcome, record.code = "broken", type(exc).__name__
            self.ledger.errors[f"watch_disk_snapshots {type(exc).__name__}"] += 1


@contextlib.asynccontextmanager
async def endpoints_for(gateways: Iterable[GatewayProcess], attempt_timeout: float = 10.0
                        ) -> AsyncIterator[list[Endpoint]]:
    """One Endpoint per gateway process, sharing one aiohttp session; closed on leaving."""
    connector = aiohttp.TCPConnector(limit=64, force_close=False)
    async with aiohttp.ClientSession(connector=connector) as session:
        endpoints = [Endpoint(g.name, g.grpc_target, g.rest_url, g.token, session, attempt_timeout)
                     for g in gateways]
        try:
            yield endpoints
        finally:
            for endpoint in endpoints:
                await endpoint.close()


# ---------------------------------------------------------------- what the database and cluster hold


@dataclass
class StoredOperation:
    id: str
    type: str
    state: str
    version: int
    request_id: str
    resource_kind: str
    resource_name: str
    end_time: Any


@dataclass
class Stored:
    operations: dict[str, StoredOperation]
    audit: list[dict[str, Any]]          # id, operation_id, prev_hash, hash, action, outcome
    head: dict[str, Any] | None          # audit_chain_head
    transitions: dict[str, list[str]]    # operation id -> states in seq order

    @property
    def unfinished(self) -> list[StoredOperation]:
        return [op for op in self.operations.values() if op.state in UNFINISHED]


async def read_database(url: str) -> Stored:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            ops = {
                str(r.id): StoredOperation(str(r.id), str(r.type), str(r.state), int(r.version),
                                           str(r.request_id or ""), str(r.resource_kind or ""),
                                           str(r.resource_name or ""), r.end_time)
                for r in await conn.execute(sa.select(
                    operations.c.id, operations.c.type, operations.c.state, operations.c.version,
                    operations.c.request_id, operations.c.resource_kind, operations.c.resource_name,
                    operations.c.end_time))}
            audit = [dict(r._mapping) for r in await conn.execute(
                sa.select(audit_events.c.id, audit_events.c.operation_id, audit_events.c.prev_hash,
                          audit_events.c.hash, audit_events.c.action, audit_events.c.outcome)
                .order_by(audit_events.c.id))]
            head_row = (await conn.execute(sa.select(audit_chain_head.c.last_id, audit_chain_head.c.last_hash)))\
                .first()
            transitions: dict[str, list[str]] = {}
            for r in await conn.execute(sa.select(operation_transitions.c.operation_id, operation_transitions.c.state)
                                        .order_by(operation_transitions.c.operation_id,
                                                  operation_transitions.c.seq)):
                transitions.setdefault(str(r.operation_id), []).append(str(r.state))
    finally:
        await engine.dispose()
    return Stored(ops, audit, dict(head_row._mapping) if head_row is not None else None, transitions)


async def count_unfinished(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(sa.select(sa.func.count()).select_from(operations)
                                           .where(operations.c.state.in_(UNFINISHED)))).scalar_one())
    finally:
        await engine.dispose()


async def list_written_resources(kubeconfig: Path) -> list[tuple[str, Obj]]:
    """Every object of every kind the gateway writes, in all namespaces: (kind, object)."""
    cfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    found: list[tuple[str, Obj]] = []
    async with kclient.ApiClient(cfg) as api:
        objects = kclient.CustomObjectsApi(api)
        for kind in WRITTEN_KINDS:
            try:
                listing = await objects.list_cluster_custom_object(kind.group, kind.version, kind.plural)
            except ApiException as exc:
                if exc.status == 404:
                    continue  # a kind this cluster does not serve
                raise
            found += [(kind.kind, item) for item in listing.get("items", [])]
    return found


async def delete_lease(kubeconfig: Path, namespace: str = LEASE_NAMESPACE, name: str = LEASE_NAME) -> None:
    cfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    async with kclient.ApiClient(cfg) as api:
        with contextlib.suppress(ApiException):
            await kclient.CoordinationV1Api(api).delete_namespaced_lease(name, namespace)


async def read_lease(kubeconfig: Path, namespace: str = LEASE_NAMESPACE, name: str = LEASE_NAME) -> Obj:
    cfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=str(kubeconfig), client_configuration=cfg)
    async with kclient.ApiClient(cfg) as api:
        try:
            lease = await kclient.CoordinationV1Api(api).read_namespaced_lease(name, namespace)
        except ApiException:
            return {}
        spec = lease.spec
        return {"holderIdentity": spec.holder_identity or "", "leaseTransitions": spec.lease_transitions or 0,
                "renewTime": str(spec.renew_time or "")}


# ---------------------------------------------------------------- the checks


def audit_chain_problems(stored: Stored) -> list[str]:
    """Structure of the chain as stored (the hashes themselves: VerifyAuditLog): ids 1..n
    with no gap or repeat, each prev_hash the previous row's hash, the head on the last."""
    problems: list[str] = []
    previous: dict[str, Any] | None = None
    for row in stored.audit:
        expected = 1 if previous is None else int(previous["id"]) + 1
        if int(row["id"]) != expected:
            problems.append(f"audit id {row['id']} follows {expected - 1} (not contiguous)")
        if previous is not None and row["prev_hash"] != previous["hash"]:
            problems.append(f"audit event {row['id']}: prev_hash {str(row['prev_hash'])[:12]} is not event "
                            f"{previous['id']}'s hash {str(previous['hash'])[:12]} (a fork)")
        previous = row
    if previous is not None:
        if stored.head is None:
            problems.append("the audit chain head row is missing")
        elif int(stored.head["last_id"]) != int(previous["id"]) or stored.head["last_hash"] != previous["hash"]:
            problems.append(f"the chain head ({stored.head['last_id']}) is not the last event ({previous['id']})")
    return problems


def version_regressions(ledger: Ledger, stored: Stored) -> list[str]:
    """An operation seen at version v (or in a terminal state) through the API whose stored
    row is older, or has left that terminal state; plus regressions within one stream."""
    problems = list(ledger.stream_regressions)
    for op_id, looks in ledger.seen.items():
        row = stored.operations.get(op_id)
        if row is None:
            continue  # a lost operation: counted there
        newest = max(looks, key=lambda s: s.version)
        if row.version < newest.version:
            problems.append(f"{op_id}: seen at v{newest.version} {newest.state} ({newest.where}), "
                            f"stored v{row.version} {row.state}")
        terminal = {s.state for s in looks if s.state in TERMINAL}
        if len(terminal) > 1 or (terminal and row.state not in terminal):
            problems.append(f"{op_id}: seen {sorted(terminal)}, stored {row.state}")
    return problems


def terminal_left(stored: Stored) -> list[str]:
    problems = []
    for op_id, states in stored.transitions.items():
        for before, after in itertools.pairwise(states):
            if before in TERMINAL and after != before:
                problems.append(f"{op_id}: transitions {' -> '.join(states)}")
                break
    return problems


def orphans(resources: Sequence[tuple[str, Obj]], stored: Stored, requested_names: set[str]) -> list[str]:
    found = []
    for kind, obj in resources:
        meta = obj.get("metadata") or {}
        labels = meta.get("labels") or {}
        annotations = meta.get("annotations") or {}
        op_id = str(labels.get(kinds.LABEL_OPERATION_ID, ""))
        where = f"{kind} {meta.get('namespace', '')}/{meta.get('name', '')}"
        if op_id:
            if op_id not in stored.operations:
                found.append(f"{where}: labelled with operation {op_id}, which the database does not hold")
            continue
        by_gateway = (labels.get(kinds.LABEL_MANAGED_BY) == kinds.MANAGED_BY_VALUE
                      or kinds.ANNOTATION_ACTOR in annotations or meta.get("name") in requested_names)
        if by_gateway and not meta.get("ownerReferences"):
            found.append(f"{where}: written by the gateway without an operation-id label")
    return found


@dataclass
class Figures:
    """The end-of-run figures: ``must_be_zero`` (name -> the offending items) and information."""

    must_be_zero: dict[str, list[str]]
    info: dict[str, str]

    @property
    def ok(self) -> bool:
        return not any(self.must_be_zero.values())

    def failures(self) -> dict[str, list[str]]:
        return {name: items for name, items in self.must_be_zero.items() if items}

    def table(self, examples: int = 5) -> str:
        width = max(len(k) for k in [*self.must_be_zero, *self.info]) + 2
        lines = ["", "must be zero".ljust(width) + "count  ", "-" * (width + 12)]
        for name, items in self.must_be_zero.items():
            lines.append(f"{name.ljust(width)}{len(items):>5}  {'ok' if not items else 'FAIL'}")
        lines += ["", "information", "-" * (width + 12)]
        lines += [f"{name.ljust(width)}{value}" for name, value in self.info.items()]
        for name, items in self.failures().items():
            lines += ["", f"{name} ({len(items)}), first {min(examples, len(items))}:"]
            lines += [f"  {item}" for item in items[:examples]]
        return "\n".join(lines)


def compute_figures(ledger: Ledger, stored: Stored, resources: Sequence[tuple[str, Obj]],
                    verification: Obj) -> Figures:
    audited = {str(row["operation_id"]) for row in stored.audit if row["operation_id"]}
    lost = sorted(op for op in ledger.acked_operations if op not in stored.operations)
    lost_details = []
    for op in lost:
        calls = [c for c in ledger.calls if op in c.operation_ids]
        lost_details.append(f"{op}: acknowledged to {', '.join(f'{c.door} {c.action} {c.request_id}' for c in calls)}")
    unknown = sorted(op for op in audited if op not in stored.operations)
    chain = audit_chain_problems(stored)
    if not verification.get("ok"):
        chain.insert(0, f"VerifyAuditLog: {verification.get('message', '')} "
                        f"(first bad id {verification.get('firstBadId', '-')})")
    must = {
        "lost operations": lost_details,
        "idempotency violations": [f"{rid}: {sorted(ops)}" for rid, ops in ledger.idempotency_violations().items()],
        "orphan resources": orphans(resources, stored, ledger.requested_names),
        "operations without audit": [f"{op.id} {op.type} {op.state} request {op.request_id or '-'}"
                                     for op in stored.operations.values() if op.id not in audited],
        "audit events, unknown op": [f"operation {op}" for op in unknown],
        "unfinished after settle": [f"{op.id} {op.type} {op.state} v{op.version} {op.resource_kind} "
                                    f"{op.resource_name}" for op in stored.unfinished],
        "version regressions": version_regressions(ledger, stored),
        "version forks": ledger.version_forks(),
        "terminal left": terminal_left(stored),
        "audit chain problems": chain,
    }
    outcomes = Counter(c.outcome for c in ledger.calls)
    by_state = Counter(op.state for op in stored.operations.values())
    by_type = Counter(op.type for op in stored.operations.values())
    abandoned = {c.request_id for c in ledger.calls if c.outcome == "abandoned" and c.request_id}
    abandoned_ops = [op for op in stored.operations.values() if op.request_id in abandoned]
    unaudited_abandoned = sum(1 for op in abandoned_ops if op.id not in audited)
    info = {
        "operations total": str(len(stored.operations)),
        "operations by state": ", ".join(f"{k} {v}" for k, v in sorted(by_state.items())),
        "operations by type": ", ".join(f"{k} {v}" for k, v in sorted(by_type.items())),
        "operations acknowledged": str(len(ledger.acked_operations)),
        "audit events": f"{len(stored.audit)} (VerifyAuditLog: {verification.get('message', '')})",
        "calls made": f"{len(ledger.calls)} ({', '.join(f'{k} {v}' for k, v in sorted(outcomes.items()))})",
        "attempts made": str(ledger.attempts),
        "abandoned mutations": f"{outcomes.get('abandoned', 0)} calls; {len(abandoned_ops)} of them left an operation "
                               f"({unaudited_abandoned} of those without audit)",
        "operation looks recorded": str(sum(len(v) for v in ledger.seen.values())),
        "resources in cluster": str(len(resources)),
        "errors clients saw (top 8)": "; ".join(f"{k} x{v}" for k, v in ledger.errors.most_common(8)) or "none",
    }
    return Figures(must, info)


# ---------------------------------------------------------------- the run


@dataclass
class ChaosConfig:
    kills: int = 50
    clients: int = 6
    min_delay: float = 0.2
    max_delay: float = 2.0
    database_url: str = ""       # "" = a SQLite file in the work directory
    reconcile_interval: float = 0.5
    step_delay: float = 0.05
    settle_timeout: float = 90.0
    abandon: float = 0.1
    seed: int = 0                # 0: a random seed (printed)
    keep_lease: bool = False
    workdir: Path | None = None  # None: a temporary directory, removed unless something failed
    pythonpath: Path | None = None
    attempt_timeout: float = 10.0
    call_deadline: float = 120.0
    quiet: bool = False


@dataclass
class ChaosReport:
    figures: Figures
    kills: int
    chaos_seconds: float
    total_seconds: float
    settle_seconds: float
    start_seconds: list[float]
    seed: int
    workdir: Path

    @property
    def ok(self) -> bool:
        return self.figures.ok

    def table(self) -> str:
        starts = sorted(self.start_seconds)
        median = starts[len(starts) // 2] if starts else 0.0
        extra = {
            "kills": f"{self.kills} in {self.chaos_seconds:.1f} s ({self.kills / max(self.chaos_seconds, 1e-9):.2f} "
                     f"kills/s)",
            "gateway start (spawn->listening)": f"median {median:.2f} s, max {max(starts, default=0.0):.2f} s",
            "settle": f"{self.settle_seconds:.1f} s",
            "time taken": f"{self.total_seconds:.1f} s",
            "seed": str(self.seed),
            "work directory": str(self.workdir),
        }
        figures = Figures(self.figures.must_be_zero, {**self.figures.info, **extra})
        return figures.table()


async def settle(database_url: str, limit: float, *, poll: float = 0.5) -> float:
    """Wait until no operation is PENDING or RUNNING (or ``limit`` seconds); the seconds waited."""
    start = time.monotonic()
    while time.monotonic() - start < limit:
        if await count_unfinished(database_url) == 0:
            break
        await asyncio.sleep(poll)
    return time.monotonic() - start


async def run_chaos(config: ChaosConfig) -> ChaosReport:
    seed = config.seed or random.randrange(1, 1 << 30)
    rng = random.Random(seed)
    say: Callable[[str], None] = (lambda _m: None) if config.quiet else (lambda m: print(m, flush=True))
    started = time.monotonic()
    own_dir = config.workdir is None
    workdir = Path(tempfile.mkdtemp(prefix="dvp-chaos-")) if config.workdir is None else config.workdir
    workdir.mkdir(parents=True, exist_ok=True)
    database_url = normalize_database_url(config.database_url) or f"sqlite+aiosqlite:///{workdir / 'gateway.db'}"
    env = child_env(config.pythonpath)
    report: ChaosReport | None = None
    try:
        with embedded_cluster_process(workdir, step_delay=config.step_delay, env=env) as cluster:
            gateway = GatewayProcess(workdir, cluster.kubeconfig, database_url=database_url, env=env,
                                     extra_args=["--reconcile-interval", str(config.reconcile_interval)])
            try:
                await gateway.start_async()
                say(f"cluster pid {cluster.pid}, gateway pid {gateway.pid} (gRPC {gateway.grpc_target}, REST "
                    f"{gateway.rest_url}), database {database_url.split(':')[0]}, seed {seed}, work dir {workdir}")
                report = await _chaos(config, seed, rng, gateway, cluster.kubeconfig, database_url, say, started)
            finally:
                gateway.stop()
    finally:
        if own_dir and report is not None and report.ok:
            shutil.rmtree(workdir, ignore_errors=True)
    assert report is not None
    return report


async def _chaos(config: ChaosConfig, seed: int, rng: random.Random, gateway: GatewayProcess, kubeconfig: Path,
                 database_url: str, say: Callable[[str], None], started: float) -> ChaosReport:
    load_config = LoadConfig(clients=config.clients, abandon=config.abandon, call_deadline=config.call_deadline,
                             attempt_timeout=config.attempt_timeout, seed=seed, run=f"{seed:x}")
    async with endpoints_for([gateway], config.attempt_timeout) as endpoints:
        load = Load(endpoints, load_config)
        load.start()
        chaos_start = time.monotonic()
        for kill in range(1, config.kills + 1):
            await asyncio.sleep(rng.uniform(config.min_delay, config.max_delay))
            gateway.kill()
            if not config.keep_lease:
                # The dead gateway cannot release its Lease; a new incarnation would wait out the
                # lease duration (15 s) before reconciling, i.e. never during the chaos.
                await delete_lease(kubeconfig)
            await gateway.start_async()
            if kill % 10 == 0 or kill == config.kills:
                say(f"  {kill} kills, {len(load.ledger.calls)} calls, {load.ledger.attempts} attempts, "
                    f"{time.monotonic() - chaos_start:.0f} s")
        chaos_seconds = time.monotonic() - chaos_start
        await asyncio.sleep(1.0)  # some calls against the last incarnation too
        await load.stop()
        say(f"load stopped; settling (up to {config.settle_timeout:.0f} s)")
        settle_seconds = await settle(database_url, config.settle_timeout)
        verification = await endpoints[0].verify_audit_log()
    stored = await read_database(database_url)
    resources = await list_written_resources(kubeconfig)
    figures = compute_figures(load.ledger, stored, resources, verification)
    return ChaosReport(figures, config.kills, chaos_seconds, time.monotonic() - started, settle_seconds,
                       gateway.start_seconds, seed, gateway.directory)


def parse_args(argv: Sequence[str] | None = None) -> ChaosConfig:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kills", type=int, default=50)
    parser.add_argument("--clients", type=int, default=6, help="concurrent clients (half start on each door)")
    parser.add_argument("--min-delay", type=float, default=0.2, help="seconds after listening before a kill")
    parser.add_argument("--max-delay", type=float, default=2.0)
    parser.add_argument("--database", "--database-url", dest="database_url", default="",
                        help="postgresql://... (an empty database); default a SQLite file in the work dir")
    parser.add_argument("--reconcile-interval", type=float, default=0.5, help="the gateway's --reconcile-interval")
    parser.add_argument("--step-delay", type=float, default=0.05, help="the embedded cluster's controller pace")
    parser.add_argument("--settle-timeout", type=float, default=90.0)
    parser.add_argument("--abandon", type=float, default=0.1,
                        help="probability that a client gives a mutation up after a broken call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep-lease", action="store_true",
                        help="leave the dead gateway's Lease (the next one waits the lease duration out)")
    parser.add_argument("--workdir", type=Path, default=None, help="keep logs and the SQLite file here")
    parser.add_argument("--pythonpath", type=Path, default=None,
                        help="run the processes on another copy of the sources (e.g. git archive HEAD)")
    args = parser.parse_args(argv)
    return ChaosConfig(kills=args.kills, clients=args.clients, min_delay=args.min_delay, max_delay=args.max_delay,
                       database_url=args.database_url, reconcile_interval=args.reconcile_interval,
                       step_delay=args.step_delay, settle_timeout=args.settle_timeout, abandon=args.abandon,
                       seed=args.seed, keep_lease=args.keep_lease, workdir=args.workdir, pythonpath=args.pythonpath)


async def main(argv: Sequence[str] | None = None) -> int:
    config = parse_args(argv)
    report = await run_chaos(config)
    print(report.table())
    print("\nOK: nothing lost, orphaned or unaudited" if report.ok
          else f"\nFAILED: {', '.join(report.figures.failures())} (logs in {report.workdir})")
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
