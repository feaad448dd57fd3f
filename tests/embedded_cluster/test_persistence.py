"""A cluster with a state directory is the same cluster after a restart: its objects (uids,
resourceVersions, finalizers, deletion marks, status), its CA, admin token and port, and
its controllers' unfinished work."""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi

from service.embedded_cluster.apiserver.builtin_types import BUILTIN_TYPES, CONFIGMAPS
from service.embedded_cluster.apiserver.journal import Journal
from service.embedded_cluster.apiserver.recovery import Restored, load_state, segments
from service.embedded_cluster.apiserver.store import MemoryStore
from service.embedded_cluster.contracts import StatusError
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from service.launcher import start_embedded_cluster
from service.settings import Settings
from tests.support.cluster import KUBECTL, api_client

from .test_controllers_kit import demo_ready, kube, phase, reason

GROUP, VERSION = "virtualization.deckhouse.io", "v1alpha2"
FINALIZER = "example.com/keep"
MERGE = "application/merge-patch+json"


def config(state: Path, **overrides: Any) -> EmbeddedClusterConfig:
    return replace(EmbeddedClusterConfig(state_dir=state, seed_demo=False, run_controllers=False), **overrides)


def configmap(name: str, *, data: dict[str, str] | None = None,
              finalizers: list[str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if finalizers:
        meta["finalizers"] = finalizers
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data or {}}


async def read_configmap(client: ApiClient, name: str) -> dict[str, Any]:
    found: dict[str, Any] = client.sanitize_for_serialization(await CoreV1Api(client).read_namespaced_config_map(
        name, "keep"))
    return found


def snapshot_of(obj: dict[str, Any]) -> dict[str, Any]:
    """What must come back unchanged: identity, versions, marks and status."""
    meta = obj["metadata"]
    return {"uid": meta["uid"], "resourceVersion": meta["resourceVersion"], "created": meta["creationTimestamp"],
            "finalizers": meta.get("finalizers"), "deletion": meta.get("deletionTimestamp"),
            "generation": meta.get("generation"), "status": obj.get("status"), "data": obj.get("data"),
            "spec": obj.get("spec")}


async def test_objects_come_back_with_their_uid_and_resource_version(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state)) as cluster, api_client(cluster) as client:
        core, custom = CoreV1Api(client), CustomObjectsApi(client)
        await core.create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "keep"}})
        await core.create_namespaced_config_map("keep", configmap("plain", data={"a": "1"}))
        await core.patch_namespaced_config_map("plain", "keep", {"data": {"a": "2"}}, _content_type=MERGE)
        await core.create_namespaced_config_map("keep", configmap("going", finalizers=[FINALIZER]))
        await core.delete_namespaced_config_map("going", "keep")     # stays, marked for deletion
        await core.create_namespaced_config_map("keep", configmap("gone"))
        await core.delete_namespaced_config_map("gone", "keep")
        await custom.create_namespaced_custom_object(GROUP, VERSION, "keep", "virtualdisks", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualDisk", "metadata": {"name": "disk"},
            "spec": {"persistentVolumeClaim": {"size": "1Gi"}}})
        disk = await custom.get_namespaced_custom_object(GROUP, VERSION, "keep", "virtualdisks", "disk")
        await custom.patch_namespaced_custom_object_status(GROUP, VERSION, "keep", "virtualdisks", "disk",
                                                           {"status": {"phase": "Ready"}}, _content_type=MERGE)
        before = {name: snapshot_of(await read_configmap(client, name)) for name in ("plain", "going")}
        before["disk"] = snapshot_of(await custom.get_namespaced_custom_object(GROUP, VERSION, "keep",
                                                                               "virtualdisks", "disk"))
        last_rv = cluster.store.resource_version
        port = cluster.url
    assert before["going"]["deletion"] and before["disk"]["status"] == {"phase": "Ready"}
    assert before["disk"]["uid"] == disk["metadata"]["uid"]

    async with EmbeddedCluster(config(state)) as cluster, api_client(cluster) as client:
        core, custom = CoreV1Api(client), CustomObjectsApi(client)
        assert cluster.url == port                    # the port of the last run is taken again
        assert cluster.store.resource_version == last_rv
        after = {name: snapshot_of(await read_configmap(client, name)) for name in ("plain", "going")}
        after["disk"] = snapshot_of(await custom.get_namespaced_custom_object(GROUP, VERSION, "keep",
                                                                              "virtualdisks", "disk"))
        assert after == before
        names = {cm.metadata.name for cm in (await core.list_namespaced_config_map("keep")).items}
        assert names == {"plain", "going"}
        # New writes continue the sequence; the finalizer's removal completes the old deletion.
        created = await core.create_namespaced_config_map("keep", configmap("new"))
        assert int(created.metadata.resource_version) > last_rv
        await core.patch_namespaced_config_map("going", "keep", {"metadata": {"finalizers": None}},
                                             _content_type=MERGE)
        assert "going" not in {cm.metadata.name for cm in (await core.list_namespaced_config_map("keep")).items}
        # The watch history did not survive: resuming from before the restart relists (410).
        with pytest.raises(StatusError) as gone:
            cluster.store.watch(CONFIGMAPS.key, last_rv - 1, queue_size=10)
        assert gone.value.code == 410


async def test_the_demo_seed_is_applied_to_a_fresh_state_only(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state, seed_demo=True)) as cluster:
        assert cluster.store.get(R.VD, "demo", "spare-disk") is not None
        await cluster.store.delete(R.VD, "demo", "spare-disk")
    assert not (state / "seeding").exists()
    async with EmbeddedCluster(config(state, seed_demo=True)) as cluster:
        assert cluster.store.get(R.VD, "demo", "spare-disk") is None      # stays deleted
        assert cluster.store.get(R.VD, "demo", "linux-vm-root") is not None


async def test_a_kubeconfig_written_before_a_restart_works_after_it(tmp_path: Path) -> None:
    settings = replace(Settings(), data_dir=tmp_path / "var", embedded_step_delay=0.0, embedded_seed_demo=False)
    handle = await start_embedded_cluster(settings)
    try:
        kept = tmp_path / "kubeconfig-before-restart"
        shutil.copy(handle.kubeconfig, kept)
        assert await kubectl(kept, "create", "namespace", "before") == "namespace/before created"
    finally:
        await handle.stop()
    state = settings.data_dir / "embedded-cluster"
    assert state.stat().st_mode & 0o077 == 0
    for secret in ("admin-token", "ca.key", "ca.crt"):
        assert (state / secret).stat().st_mode & 0o777 == 0o600, secret
    handle = await start_embedded_cluster(settings)
    try:
        assert handle.kubeconfig.read_text() == kept.read_text()    # same server, CA and token
        assert "before" in await kubectl(kept, "get", "namespaces", "-o", "name")
    finally:
        await handle.stop()


async def kubectl(kubeconfig: Path, *args: str) -> str:
    result = await asyncio.to_thread(
        subprocess.run, [KUBECTL, "--kubeconfig", str(kubeconfig), "--cache-dir", str(kubeconfig.parent / "cache"),
                         *args], capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 0, result.stderr
    return result.stdout.strip()


async def test_a_disk_snapshot_in_progress_finishes_after_a_restart(tmp_path: Path) -> None:
    state = tmp_path / "state"
    running = config(state, seed_demo=True, run_controllers=True)
    async with EmbeddedCluster(running) as cluster, kube(cluster) as k:
        await demo_ready(k)
    # Slow controllers: stop while the guest is frozen for the snapshot.
    async with EmbeddedCluster(replace(running, step_delay=0.3)) as cluster, kube(cluster) as k:
        created = await k.create(R.VDSNAPSHOT, "demo", {
            "apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualDiskSnapshot", "metadata": {"name": "mid-way"},
            "spec": {"virtualDiskName": "linux-vm-root"}})
        frozen = await k.wait(R.VDSNAPSHOT, "demo", "mid-way", lambda o: phase(o) == "InProgress" and reason(
            o, "VirtualDiskSnapshotReady") == "FileSystemFreezing")
        vm = await k.get(R.VM, "demo", "linux-vm")
        assert vm is not None and vm["metadata"]["annotations"].get(R.ANN_FROZEN_BY)
    async with EmbeddedCluster(running) as cluster, kube(cluster) as k:
        done = await k.wait_phase(R.VDSNAPSHOT, "demo", "mid-way", "Ready", "Failed")
        assert phase(done) == "Ready" and done["status"]["consistent"] is True
        assert done["metadata"]["uid"] == created["metadata"]["uid"]
        assert int(done["metadata"]["resourceVersion"]) > int(frozen["metadata"]["resourceVersion"])
        vm = await k.get(R.VM, "demo", "linux-vm")
        assert vm is not None and R.ANN_FROZEN_BY not in vm["metadata"].get("annotations", {})   # thawed


async def test_compaction_keeps_every_change(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state, state_compact_bytes=4096)) as cluster:
        store = cluster.store
        for i in range(120):
            await store.create(CONFIGMAPS.key, {"metadata": {"name": f"cm-{i}", "namespace": "default"},
                                                "data": {"i": str(i)}})
            if i % 3 == 0:
                await store.delete(CONFIGMAPS.key, "default", f"cm-{i}")
        await asyncio.sleep(0.05)   # let the last compaction finish
        assert len(segments(state / "objects")) <= 2    # older segments went into the snapshot
        expected = {obj["metadata"]["name"]: obj for obj in store.list(CONFIGMAPS.key)}
        rv = store.resource_version
    assert segments(state / "objects") == []            # a clean stop leaves the snapshot alone
    loaded = load_state(state / "objects")
    assert loaded.resource_version == rv
    assert {key[1]: obj for key, obj in loaded.objects[CONFIGMAPS.key].items()} == expected


async def test_objects_of_a_type_no_longer_served_are_kept(tmp_path: Path) -> None:
    widget = {"apiVersion": "example.com/v1", "kind": "Widget",
              "metadata": {"name": "w", "uid": "u-1", "resourceVersion": "7"}}
    restored = Restored(resource_version=7, objects={"widgets.example.com": {("", "w"): widget}}, fresh=False)
    journal = Journal(tmp_path, restored)
    store = MemoryStore(BUILTIN_TYPES, _NoAdmission(), journal=journal)
    assert store.resource_version == 7
    with pytest.raises(StatusError):
        store.list("widgets.example.com")
    await store.close()
    assert load_state(tmp_path).objects["widgets.example.com"] == {("", "w"): widget}


async def test_a_taken_port_gives_a_new_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    async with EmbeddedCluster(config(state)) as cluster:
        first = cluster.url
    port = int(first.rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        async with EmbeddedCluster(config(state)) as cluster:
            assert cluster.url != first
            second = cluster.url
    async with EmbeddedCluster(config(state)) as cluster:   # the new port is the one remembered now
        assert cluster.url == second


class _NoAdmission:
    def admit(self, rtype: Any, obj: dict[str, Any], old: dict[str, Any] | None, *,
              subresource: str = "") -> dict[str, Any]:
        return obj
