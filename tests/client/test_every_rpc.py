"""Every RPC of the contract through ``GatewayClient`` against the real gateway, once; the
gateway's audit log then holds each method name, so none was skipped."""

from __future__ import annotations

import pytest

from service.api.grpc_gen.dvp.snapshots.v1 import common_pb2, export_service_pb2, operation_pb2, snapshot_service_pb2
from service.client.errors import OperationFailed
from service.client.gateway import GatewayClient, Stream
from tests.client.test_contract_coverage import RPCS

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Operation = operation_pb2.Operation
WAIT = 20.0


async def _export_kinds(stream: Stream[export_service_pb2.ExportChunk]) -> list[str]:
    return [str(chunk.WhichOneof("chunk")) async for chunk in stream]


async def test_every_rpc_reaches_the_gateway(client: GatewayClient) -> None:
    # SnapshotService: disk snapshots
    created = await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="spare-snap")
    assert created.type == Operation.CREATE_DISK_SNAPSHOT and created.request_id   # a generated idempotency key
    done = await client.wait(created, timeout=WAIT)
    assert done.state == Operation.SUCCEEDED and done.resource.name == "spare-snap"
    snapshot = await client.get_disk_snapshot(name="spare-snap")
    assert (snapshot.phase, snapshot.virtual_disk_name, snapshot.operation_id) == ("Ready", "spare-disk", created.id)
    assert [s.name for s in (await client.list_disk_snapshots(page_size=10)).disk_snapshots] == ["spare-snap"]
    async with client.watch_disk_snapshots(name="spare-snap") as watch:
        first = await anext(watch)
    assert first.type == common_pb2.ADDED and first.snapshot.name == "spare-snap"

    # SnapshotService: VM snapshots
    vm_snapshot_op = await client.wait(
        await client.create_virtual_machine_snapshot(virtual_machine_name="stopped-vm", name="stopped-snap",
                                                     keep_ip_address="NEVER"), timeout=WAIT)
    assert vm_snapshot_op.state == Operation.SUCCEEDED
    vm_snapshot = await client.get_virtual_machine_snapshot(name="stopped-snap")
    assert vm_snapshot.keep_ip_address == snapshot_service_pb2.VirtualMachineSnapshot.NEVER
    listed = await client.list_virtual_machine_snapshots()
    assert [s.name for s in listed.virtual_machine_snapshots] == ["stopped-snap"]
    async with client.watch_virtual_machine_snapshots() as vm_watch:
        assert (await anext(vm_watch)).snapshot.name == "stopped-snap"

    # RestoreService and CloneService (dry runs change nothing)
    restored = await client.wait(await client.restore_disk(name="restored-disk", disk_snapshot_name="spare-snap"),
                                 timeout=WAIT)
    assert restored.state == Operation.SUCCEEDED and restored.resource.name == "restored-disk"
    dry_restore = await client.restore_virtual_machine(virtual_machine_name="stopped-vm",
                                                       virtual_machine_snapshot_name="stopped-snap", mode="DRY_RUN")
    assert dry_restore.type == Operation.RESTORE_VM
    suffix = common_pb2.Customization(name_suffix="-copy")
    dry_clone = await client.clone_virtual_machine(virtual_machine_name="stopped-vm", mode=common_pb2.DRY_RUN,
                                                   customization=suffix)
    assert "stopped-vm-copy" in [r.name for r in dry_clone.results]
    dry_create = await client.create_virtual_machine_from_snapshot(virtual_machine_snapshot_name="stopped-snap",
                                                                   mode="DRY_RUN", customization=suffix)
    assert dry_create.type == Operation.CREATE_VM_FROM_SNAPSHOT
    for operation in (dry_restore, dry_clone, dry_create):
        assert (await client.wait(operation, timeout=WAIT, check=False)).done

    # ExportService (a small range of each)
    one_mib = export_service_pb2.ByteRange(offset=0, length=1 << 20)
    for stream in (client.export_disk(name="spare-disk", range=one_mib),
                   client.export_disk_snapshot(name="spare-snap", range=one_mib, ttl=60)):
        kinds = await _export_kinds(stream)
        assert kinds[0] == "metadata" and kinds[-1] == "summary" and len(kinds) > 2

    # OperationService
    assert (await client.get_operation(created.id)).state == Operation.SUCCEEDED
    succeeded = await client.list_operations("demo", state="SUCCEEDED", type=Operation.CREATE_DISK_SNAPSHOT)
    assert [o.id for o in succeeded.operations] == [created.id]
    versions = [v async for v in client.watch_operation(created.id)]
    assert versions[-1].done and versions[-1].version == done.version
    timeline = await client.get_operation_timeline(created.id)
    assert timeline.transitions[0].state == Operation.PENDING and timeline.transitions[-1].state == Operation.SUCCEEDED
    # A consistent snapshot of a VM without a guest agent waits in Pending: cancel it.
    pending = await client.create_disk_snapshot(virtual_disk_name="no-agent-vm-root", name="never-ready")
    cancelled = await client.cancel_operation(pending.id)
    assert cancelled.state == Operation.CANCELLED
    with pytest.raises(OperationFailed) as ended:
        await client.wait(pending.id, timeout=WAIT)
    assert ended.value.operation.state == Operation.CANCELLED

    # Deletes
    for deleted in (await client.delete_virtual_machine_snapshot(name="stopped-snap"),
                    await client.delete_disk_snapshot(name="spare-snap")):
        assert (await client.wait(deleted, timeout=WAIT)).state == Operation.SUCCEEDED

    # AuditService
    page = await client.list_audit_events(action="CreateDiskSnapshot", outcome="SUCCESS")
    assert created.id in [e.operation_id for e in page.audit_events]
    exported = [e.id async for e in client.export_audit_events(action="CreateDiskSnapshot")]
    assert exported == sorted(exported) and len(exported) >= len(page.audit_events)
    verdict = await client.verify_audit_log()
    assert verdict.ok, verdict.message
    progress = [p async for p in client.verify_audit_log_stream()]
    assert progress[-1].HasField("result") and progress[-1].result.ok

    audited = {e.action async for e in client.iter_audit_events(page_size=100) if e.protocol == "grpc"}
    assert {rpc.name for rpc in RPCS} <= audited
    assert {o.id async for o in client.iter_operations(page_size=2)} >= {created.id, pending.id, restored.id}
