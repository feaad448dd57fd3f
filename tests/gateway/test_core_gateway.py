"""The real core, end to end: the real store (SQLite and PostgreSQL), the real kube
client and watch hub, the real embedded cluster over HTTP. No mocks."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy import text

from service.cluster.client import KubeClient, connect_cluster
from service.cluster.kinds import LABEL_OPERATION_ID, VIRTUAL_DISK_SNAPSHOT, VIRTUAL_MACHINE
from service.cluster.lease import LeaderElector
from service.cluster.watch_hub import WatchHub
from service.core import contract as C
from service.core.auth import PolicyAuthorizer, StaticTokenAuthenticator, create_dev_token_file, sha256_hex
from service.core.domain import (
    AuditEvent,
    AuditFilter,
    AuditOutcome,
    Caller,
    Operation,
    OperationFilter,
    OperationState,
    OperationType,
    RequestContext,
    ResourceRef,
    WatchEventType,
)
from service.core.errors import ApiError, Code
from service.core.gateway import CoreSettings, Gateway
from service.core.idempotency import request_document, request_hash
from service.core.requests import (
    CreateDiskSnapshotRequest,
    DeleteDiskSnapshotRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
    ObjectKey,
    OperationKey,
    VerifyAuditLogRequest,
    WatchOperationRequest,
    WatchRequest,
)
from service.embedded_cluster.server import EmbeddedCluster
from service.store import Database

NS = "demo"
DISK = "linux-vm-root"
ALICE_TOKEN = "alice-token-for-tests-0001"
CAROL_TOKEN = "carol-auditor-token-0001"
FAST = CoreSettings(resync_interval=0.2, pending_grace=0.3, operation_poll_interval=0.2, ready_cache_seconds=0.0)
DONE_TIMEOUT = 20.0
POLL = 0.05

# Tests whose subject does not depend on the SQL backend run on SQLite only (the store's
# own tests and the backend-sensitive ones here cover PostgreSQL), to keep the suite fast.
sqlite_only = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)

POLICY = {"rules": [
    {"subjects": ["group:admins"], "namespaces": ["*"], "verbs": ["*"],
     "resources": ["disk-snapshots", "operations"]},
    {"subjects": ["alice"], "namespaces": [NS], "verbs": ["get", "list", "watch", "create"],
     "resources": ["disk-snapshots", "operations"]},
    {"subjects": ["group:auditors"], "namespaces": ["*"], "verbs": ["list", "verify", "export"],
     "resources": ["audit"]},
]}


@dataclass
class Core:
    gateway: Gateway
    db: Database
    cluster: EmbeddedCluster
    client: KubeClient
    dev_token: str

    def ctx(self, subject: str = "dev", groups: tuple[str, ...] = ("admins",)) -> RequestContext:
        return RequestContext(Caller(subject, groups), request_id=f"req-{uuid.uuid4().hex[:8]}", protocol="grpc")

    async def audit(self, actor: str | None = None, action: str | None = None) -> list[AuditEvent]:
        return [e async for e in self.db.audit.stream(AuditFilter(actor=actor, action=action))]


@pytest.fixture
async def kube(embedded_cluster: EmbeddedCluster, tmp_path: Path) -> AsyncIterator[KubeClient]:
    client = await connect_cluster(kubeconfig=embedded_cluster.write_kubeconfig(tmp_path / "kubeconfig"),
                                   request_timeout=5.0)
    try:
        yield client
    finally:
        await client.close()


def _gateway(db: Database, client: KubeClient, hub: WatchHub, tmp_path: Path,
             leader: LeaderElector | None = None) -> tuple[Gateway, str]:
    tokens = tmp_path / "tokens.yaml"
    dev_token = create_dev_token_file(tokens)
    doc = yaml.safe_load(tokens.read_text())
    doc["tokens"] += [{"subject": "alice", "groups": ["users"], "token_sha256": sha256_hex(ALICE_TOKEN)},
                      {"subject": "carol", "groups": ["auditors"], "token_sha256": sha256_hex(CAROL_TOKEN)}]
    tokens.write_text(yaml.safe_dump(doc))
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    gateway = Gateway(operations=db.operations, audit=db.audit, page_tokens=db.page_tokens, cluster=client, hub=hub,
                      authenticator=StaticTokenAuthenticator.from_file(tokens),
                      authorizer=PolicyAuthorizer.from_file(policy), settings=FAST, leader=leader)
    return gateway, dev_token


@pytest.fixture
async def core(database: Database, embedded_cluster: EmbeddedCluster, kube: KubeClient,
               tmp_path: Path) -> AsyncIterator[Core]:
    hub = WatchHub(kube)
    gateway, dev_token = _gateway(database, kube, hub, tmp_path)
    await gateway.start()
    try:
        yield Core(gateway, database, embedded_cluster, kube, dev_token)
    finally:
        await gateway.stop()
        await hub.close()


async def eventually(probe: Callable[[], Awaitable[bool]]) -> None:
    for _ in range(int(DONE_TIMEOUT / POLL)):
        if await probe():
            return
        await asyncio.sleep(POLL)
    raise AssertionError(f"not reached within {DONE_TIMEOUT} s")


async def wait_done(core: Core | Database, op_id: str) -> Operation:
    db = core.db if isinstance(core, Core) else core

    async def done() -> bool:
        op = await db.operations.get(op_id)
        return op is not None and op.done

    await eventually(done)
    op = await db.operations.get(op_id)
    assert op is not None
    return op


async def disk_of(core: Core, vm_name: str) -> str:
    vm = await core.client.get(VIRTUAL_MACHINE, NS, vm_name)
    refs = vm["spec"]["blockDeviceRefs"]
    return str(next(ref["name"] for ref in refs if ref["kind"] == "VirtualDisk"))


# ---------------------------------------------------------------- create


async def test_create_runs_to_succeeded_with_a_timeline(core: Core) -> None:
    ctx = core.ctx()
    op = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
        namespace=NS, virtual_disk_name=DISK, name="snap-1", labels={"team": "a"}))
    assert op.state in (OperationState.PENDING, OperationState.RUNNING, OperationState.SUCCEEDED)
    assert op.type is OperationType.CREATE_DISK_SNAPSHOT and op.actor == "dev"
    assert op.resource is not None and op.resource.name == "snap-1" and op.resource.uid
    assert op.target.name == DISK and op.target.uid

    done = await wait_done(core, op.id)
    assert done.state is OperationState.SUCCEEDED and done.phase == "Ready" and done.end_time is not None, (
        done.error, done.conditions)
    assert any(c.type == "VirtualDiskSnapshotReady" and c.status == "True" for c in done.conditions)

    timeline = await core.gateway.call(ctx, C.GET_OPERATION_TIMELINE, OperationKey(op.id))
    assert timeline[0].state is OperationState.PENDING
    assert timeline[-1].state is OperationState.SUCCEEDED and timeline[-1].phase == "Ready"
    assert [t.time for t in timeline] == sorted(t.time for t in timeline)
    assert [t.seq for t in timeline] == list(range(1, len(timeline) + 1))

    snap = await core.gateway.call(ctx, C.GET_DISK_SNAPSHOT, ObjectKey(NS, "snap-1"))
    assert snap.operation_id == op.id and snap.labels["team"] == "a" and snap.phase == "Ready"
    assert snap.labels[LABEL_OPERATION_ID] == op.id


@sqlite_only
async def test_generated_name_uses_the_disk_as_prefix(core: Core) -> None:
    op = await core.gateway.call(core.ctx(), C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
        namespace=NS, virtual_disk_name=DISK))
    assert op.resource is not None
    assert op.resource.name.startswith(f"{DISK}-") and len(op.resource.name) == len(DISK) + 6
    await core.client.get(VIRTUAL_DISK_SNAPSHOT, NS, op.resource.name)


async def test_idempotent_replay_and_conflict(core: Core) -> None:
    ctx = core.ctx()
    req = CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK, request_id="key-1")
    first = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, req)
    again = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, req)
    assert again.id == first.id
    listed = await core.client.list(VIRTUAL_DISK_SNAPSHOT, NS, label_selector=f"{LABEL_OPERATION_ID}={first.id}")
    assert len(listed.items) == 1
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
            namespace=NS, virtual_disk_name=DISK, request_id="key-1", required_consistency=False))
    assert caught.value.code is Code.ABORTED and caught.value.reason == "IDEMPOTENCY_KEY_REUSED"
    # The same key belongs to each caller separately.
    other = await core.gateway.call(core.ctx("root"), C.CREATE_DISK_SNAPSHOT, req)
    assert other.id != first.id


@sqlite_only
async def test_validation_reports_every_violation(core: Core) -> None:
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(core.ctx(), C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
            namespace=NS, virtual_disk_name="Bad_Disk", name="-x", labels={"k": "not valid!"}))
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [f.field for f in caught.value.field_violations] == ["virtual_disk_name", "name", "labels['k']"]
    events = await core.audit(action="CreateDiskSnapshot")
    assert [(e.outcome, e.code) for e in events] == [(AuditOutcome.ERROR, "INVALID_ARGUMENT")]


@sqlite_only
async def test_missing_disk_and_existing_name(core: Core) -> None:
    ctx = core.ctx()
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS,
                                                                               virtual_disk_name="no-such-disk"))
    assert caught.value.code is Code.NOT_FOUND and caught.value.metadata["field"] == "virtual_disk_name"
    await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK,
                                                                           name="taken"))
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(
            ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK,
                                                                               name="taken"))
    assert caught.value.code is Code.ALREADY_EXISTS
    page = await core.db.operations.list_page(OperationFilter(namespace=NS), 50, "")
    # The missing disk was a failed check: no operation. The taken name is the cluster's
    # answer to a recorded request: a FAILED operation (see the next test).
    assert page.items[0].state is OperationState.FAILED and len(page.items) == 2


async def _refusal_record(core: Core, error: ApiError) -> tuple[object, ...]:
    """How a refused duplicate create is recorded: the answer, its operation, its audit events."""
    op_id = error.metadata["operation_id"]
    op = await core.db.operations.get(op_id)
    assert op is not None
    events = [e for e in await core.audit(action="CreateDiskSnapshot") if e.operation_id == op_id]
    return (error.code, error.reason, op.state, op.error.code if op.error else None,
            [(e.outcome, e.code, e.reason) for e in events])


@sqlite_only
async def test_a_refused_duplicate_is_recorded_the_same_way_whether_it_raced_or_not(core: Core) -> None:
    ctx = core.ctx()

    def create(name: str) -> Any:
        return core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT,
                                 CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK, name=name))

    await create("first")
    with pytest.raises(ApiError) as sequential:
        await create("first")
    raced = await asyncio.gather(create("second"), create("second"), return_exceptions=True)
    [loser] = [r for r in raced if isinstance(r, ApiError)]
    assert await _refusal_record(core, sequential.value) == await _refusal_record(core, loser) == (
        Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS", OperationState.FAILED, "ALREADY_EXISTS",
        [(AuditOutcome.SUCCESS, "", ""), (AuditOutcome.ERROR, "ALREADY_EXISTS", "RESOURCE_ALREADY_EXISTS")])


async def test_a_replay_racing_its_own_slow_request_adopts_the_resource(core: Core) -> None:
    """The reconciler replays a PENDING operation whose request looks lost. If the request
    was only slow and wrote the resource meanwhile, the replay's name check finds that
    resource: it is ours (labelled with the operation), so the operation is not failed."""
    disk = await disk_of(core, "no-agent-vm")  # its snapshot stays Pending: the operation stays RUNNING
    op = await core.gateway.call(core.ctx(), C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
        namespace=NS, virtual_disk_name=disk, name="raced"))
    assert op.state is OperationState.RUNNING and op.resource is not None and op.resource.uid
    # What the reconciler read before the request's update landed: PENDING, nothing written yet.
    stale = replace(op, state=OperationState.PENDING, resource=replace(op.resource, uid=""),
                    create_time=op.create_time - timedelta(minutes=5))
    await core.gateway.reconciler.reconcile(stale)
    current = await core.db.operations.get(op.id)
    assert current is not None and current.state is OperationState.RUNNING, (current.state, current.error)


@sqlite_only
async def test_consistency_warning_for_a_vm_without_agent(core: Core) -> None:
    ctx = core.ctx()
    disk = await disk_of(core, "no-agent-vm")

    async def vm_running() -> bool:
        vm = await core.client.get(VIRTUAL_MACHINE, NS, "no-agent-vm")
        return bool(vm.get("status", {}).get("phase") == "Running")

    await eventually(vm_running)
    op = await core.gateway.call(
        ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=disk))
    assert any("guest agent" in w for w in op.warnings)

    async def inconsistent() -> bool:
        current = await core.db.operations.get(op.id)
        return current is not None and any(c.reason == "PotentiallyInconsistent" for c in current.conditions)

    await eventually(inconsistent)
    current = await core.gateway.call(ctx, C.GET_OPERATION, OperationKey(op.id))
    assert current.state is OperationState.RUNNING and current.phase == "Pending"
    assert any("PotentiallyInconsistent" in w for w in current.warnings)

    relaxed = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
        namespace=NS, virtual_disk_name=disk, required_consistency=False))
    assert relaxed.warnings == []
    done = await wait_done(core, relaxed.id)
    assert done.state is OperationState.SUCCEEDED


@sqlite_only
async def test_resource_deleted_behind_our_back_fails_the_operation(core: Core) -> None:
    ctx = core.ctx()
    disk = await disk_of(core, "no-agent-vm")  # a consistent snapshot of it waits in Pending
    op = await core.gateway.call(
        ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=disk,
                                                                                name="doomed"))
    await core.client.delete(VIRTUAL_DISK_SNAPSHOT, NS, "doomed")
    done = await wait_done(core, op.id)
    assert done.state is OperationState.FAILED
    assert done.error is not None and done.error.reason == "RESOURCE_DELETED"


@sqlite_only
async def test_cluster_refusal_fails_the_recorded_operation(core: Core) -> None:
    core.cluster.faults.fail(1.0, code=403, verb="create", resource="virtualdisksnapshots")
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(core.ctx(), C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
            namespace=NS, virtual_disk_name=DISK, name="refused"))
    assert caught.value.code is Code.PERMISSION_DENIED
    page = await core.db.operations.list_page(OperationFilter(namespace=NS), 50, "")
    [op] = page.items
    assert op.state is OperationState.FAILED and op.error is not None and op.error.code == "PERMISSION_DENIED"
    assert [t.state for t in await core.db.operations.transitions(op.id)] == [
        OperationState.PENDING, OperationState.FAILED]
    # The cluster refused the gateway, not the policy the caller: an ERROR, not a DENIED.
    # Two events: the acceptance, committed with the operation row before the write, then
    # how the call ended.
    accepted, ended = await core.audit(action="CreateDiskSnapshot")
    assert (accepted.outcome, accepted.operation_id, accepted.resource) == (
        AuditOutcome.SUCCESS, op.id, "disk-snapshots/refused")
    assert ended.id == accepted.id + 1
    assert (ended.outcome, ended.reason, ended.operation_id) == (AuditOutcome.ERROR, "CLUSTER_FORBIDDEN", op.id)


# ---------------------------------------------------------------- recovery and outages


async def test_write_ahead_crash_recovery(database: Database, kube: KubeClient, tmp_path: Path) -> None:
    """An operation committed PENDING by a process that died before the create: a new
    gateway's reconciler writes the resource from the stored request and completes it."""
    req = CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK, request_id="crash-1")
    orphan = Operation(
        id=str(uuid.uuid4()), type=OperationType.CREATE_DISK_SNAPSHOT, namespace=NS,
        target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", DISK, NS),
        actor="dev", request_hash=request_hash(req), request_id="crash-1", request=request_document(req),
        resource=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot", "recovered", NS))
    await database.operations.create(orphan)
    hub = WatchHub(kube)
    gateway, _ = _gateway(database, kube, hub, tmp_path)
    await gateway.start()
    try:
        done = await wait_done(database, orphan.id)
        assert done.state is OperationState.SUCCEEDED
        obj = await kube.get(VIRTUAL_DISK_SNAPSHOT, NS, "recovered")
        assert obj["metadata"]["labels"][LABEL_OPERATION_ID] == orphan.id
        assert done.resource is not None and done.resource.uid == obj["metadata"]["uid"]
        # A replay of the crashed request finds the recovered operation.
        ctx = RequestContext(Caller("dev", ("admins",)), request_id="r1", protocol="rest")
        replay = await gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, req)
        assert replay.id == orphan.id
    finally:
        await gateway.stop()
        await hub.close()


@sqlite_only
async def test_reconciler_acts_only_while_leader(database: Database, kube: KubeClient, tmp_path: Path) -> None:
    """Two replicas: the one without the Lease leaves the orphan alone; when the holder
    steps down, it takes over and the first resync completes the operation."""
    holder = LeaderElector(kube, NS, "gateway-test", "replica-a", lease_seconds=5, retry_period=0.1)
    follower = LeaderElector(kube, NS, "gateway-test", "replica-b", lease_seconds=5, retry_period=0.1)
    holder_task = asyncio.create_task(holder.run())
    await asyncio.wait_for(holder.wait_until_leader(), 5)
    follower_task = asyncio.create_task(follower.run())
    req = CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK, name="led")
    orphan = Operation(
        id=str(uuid.uuid4()), type=OperationType.CREATE_DISK_SNAPSHOT, namespace=NS,
        target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", DISK, NS),
        actor="dev", request_hash=request_hash(req), request=request_document(req),
        resource=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDiskSnapshot", "led", NS))
    await database.operations.create(orphan)
    hub = WatchHub(kube)
    gateway, _ = _gateway(database, kube, hub, tmp_path, leader=follower)
    await gateway.start()
    try:
        await asyncio.sleep(1.0)  # several resync periods past the grace
        waiting = await database.operations.get(orphan.id)
        assert waiting is not None and waiting.state is OperationState.PENDING
        holder_task.cancel()  # steps down and releases the Lease
        await asyncio.gather(holder_task, return_exceptions=True)
        done = await wait_done(database, orphan.id)
        assert done.state is OperationState.SUCCEEDED and follower.is_leader
    finally:
        await gateway.stop()
        await hub.close()
        follower_task.cancel()
        await asyncio.gather(follower_task, return_exceptions=True)


@sqlite_only
async def test_export_audit_events(core: Core) -> None:
    carol = core.ctx("carol", ("auditors",))
    with pytest.raises(ApiError):
        await core.gateway.call(core.ctx(), C.GET_DISK_SNAPSHOT, ObjectKey(NS, "missing"))
    exported = [e async for e in core.gateway.stream(carol, C.EXPORT_AUDIT_EVENTS, ListAuditEventsRequest(actor="dev"))]
    assert [(e.action, e.code) for e in exported] == [("GetDiskSnapshot", "NOT_FOUND")]
    with pytest.raises(ApiError) as caught:
        await anext(core.gateway.stream(core.ctx(), C.EXPORT_AUDIT_EVENTS, ListAuditEventsRequest()))
    assert caught.value.code is Code.PERMISSION_DENIED
    with pytest.raises(ApiError) as caught:
        await anext(core.gateway.stream(carol, C.EXPORT_AUDIT_EVENTS, ListAuditEventsRequest(since="last tuesday")))
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert [f.field for f in caught.value.field_violations] == ["since"]


@sqlite_only
async def test_cluster_down_records_and_retries(core: Core) -> None:
    ctx = core.ctx()
    core.cluster.faults.fail(1.0, code=503)
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
            namespace=NS, virtual_disk_name=DISK, name="during-outage", request_id="outage-1"))
    error = caught.value
    assert error.code is Code.UNAVAILABLE and error.retry_after_seconds is not None
    op_id = error.metadata["operation_id"]
    recorded = await core.gateway.call(ctx, C.GET_OPERATION, OperationKey(op_id))
    assert recorded.state is OperationState.PENDING and recorded.warnings
    events = await core.audit(action="CreateDiskSnapshot")
    assert [(e.outcome, e.code, e.operation_id) for e in events] == [
        (AuditOutcome.SUCCESS, "", op_id), (AuditOutcome.ERROR, "UNAVAILABLE", op_id)]
    assert (await core.gateway.check_ready())["cluster"] is False

    core.cluster.faults.clear()
    done = await wait_done(core, op_id)
    assert done.state is OperationState.SUCCEEDED
    assert (await core.gateway.check_ready()) == {"database": True, "cluster": True}


# ---------------------------------------------------------------- authorization and audit


@sqlite_only
async def test_authentication(core: Core) -> None:
    caller = await core.gateway.authenticate(f"Bearer {core.dev_token}", action="GetOperation", protocol="rest")
    assert caller == Caller("dev", ("admins", "auditors"))
    for header in (None, "Bearer wrong-token", f"Basic {core.dev_token}"):
        with pytest.raises(ApiError) as caught:
            await core.gateway.authenticate(header, action="ListDiskSnapshots", protocol="rest", request_id="r9")
        assert caught.value.code is Code.UNAUTHENTICATED
    events = await core.audit(action="ListDiskSnapshots")
    assert [(e.outcome, e.request_id) for e in events] == [(AuditOutcome.DENIED, "r9")] * 3
    assert all(core.dev_token not in str(e) for e in await core.audit())


async def test_denied_calls_are_audited(core: Core) -> None:
    alice = core.ctx("alice", ("users",))
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(alice, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace="prod",
                                                                                 virtual_disk_name=DISK))
    assert caught.value.code is Code.PERMISSION_DENIED
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(alice, C.LIST_AUDIT_EVENTS, ListAuditEventsRequest())
    assert caught.value.code is Code.PERMISSION_DENIED
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(core.ctx("root", ("admins",)), C.VERIFY_AUDIT_LOG, VerifyAuditLogRequest())
    assert caught.value.code is Code.PERMISSION_DENIED

    carol = core.ctx("carol", ("auditors",))
    with pytest.raises(ApiError):
        await core.gateway.call(carol, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS,
                                                                                 virtual_disk_name=DISK))
    page = await core.gateway.call(carol, C.LIST_AUDIT_EVENTS, ListAuditEventsRequest(outcome=AuditOutcome.DENIED))
    assert [(e.actor, e.action, e.namespace) for e in page.items] == [
        ("alice", "CreateDiskSnapshot", "prod"), ("alice", "ListAuditEvents", ""),
        ("root", "VerifyAuditLog", ""), ("carol", "CreateDiskSnapshot", NS)]
    assert all(e.code == "PERMISSION_DENIED" for e in page.items)
    assert (await core.gateway.call(carol, C.VERIFY_AUDIT_LOG, VerifyAuditLogRequest())).ok


@sqlite_only
async def test_hidden_operations_are_not_found(core: Core) -> None:
    admin_op = await core.gateway.call(core.ctx(), C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
        namespace=NS, virtual_disk_name=DISK))
    outsider = core.ctx("mallory", ("users",))
    for unknown in (admin_op.id, str(uuid.uuid4())):
        with pytest.raises(ApiError) as caught:
            await core.gateway.call(outsider, C.GET_OPERATION, OperationKey(unknown))
        assert caught.value.code is Code.NOT_FOUND
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(outsider, C.GET_OPERATION, OperationKey("not-a-uuid"))
    assert caught.value.code is Code.INVALID_ARGUMENT
    events = await core.audit(action="GetOperation", actor="mallory")
    assert [e.outcome for e in events] == [
        AuditOutcome.DENIED, AuditOutcome.ERROR, AuditOutcome.ERROR]
    alice = core.ctx("alice", ("users",))
    assert (await core.gateway.call(alice, C.GET_OPERATION, OperationKey(admin_op.id))).id == admin_op.id
    with pytest.raises(ApiError) as caught:  # alice may not list across namespaces
        await core.gateway.call(alice, C.LIST_OPERATIONS, ListOperationsRequest())
    assert caught.value.code is Code.PERMISSION_DENIED
    page = await core.gateway.call(alice, C.LIST_OPERATIONS, ListOperationsRequest(namespace=NS))
    assert [o.id for o in page.items] == [admin_op.id]


async def test_every_call_is_audited(core: Core) -> None:
    ctx = core.ctx()
    op = await core.gateway.call(
        ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK,
                                                                                name="audited"))
    await core.gateway.call(ctx, C.GET_DISK_SNAPSHOT, ObjectKey(NS, "audited"))
    await core.gateway.call(ctx, C.LIST_DISK_SNAPSHOTS, ListRequest(namespace=NS))
    await core.gateway.call(ctx, C.GET_OPERATION, OperationKey(op.id))
    await core.gateway.call(ctx, C.LIST_OPERATIONS, ListOperationsRequest(namespace=NS))
    await core.gateway.call(ctx, C.GET_OPERATION_TIMELINE, OperationKey(op.id))
    # Not served by this core (no block reader), and asked cluster-wide: authorized first,
    # so the answer is the denial, not which methods exist.
    with pytest.raises(ApiError) as refused:
        await anext(core.gateway.stream(ctx, C.EXPORT_DISK, None))
    assert refused.value.code is Code.PERMISSION_DENIED
    events = await core.audit(actor="dev")
    assert [(e.action, e.outcome) for e in events] == [
        ("CreateDiskSnapshot", AuditOutcome.SUCCESS), ("GetDiskSnapshot", AuditOutcome.SUCCESS),
        ("ListDiskSnapshots", AuditOutcome.SUCCESS), ("GetOperation", AuditOutcome.SUCCESS),
        ("ListOperations", AuditOutcome.SUCCESS), ("GetOperationTimeline", AuditOutcome.SUCCESS),
        ("ExportDisk", AuditOutcome.DENIED)]
    create = events[0]
    assert create.resource == "disk-snapshots/audited" and create.operation_id == op.id
    assert create.protocol == "grpc" and create.request_id == ctx.request_id


# ---------------------------------------------------------------- list, delete, watch


@sqlite_only
async def test_list_pages_with_opaque_tokens(core: Core) -> None:
    ctx = core.ctx()
    for index in range(3):
        await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
            namespace=NS, virtual_disk_name=DISK, name=f"page-{index}", labels={"set": "paging"}))
    names: list[str] = []
    token = ""
    while True:
        page = await core.gateway.call(
            ctx, C.LIST_DISK_SNAPSHOTS, ListRequest(namespace=NS, page_size=2, page_token=token,
                                                                       label_selector="set=paging"))
        names += [s.name for s in page.items]
        token = page.next_page_token
        if not token:
            break
    assert sorted(names) == ["page-0", "page-1", "page-2"]
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(ctx, C.LIST_DISK_SNAPSHOTS, ListRequest(namespace=NS, page_token="garbage"))
    assert caught.value.code is Code.INVALID_ARGUMENT


async def test_delete_operation(core: Core) -> None:
    ctx = core.ctx()
    created = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(
        namespace=NS, virtual_disk_name=DISK, name="to-delete"))
    await wait_done(core, created.id)
    op = await core.gateway.call(ctx, C.DELETE_DISK_SNAPSHOT, DeleteDiskSnapshotRequest(namespace=NS, name="to-delete",
                                                                                request_id="del-1"))
    assert op.type is OperationType.DELETE_DISK_SNAPSHOT and op.target.name == "to-delete"
    done = await wait_done(core, op.id)
    assert done.state is OperationState.SUCCEEDED
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(ctx, C.GET_DISK_SNAPSHOT, ObjectKey(NS, "to-delete"))
    assert caught.value.code is Code.NOT_FOUND
    # A replay returns the same operation; deleting again (new key) is NOT_FOUND.
    replay = await core.gateway.call(
        ctx, C.DELETE_DISK_SNAPSHOT, DeleteDiskSnapshotRequest(namespace=NS, name="to-delete",
                                                                                    request_id="del-1"))
    assert replay.id == op.id
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(ctx, C.DELETE_DISK_SNAPSHOT, DeleteDiskSnapshotRequest(namespace=NS, name="to-delete"))
    assert caught.value.code is Code.NOT_FOUND
    # The create operation stays SUCCEEDED: deleting a finished snapshot does not rewrite history.
    assert (await core.gateway.call(ctx, C.GET_OPERATION, OperationKey(created.id))).state is OperationState.SUCCEEDED


async def test_watch_operation_yields_versions_until_done(core: Core) -> None:
    ctx = core.ctx()
    op = await core.gateway.call(
        ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK))
    seen: list[Operation] = []
    async with asyncio.timeout(DONE_TIMEOUT):
        async for version in core.gateway.stream(ctx, C.WATCH_OPERATION, WatchOperationRequest(op.id)):
            seen.append(version)
    assert seen[-1].state is OperationState.SUCCEEDED
    versions = [v.version for v in seen]
    assert versions == sorted(set(versions))
    # Resuming after the last version yields nothing more: the operation is done.
    rest = [v async for v in core.gateway.stream(
        ctx, C.WATCH_OPERATION, WatchOperationRequest(op.id, after_version=seen[-1].version))]
    assert rest == []
    with pytest.raises(ApiError) as caught:
        await anext(core.gateway.stream(core.ctx("mallory", ()), C.WATCH_OPERATION, WatchOperationRequest(op.id)))
    assert caught.value.code is Code.NOT_FOUND
    with pytest.raises(ApiError) as caught:
        await anext(core.gateway.stream(ctx, C.WATCH_OPERATION, WatchOperationRequest(op.id, after_version=-1)))
    assert [f.field for f in caught.value.field_violations] == ["after_version"]


@sqlite_only
async def test_watch_disk_snapshots(core: Core) -> None:
    ctx = core.ctx()
    await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK,
                                                                           name="watched-1"))
    stream = core.gateway.stream(ctx, C.WATCH_DISK_SNAPSHOTS, WatchRequest(NS))
    first = await asyncio.wait_for(anext(stream), DONE_TIMEOUT)
    assert first.type is WatchEventType.ADDED and first.snapshot.name == "watched-1"
    await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK,
                                                                           name="watched-2"))
    async with asyncio.timeout(DONE_TIMEOUT):
        async for event in stream:
            if event.snapshot.name == "watched-2" and event.snapshot.phase == "Ready":
                break
    await stream.aclose()
    with pytest.raises(ApiError) as caught:
        await anext(core.gateway.stream(core.ctx("alice", ()), C.WATCH_DISK_SNAPSHOTS, WatchRequest("prod")))
    assert caught.value.code is Code.PERMISSION_DENIED
    events = await core.audit(action="WatchDiskSnapshots")
    assert [e.outcome for e in events] == [AuditOutcome.SUCCESS, AuditOutcome.DENIED]


async def test_audit_write_failure_fails_the_call(core: Core) -> None:
    async with core.db.engine.begin() as conn:  # the audit log is gone: calls must not run unrecorded
        await conn.execute(text("DROP TABLE audit_events"))
    with pytest.raises(ApiError) as caught:
        await core.gateway.call(core.ctx(), C.GET_DISK_SNAPSHOT, ObjectKey(NS, "anything"))
    assert caught.value.code is Code.UNAVAILABLE and caught.value.reason == "AUDIT_UNAVAILABLE"


@sqlite_only
async def test_a_replay_says_when_its_resource_no_longer_exists(core: Core) -> None:
    """After a restart of a cluster that lost the snapshot (or someone deleted it), the
    README's replayed create must not pass the old SUCCEEDED operation off as the answer."""
    ctx = core.ctx()
    request = CreateDiskSnapshotRequest(namespace=NS, virtual_disk_name=DISK, name="replayed", request_id="readme-1")
    op = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, request)
    done = await wait_done(core, op.id)
    assert done.state is OperationState.SUCCEEDED
    replay = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, request)
    assert replay.id == op.id and replay.warnings == done.warnings  # still there: the plain record

    resource = "virtualdisksnapshots.virtualization.deckhouse.io"
    await core.cluster.store.delete(resource, NS, "replayed")

    async def gone() -> bool:
        return core.cluster.store.get(resource, NS, "replayed") is None

    await eventually(gone)
    replay = await core.gateway.call(ctx, C.CREATE_DISK_SNAPSHOT, request)
    assert replay.id == op.id and replay.state is OperationState.SUCCEEDED
    assert replay.warnings[-1].startswith("VirtualDiskSnapshot 'replayed' created by this operation no longer exists")
    stored = await core.db.operations.get(op.id)
    assert stored is not None and stored.warnings == done.warnings  # the record itself is final
