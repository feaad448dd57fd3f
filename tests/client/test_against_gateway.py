"""``GatewayClient`` against the real gateway (``gateway_server``: both listeners on real
sockets, the embedded cluster over real HTTP, SQLite): waiting, typed errors with their
details, watches, exports, the audit streams, idempotency and the config file."""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path

import grpc
import pytest
import yaml

from service.api.grpc_gen.dvp.snapshots.v1 import common_pb2, operation_pb2
from service.client import errors
from service.client.config import ENV_CONFIG, load_config
from service.client.gateway import GatewayClient, save_export
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.controllers.content import disk_content, disk_sha256
from tests.embedded_cluster.test_controllers_kit import kube
from tests.support.gateway import GatewayServer

pytestmark = pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
Operation = operation_pb2.Operation
WAIT = 20.0


async def test_create_and_wait_sees_every_version_to_succeeded(client: GatewayClient) -> None:
    seen: list[Operation] = []

    async def record(version: Operation) -> None:   # a coroutine function is awaited
        seen.append(version)

    created = await client.create_disk_snapshot(virtual_disk_name="linux-vm-root", name="waited",
                                                labels={"team": "db"})
    done = await client.wait(created.id, timeout=WAIT, on_update=record)
    assert done.state == Operation.SUCCEEDED and done.done and done.resource.name == "waited"
    assert seen[-1] == done
    assert [v.version for v in seen] == sorted({v.version for v in seen})
    assert (await client.get_disk_snapshot(name="waited")).labels["team"] == "db"
    # A done operation is answered at once, without a watch.
    assert await client.wait(done) is done


async def test_a_failed_operation_raises_operation_failed(client: GatewayClient) -> None:
    # A consistent snapshot of a VM without a guest agent waits in Pending; deleting the
    # snapshot under it fails the create.
    doomed = await client.create_disk_snapshot(virtual_disk_name="no-agent-vm-root", name="doomed")
    with pytest.raises(errors.WaitTimeout) as timed_out:
        await client.wait(doomed, timeout=0.3)
    assert timed_out.value.operation is not None and timed_out.value.operation.state == Operation.RUNNING

    waiting = asyncio.create_task(client.wait(doomed, timeout=WAIT))
    deleted = await client.delete_disk_snapshot(name="doomed")
    with pytest.raises(errors.OperationFailed) as failed:
        await waiting
    error = failed.value
    assert error.operation.id == doomed.id and error.operation.state == Operation.FAILED
    assert error.reason == error.error.reason == "RESOURCE_DELETED" and error.error.message
    assert isinstance(error, errors.GatewayError) and doomed.id in str(error)
    unchecked = await client.wait(doomed.id, check=False)
    assert unchecked.state == Operation.FAILED
    await client.wait(deleted, timeout=WAIT)


async def test_refusals_are_typed_errors_with_their_details(client: GatewayClient,
                                                            gateway_server: GatewayServer) -> None:
    with pytest.raises(errors.InvalidArgument) as bad_name:
        await client.create_disk_snapshot(virtual_disk_name="linux-vm-root", name="Bad_Name!")
    assert bad_name.value.code == grpc.StatusCode.INVALID_ARGUMENT
    assert "name" in [v.field for v in bad_name.value.field_violations]
    assert bad_name.value.request_id and bad_name.value.domain

    with pytest.raises(errors.NotFound) as missing:
        await client.get_disk_snapshot(name="no-such-snapshot")
    assert missing.value.reason and missing.value.retry_after is None

    first = await client.wait(await client.create_disk_snapshot(virtual_disk_name="linux-vm-root", name="taken"),
                              timeout=WAIT)
    assert first.state == Operation.SUCCEEDED
    with pytest.raises(errors.AlreadyExists):
        await client.create_disk_snapshot(virtual_disk_name="linux-vm-root", name="taken")

    # Raised from inside the stream's iteration, with the precondition that failed.
    with pytest.raises(errors.FailedPrecondition) as in_use:
        async for _ in client.export_disk(name="linux-vm-root"):
            pass
    assert in_use.value.reason == "DISK_IN_USE"
    assert "virtualmachines/linux-vm" in [v.subject for v in in_use.value.precondition_violations]

    target = gateway_server.grpc_target
    async with GatewayClient.connect(target, token=gateway_server.tokens["stranger"], namespace="demo") as stranger:
        with pytest.raises(errors.PermissionDenied) as denied:
            await stranger.list_disk_snapshots()
        assert denied.value.reason
    async with GatewayClient.connect(target, token="not-a-token", namespace="demo") as impostor:
        with pytest.raises(errors.Unauthenticated) as unknown:
            await impostor.get_disk_snapshot(name="taken")
        assert unknown.value.reason == "UNAUTHENTICATED"
        with pytest.raises(errors.Unauthenticated):
            async for _ in impostor.watch_disk_snapshots():
                pass
        assert "not-a-token" not in repr(impostor)


async def test_a_watch_receives_the_changes_of_a_new_snapshot(client: GatewayClient) -> None:
    await client.wait(await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="before"), timeout=WAIT)
    phases: list[tuple[int, str]] = []
    async with client.watch_disk_snapshots() as watch, asyncio.timeout(WAIT):
        assert (await anext(watch)).snapshot.name == "before"    # the listing: the watch is live
        await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="after")
        async for event in watch:
            if event.snapshot.name == "after":
                phases.append((event.type, event.snapshot.phase))
                if event.snapshot.phase == "Ready":
                    break
    assert phases[0][0] == common_pb2.ADDED and phases[-1] == (common_pb2.MODIFIED, "Ready"), phases


async def test_an_export_reassembles_the_disk_bytes(client: GatewayClient, gateway_server: GatewayServer,
                                                    tmp_path: Path) -> None:
    async with kube(gateway_server.cluster) as k:
        await k.create(R.VD, "demo", {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk",
                                      "metadata": {"name": "small-disk", "namespace": "demo"},
                                      "spec": {"persistentVolumeClaim": {"size": "3Mi"}}})
        disk = await k.wait_phase(R.VD, "demo", "small-disk", "Ready")
    seed, size = disk["metadata"]["annotations"][R.ANN_CONTENT_SEED], 3 << 20
    volume = bytearray()
    kinds: list[str] = []
    async for chunk in client.export_disk(name="small-disk"):
        kind = str(chunk.WhichOneof("chunk"))
        kinds.append(kind)
        if kind == "metadata":
            assert chunk.metadata.size == size and chunk.metadata.offset == 0 and chunk.metadata.operation_id
            export_id = chunk.metadata.operation_id
        elif kind == "data":
            assert chunk.data.offset == len(volume)
            volume += chunk.data.data
        elif kind == "hole":
            assert chunk.hole.offset == len(volume)
            volume += bytes(chunk.hole.length)
        else:
            summary = chunk.summary
    assert kinds[0] == "metadata" and kinds[-1] == "summary" and "hole" in kinds and "data" in kinds
    assert bytes(volume) == disk_content(seed, size, 0, size)
    assert hashlib.sha256(volume).hexdigest() == summary.sha256 == summary.range_sha256 == disk_sha256(seed, size)
    recorded = await client.wait(export_id, timeout=WAIT)
    assert recorded.type == Operation.EXPORT_DISK and recorded.transfer.sha256 == summary.sha256

    # The same through save_export, into a (sparse) file.
    path = tmp_path / "small-disk.img"
    with path.open("wb") as file:
        saved = await save_export(client.export_disk(name="small-disk"), file)
    assert saved.sha256 == summary.sha256 and path.read_bytes() == bytes(volume)


async def test_the_audit_log_exports_and_verifies_as_streams(client: GatewayClient,
                                                             gateway_server: GatewayServer) -> None:
    for name in ("audited-1", "audited-2"):
        await client.create_disk_snapshot(virtual_disk_name="spare-disk", name=name, required_consistency=False)
    async with GatewayClient.connect(gateway_server.grpc_target, token=gateway_server.tokens["auditor"]) as auditor:
        exported = [e async for e in auditor.export_audit_events(action="CreateDiskSnapshot", outcome="SUCCESS")]
        assert [e.resource.rsplit("/", 1)[-1] for e in exported] == ["audited-1", "audited-2"]
        assert [e.id for e in exported] == sorted(e.id for e in exported) and exported[0].hash
        progress = [p async for p in auditor.verify_audit_log_stream()]
        assert [p.checked for p in progress] == sorted(p.checked for p in progress)
        last = progress[-1]
        assert last.result.ok and last.result.checked == last.checked >= last.total >= exported[-1].id
        assert (await auditor.verify_audit_log()).ok
        with pytest.raises(errors.PermissionDenied):   # an auditor reads the audit log only
            await auditor.list_disk_snapshots("demo")


async def test_one_request_id_makes_one_operation(client: GatewayClient) -> None:
    first = await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="once", request_id="create-once")
    again = await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="once", request_id="create-once")
    assert again.id == first.id and first.request_id == "create-once"
    ops = [op async for op in client.iter_operations("demo", type="CREATE_DISK_SNAPSHOT")]
    assert [op.id for op in ops if op.target.name == "spare-disk"] == [first.id]
    with pytest.raises(errors.Aborted) as reused:   # the same key with another body
        await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="twice", request_id="create-once")
    assert reused.value.reason == "IDEMPOTENCY_KEY_REUSED"
    # Without a request id each call gets its own key.
    one = await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="key-1")
    two = await client.create_disk_snapshot(virtual_disk_name="spare-disk", name="key-2")
    assert one.request_id and two.request_id and one.request_id != two.request_id


async def test_from_config_reads_the_file_serve_writes(gateway_server: GatewayServer, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    token_file = tmp_path / "dev-token"
    token_file.write_text(gateway_server.token + "\n")
    config_file = tmp_path / "client.yaml"
    config_file.write_text(yaml.safe_dump({"grpc": gateway_server.grpc_target, "tls": False,
                                           "tokenFile": "dev-token", "namespace": "demo"}))
    async with GatewayClient.from_config(load_config(config_file)) as configured:
        assert configured.namespace == "demo" and gateway_server.token not in repr(configured)
        assert (await configured.list_disk_snapshots()).next_page_token == ""

    monkeypatch.setenv(ENV_CONFIG, str(config_file))
    async with GatewayClient.from_config() as found:
        vm = await found.create_virtual_machine_snapshot(virtual_machine_name="stopped-vm")
        assert vm.namespace == "demo"
        with pytest.raises(ValueError, match="no namespace"):
            await found.with_options(timeout=5).get_virtual_machine_snapshot("", name="x")

