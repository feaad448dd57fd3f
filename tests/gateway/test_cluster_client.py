"""KubeClient against the real embedded cluster over HTTP (kubernetes-asyncio end to end)."""

from __future__ import annotations

import asyncio
import socket
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.cluster.client import KubeClient, connect_cluster
from service.cluster.kinds import (
    LABEL_OPERATION_ID,
    VIRTUAL_DISK,
    VIRTUAL_DISK_SNAPSHOT,
    VIRTUAL_MACHINE_OPERATION,
)
from service.cluster.translate import disk_snapshot_from_resource, disk_snapshot_manifest
from service.core.errors import ApiError, Code
from service.core.ports import ResourceKind

pytestmark = pytest.mark.timeout(60)

MISSING_KIND = ResourceKind("deckhouse.io", "v1alpha1", "nonexistentexports", "NonexistentExport")


def snapshot_body(name: str = "", operation_id: str = "op-1", **kwargs: Any) -> dict[str, Any]:
    return disk_snapshot_manifest(
        namespace="demo", name=name, generate_name="" if name else "gw-test-", virtual_disk_name="linux-vm-root",
        required_consistency=False, labels=kwargs.get("labels", {}), annotations={}, operation_id=operation_id,
        actor="alice")


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def write_kubeconfig(cluster: Any, path: Path, **changes: Any) -> Path:
    config = cluster.kubeconfig(token=changes.get("token"))
    if "server" in changes:
        for entry in config["clusters"]:
            entry["cluster"]["server"] = changes["server"]
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture
async def kube(embedded_cluster: Any, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = tmp_path / "kubeconfig"
    embedded_cluster.write_kubeconfig(path)
    client = await connect_cluster(kubeconfig=path, request_timeout=5.0, retry_base_delay=0.02)
    yield client
    embedded_cluster.faults.clear()
    await client.close()


async def wait_gone(kube: KubeClient, kind: ResourceKind, namespace: str, name: str) -> None:
    for _ in range(200):
        try:
            await kube.get(kind, namespace, name)
        except ApiError as error:
            assert error.code is Code.NOT_FOUND
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{name} was not deleted")


async def test_crud_of_a_disk_snapshot(kube: KubeClient) -> None:
    name = unique("snap")
    operation_id = str(uuid.uuid4())
    created = await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(name, operation_id))
    assert created["metadata"]["name"] == name
    assert created["metadata"]["uid"]

    got = await kube.get(VIRTUAL_DISK_SNAPSHOT, "demo", name)
    snap = disk_snapshot_from_resource(got)
    assert (snap.name, snap.virtual_disk_name, snap.operation_id) == (name, "linux-vm-root", operation_id)
    assert snap.required_consistency is False

    listed = await kube.list(VIRTUAL_DISK_SNAPSHOT, "demo", label_selector=f"{LABEL_OPERATION_ID}={operation_id}")
    assert [item["metadata"]["name"] for item in listed.items] == [name]
    assert listed.resource_version

    patched = await kube.patch_merge(VIRTUAL_DISK_SNAPSHOT, "demo", name, {"metadata": {"labels": {"team": "db"}}})
    assert patched["metadata"]["labels"]["team"] == "db"
    assert patched["metadata"]["labels"][LABEL_OPERATION_ID] == operation_id

    await kube.delete(VIRTUAL_DISK_SNAPSHOT, "demo", name)
    await wait_gone(kube, VIRTUAL_DISK_SNAPSHOT, "demo", name)


async def test_generate_name_and_pagination(kube: KubeClient) -> None:
    operation_id = str(uuid.uuid4())
    names = set()
    for _ in range(3):
        created = await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(operation_id=operation_id))
        assert created["metadata"]["name"].startswith("gw-test-")
        names.add(created["metadata"]["name"])
    seen: list[str] = []
    token = ""
    while True:
        page = await kube.list(VIRTUAL_DISK_SNAPSHOT, "demo", label_selector=f"{LABEL_OPERATION_ID}={operation_id}",
                               limit=2, continue_token=token)
        assert len(page.items) <= 2
        seen += [item["metadata"]["name"] for item in page.items]
        token = page.continue_token
        if not token:
            break
    assert sorted(seen) == sorted(names)
    for name in names:
        await kube.delete(VIRTUAL_DISK_SNAPSHOT, "demo", name)


async def test_list_across_all_namespaces(kube: KubeClient) -> None:
    listed = await kube.list(VIRTUAL_DISK, "")
    assert ("demo", "linux-vm-root") in {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in listed.items}


async def test_not_found(kube: KubeClient) -> None:
    with pytest.raises(ApiError) as caught:
        await kube.get(VIRTUAL_DISK_SNAPSHOT, "demo", "no-such-snapshot")
    assert (caught.value.code, caught.value.reason) == (Code.NOT_FOUND, "RESOURCE_NOT_FOUND")
    assert caught.value.metadata["name"] == "no-such-snapshot"


async def test_missing_namespace_is_named(kube: KubeClient) -> None:
    body = snapshot_body(unique("snap"))
    body["metadata"]["namespace"] = "no-such-namespace"
    with pytest.raises(ApiError) as caught:
        await kube.create(VIRTUAL_DISK_SNAPSHOT, "no-such-namespace", body)
    assert caught.value.code is Code.NOT_FOUND
    assert "no-such-namespace" in caught.value.message


async def test_missing_crd_is_module_not_enabled(kube: KubeClient) -> None:
    for attempt in (kube.get(MISSING_KIND, "demo", "x"), kube.list(MISSING_KIND, "demo")):
        with pytest.raises(ApiError) as caught:
            await attempt
        assert (caught.value.code, caught.value.reason) == (Code.FAILED_PRECONDITION, "MODULE_NOT_ENABLED")


async def test_already_exists_and_conflict(kube: KubeClient) -> None:
    name = unique("snap")
    created = await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(name))
    with pytest.raises(ApiError) as caught:
        await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(name))
    assert (caught.value.code, caught.value.reason) == (Code.ALREADY_EXISTS, "RESOURCE_ALREADY_EXISTS")

    await kube.patch_merge(VIRTUAL_DISK_SNAPSHOT, "demo", name, {"metadata": {"labels": {"bump": "1"}}})
    stale = dict(created)  # carries the old resourceVersion
    with pytest.raises(ApiError) as caught:
        await kube.replace(VIRTUAL_DISK_SNAPSHOT, "demo", name, stale)
    assert (caught.value.code, caught.value.reason) == (Code.ABORTED, "CONCURRENT_MODIFICATION")
    await kube.delete(VIRTUAL_DISK_SNAPSHOT, "demo", name)


async def test_guides_clone_spelling_is_rejected_with_violations(kube: KubeClient) -> None:
    # The guide writes `nameReplacements` with `to: {name: ...}`; the CRD has `nameReplacement`
    # with `to: <string>`. Pruned, the clone has neither a replacement nor a customization.
    body = {
        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualMachineOperation",
        "metadata": {"name": unique("clone"), "namespace": "demo"},
        "spec": {"type": "Clone", "virtualMachineName": "linux-vm", "clone": {
            "mode": "Strict",
            "nameReplacements": [{"from": {"kind": "VirtualMachine", "name": "linux-vm"},
                                  "to": {"name": "linux-vm-clone"}}],
        }},
    }
    with pytest.raises(ApiError) as caught:
        await kube.create(VIRTUAL_MACHINE_OPERATION, "demo", body)
    error = caught.value
    assert (error.code, error.reason) == (Code.INVALID_ARGUMENT, "CLUSTER_REJECTED")
    assert error.field_violations
    assert all(v.description for v in error.field_violations)


async def test_invalid_field_is_translated_to_request_vocabulary(kube: KubeClient) -> None:
    body = snapshot_body(unique("snap"))
    body["spec"]["requiredConsistency"] = "sometimes"
    with pytest.raises(ApiError) as caught:
        await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", body)
    assert caught.value.code is Code.INVALID_ARGUMENT
    assert "required_consistency" in [v.field for v in caught.value.field_violations]


async def test_latency_beyond_the_timeout_is_unavailable(embedded_cluster: Any, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    embedded_cluster.write_kubeconfig(path)
    client = await connect_cluster(kubeconfig=path, request_timeout=0.2, read_retries=3)
    try:
        embedded_cluster.faults.add_latency(1.0, verb="get", resource="virtualdisks")
        loop = asyncio.get_running_loop()
        started = loop.time()
        with pytest.raises(ApiError) as caught:
            await client.get(VIRTUAL_DISK, "demo", "linux-vm-root")
        assert loop.time() - started < 1.0  # not retried: four attempts would take over a second
        assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, "CLUSTER_UNREACHABLE")
        assert caught.value.retry_after_seconds
    finally:
        embedded_cluster.faults.clear()
        await client.close()


async def test_503_is_unavailable_with_a_retry_hint_and_writes_are_not_retried(
        embedded_cluster: Any, kube: KubeClient) -> None:
    embedded_cluster.faults.fail(1.0, code=503, resource="virtualdisksnapshots")
    with pytest.raises(ApiError) as caught:
        await kube.get(VIRTUAL_DISK_SNAPSHOT, "demo", "anything")
    assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, "CLUSTER_UNAVAILABLE")
    assert caught.value.retry_after_seconds is not None and caught.value.retry_after_seconds >= 1

    name = unique("snap")
    with pytest.raises(ApiError) as caught:
        await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(name))
    assert caught.value.code is Code.UNAVAILABLE
    embedded_cluster.faults.clear()
    # Not retried behind the caller's back: the object does not exist.
    with pytest.raises(ApiError) as missing:
        await kube.get(VIRTUAL_DISK_SNAPSHOT, "demo", name)
    assert missing.value.code is Code.NOT_FOUND


async def test_reads_are_retried_through_a_short_outage(embedded_cluster: Any, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    embedded_cluster.write_kubeconfig(path)
    client = await connect_cluster(kubeconfig=path, request_timeout=2.0, read_retries=6, retry_base_delay=0.1)
    try:
        embedded_cluster.faults.fail(1.0, code=503, verb="get", resource="virtualdisks")
        asyncio.get_running_loop().call_later(0.15, embedded_cluster.faults.clear)
        disk = await client.get(VIRTUAL_DISK, "demo", "linux-vm-root")
        assert disk["metadata"]["name"] == "linux-vm-root"
    finally:
        embedded_cluster.faults.clear()
        await client.close()


async def test_wrong_token_is_cluster_unauthorized(embedded_cluster: Any, tmp_path: Path) -> None:
    path = write_kubeconfig(embedded_cluster, tmp_path / "kubeconfig", token="not-the-token")
    client = await connect_cluster(kubeconfig=path, read_retries=0)
    try:
        with pytest.raises(ApiError) as caught:
            await client.get(VIRTUAL_DISK, "demo", "linux-vm-root")
        assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, "CLUSTER_UNAUTHORIZED")
        assert "not-the-token" not in str(caught.value)
    finally:
        await client.close()


async def test_unreachable_cluster_never_leaks_its_url(embedded_cluster: Any, tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed_port = probe.getsockname()[1]
    server = f"http://127.0.0.1:{closed_port}"
    path = write_kubeconfig(embedded_cluster, tmp_path / "kubeconfig", server=server)
    client = await connect_cluster(kubeconfig=path, read_retries=1, retry_base_delay=0.01)
    try:
        with pytest.raises(ApiError) as caught:
            await client.get(VIRTUAL_DISK, "demo", "linux-vm-root")
        assert (caught.value.code, caught.value.reason) == (Code.UNAVAILABLE, "CLUSTER_UNREACHABLE")
        assert str(closed_port) not in caught.value.message
        assert caught.value.__cause__ is None and caught.value.__context__ is None
    finally:
        await client.close()


async def test_bad_kubeconfig_is_a_clear_config_error(tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    path.write_text("apiVersion: v1\nkind: Config\nusers: []\n")
    with pytest.raises(ApiError) as caught:
        await connect_cluster(kubeconfig=path)
    assert (caught.value.code, caught.value.reason) == (Code.FAILED_PRECONDITION, "CLUSTER_CONFIG_INVALID")


async def test_in_cluster_config_outside_a_pod_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(ApiError) as caught:
        await connect_cluster(in_cluster=True)
    assert caught.value.reason == "CLUSTER_CONFIG_INVALID"


async def test_tls_cluster_from_kubeconfig(embedded_cluster_tls: Any, tmp_path: Path) -> None:
    path = tmp_path / "kubeconfig"
    embedded_cluster_tls.write_kubeconfig(path)
    client = await connect_cluster(kubeconfig=path)
    try:
        disk = await client.get(VIRTUAL_DISK, "demo", "linux-vm-root")
        assert disk["metadata"]["name"] == "linux-vm-root"
    finally:
        await client.close()


async def test_ping(kube: KubeClient) -> None:
    await kube.ping(VIRTUAL_DISK_SNAPSHOT)
    with pytest.raises(ApiError) as caught:
        await kube.ping(ResourceKind("nothing.example.com", "v1", "things", "Thing"))
    assert caught.value.reason == "MODULE_NOT_ENABLED"


async def test_watch_streams_events_and_reports_expiry(embedded_cluster: Any, kube: KubeClient) -> None:
    start = await kube.list(VIRTUAL_DISK_SNAPSHOT, "demo")
    name = unique("snap")
    events = kube.watch(VIRTUAL_DISK_SNAPSHOT, "demo", start.resource_version, timeout_seconds=30)
    await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(name))
    first = await asyncio.wait_for(anext(events), 5)
    assert (first.type, first.object["metadata"]["name"]) == ("ADDED", name)

    embedded_cluster.faults.expire_watches()
    with pytest.raises(ApiError) as caught:
        async with asyncio.timeout(5):
            async for _ in events:
                pass
    assert caught.value.reason == "WATCH_EXPIRED"
    await kube.delete(VIRTUAL_DISK_SNAPSHOT, "demo", name)


async def test_watch_from_a_compacted_version_is_expired(embedded_cluster: Any, kube: KubeClient) -> None:
    start = await kube.list(VIRTUAL_DISK_SNAPSHOT, "demo")
    name = unique("snap")
    await kube.create(VIRTUAL_DISK_SNAPSHOT, "demo", snapshot_body(name))
    embedded_cluster.faults.expire_watches()  # compacts history past `start`
    with pytest.raises(ApiError) as caught:
        async with asyncio.timeout(5):
            async for _ in kube.watch(VIRTUAL_DISK_SNAPSHOT, "demo", start.resource_version, timeout_seconds=30):
                pass
    assert caught.value.reason == "WATCH_EXPIRED"
    await kube.delete(VIRTUAL_DISK_SNAPSHOT, "demo", name)
