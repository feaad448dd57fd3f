"""CRUD, patches, status, metadata semantics — over real HTTP with kubernetes-asyncio."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from service.embedded_cluster.contracts import StatusError
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.support.cluster import api_client

GROUP, VERSION, NS = "virtualization.deckhouse.io", "v1alpha2", "crud"
VDS = "virtualdisksnapshots"
# kubernetes-asyncio would send a dict patch as JSON patch; a real API server rejects that with 400.
MERGE = "application/merge-patch+json"


def snapshot(name: str = "", *, generate: str = "", labels: dict[str, str] | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name} if name else {"generateName": generate}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualDiskSnapshot", "metadata": meta,
            "spec": {"virtualDiskName": "linux-vm-root", "requiredConsistency": True}}


@pytest_asyncio.fixture
async def bare() -> AsyncIterator[EmbeddedCluster]:
    """No controllers and no seed: what the tests see is the API server's doing alone."""
    config = EmbeddedClusterConfig(seed_demo=False, run_controllers=False)
    async with EmbeddedCluster(config) as cluster:
        yield cluster


@pytest_asyncio.fixture
async def client(bare: EmbeddedCluster) -> AsyncIterator[ApiClient]:
    async with api_client(bare) as api:
        await CoreV1Api(api).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
        yield api


def status_of(error: ApiException) -> dict[str, Any]:
    import json

    body: dict[str, Any] = json.loads(error.body)
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == error.status
    return body


async def test_create_get_list_delete(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    created = await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("one"))
    meta = created["metadata"]
    assert meta["uid"] and meta["generation"] == 1 and meta["creationTimestamp"].endswith("Z")
    assert int(meta["resourceVersion"]) > 0
    fetched = await api.get_namespaced_custom_object(GROUP, VERSION, NS, VDS, "one")
    assert fetched == created
    listing = await api.list_namespaced_custom_object(GROUP, VERSION, NS, VDS)
    assert listing["kind"] == "VirtualDiskSnapshotList" and [i["metadata"]["name"] for i in listing["items"]] == ["one"]
    assert int(listing["metadata"]["resourceVersion"]) >= int(meta["resourceVersion"])
    deleted = await api.delete_namespaced_custom_object(GROUP, VERSION, NS, VDS, "one")
    assert deleted["metadata"]["uid"] == meta["uid"]
    with pytest.raises(ApiException) as missing:
        await api.get_namespaced_custom_object(GROUP, VERSION, NS, VDS, "one")
    body = status_of(missing.value)
    assert missing.value.status == 404 and body["reason"] == "NotFound"
    assert body["details"] == {"name": "one", "group": GROUP, "kind": VDS}
    assert body["message"] == f'{VDS}.{GROUP} "one" not found'


async def test_already_exists_and_generate_name(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("dup"))
    with pytest.raises(ApiException) as exists:
        await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("dup"))
    assert exists.value.status == 409 and status_of(exists.value)["reason"] == "AlreadyExists"
    names = {(await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot(generate="snap-")))
             ["metadata"]["name"] for _ in range(5)}
    assert len(names) == 5
    assert all(name.startswith("snap-") and len(name) == len("snap-") + 5 for name in names)


async def test_update_conflict_and_generation(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    first = await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("gen"))
    labelled = dict(first, metadata={**first["metadata"], "labels": {"a": "b"}})
    second = await api.replace_namespaced_custom_object(GROUP, VERSION, NS, VDS, "gen", labelled)
    assert second["metadata"]["generation"] == 1, "metadata changes do not bump generation"
    assert int(second["metadata"]["resourceVersion"]) > int(first["metadata"]["resourceVersion"])
    changed = dict(second, spec={**second["spec"], "requiredConsistency": False})
    third = await api.replace_namespaced_custom_object(GROUP, VERSION, NS, VDS, "gen", changed)
    assert third["metadata"]["generation"] == 2 and third["spec"]["requiredConsistency"] is False
    with pytest.raises(ApiException) as stale:
        await api.replace_namespaced_custom_object(GROUP, VERSION, NS, VDS, "gen", changed)
    body = status_of(stale.value)
    assert stale.value.status == 409 and body["reason"] == "Conflict"
    assert "the object has been modified" in body["message"]


async def test_status_subresource(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    sent = dict(snapshot("st"), status={"phase": "Ready"})
    created = await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, sent)
    assert "status" not in created, "status is written only through the status subresource"
    patched = await api.patch_namespaced_custom_object_status(
        GROUP, VERSION, NS, VDS, "st", {"status": {"phase": "InProgress", "consistent": True}}, _content_type=MERGE)
    assert patched["status"] == {"phase": "InProgress", "consistent": True}
    assert patched["metadata"]["generation"] == 1
    # A main-resource write cannot change status.
    replaced = await api.replace_namespaced_custom_object(
        GROUP, VERSION, NS, VDS, "st", dict(patched, status={"phase": "Failed"}))
    assert replaced["status"]["phase"] == "InProgress"
    got = await api.get_namespaced_custom_object_status(GROUP, VERSION, NS, VDS, "st")
    assert got["status"]["phase"] == "InProgress"
    put = await api.replace_namespaced_custom_object_status(
        GROUP, VERSION, NS, VDS, "st", dict(got, status={"phase": "Ready"}, spec={"virtualDiskName": "other"}))
    assert put["status"] == {"phase": "Ready"} and put["spec"]["virtualDiskName"] == "linux-vm-root"


async def test_merge_and_json_patch(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("p", labels={"keep": "1"}))
    merged = await api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, VDS, "p", {"metadata": {"labels": {"added": "2", "keep": None}}}, _content_type=MERGE)
    assert merged["metadata"]["labels"] == {"added": "2"}
    # kubernetes-asyncio sends a list body as application/json-patch+json
    patched = await api.patch_namespaced_custom_object(
        GROUP, VERSION, NS, VDS, "p",
        [{"op": "replace", "path": "/spec/requiredConsistency", "value": False},
         {"op": "add", "path": "/metadata/annotations", "value": {"x": "y"}}])
    assert patched["spec"]["requiredConsistency"] is False and patched["metadata"]["annotations"] == {"x": "y"}
    assert patched["metadata"]["generation"] == 2


async def test_invalid_object_gets_422_with_causes(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    bad = snapshot("bad")
    bad["spec"] = {"requiredConsistency": "yes"}
    with pytest.raises(ApiException) as invalid:
        await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, bad)
    body = status_of(invalid.value)
    assert invalid.value.status == 422 and body["reason"] == "Invalid"
    fields = {cause["field"] for cause in body["details"]["causes"]}
    assert "spec.virtualDiskName" in fields and "spec.requiredConsistency" in fields
    assert body["details"]["kind"] == "VirtualDiskSnapshot" and body["details"]["name"] == "bad"
    with pytest.raises(ApiException) as bad_name:
        await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("Not_A_Name"))
    assert bad_name.value.status == 422
    assert status_of(bad_name.value)["details"]["causes"][0]["field"] == "metadata.name"


async def test_missing_namespace_is_not_found(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    with pytest.raises(ApiException) as missing:
        await api.create_namespaced_custom_object(GROUP, VERSION, "nowhere", VDS, snapshot("x"))
    body = status_of(missing.value)
    assert missing.value.status == 404 and body["message"] == 'namespaces "nowhere" not found'


async def test_finalizers_hold_deletion(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    held = snapshot("held")
    held["metadata"]["finalizers"] = ["example.com/hold"]
    await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, held)
    marked = await api.delete_namespaced_custom_object(GROUP, VERSION, NS, VDS, "held")
    assert marked["metadata"]["deletionTimestamp"]
    still = await api.get_namespaced_custom_object(GROUP, VERSION, NS, VDS, "held")
    assert still["metadata"]["deletionTimestamp"] == marked["metadata"]["deletionTimestamp"]
    await api.patch_namespaced_custom_object(GROUP, VERSION, NS, VDS, "held", {"metadata": {"finalizers": None}},
                                             _content_type=MERGE)
    with pytest.raises(ApiException) as gone:
        await api.get_namespaced_custom_object(GROUP, VERSION, NS, VDS, "held")
    assert gone.value.status == 404


async def test_cascading_and_orphan_delete(client: ApiClient) -> None:
    api, core = CustomObjectsApi(client), CoreV1Api(client)
    for owner_name in ("owner", "parent"):
        owner = await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot(owner_name))
        ref = {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualDiskSnapshot", "name": owner_name,
               "uid": owner["metadata"]["uid"]}
        await core.create_namespaced_config_map(NS, {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {
            "name": f"{owner_name}-child", "ownerReferences": [ref]}, "data": {"k": "v"}})
    await api.delete_namespaced_custom_object(GROUP, VERSION, NS, VDS, "owner")
    with pytest.raises(ApiException) as collected:
        await core.read_namespaced_config_map("owner-child", NS)
    assert collected.value.status == 404
    await api.delete_namespaced_custom_object(GROUP, VERSION, NS, VDS, "parent", propagation_policy="Orphan")
    orphan = await core.read_namespaced_config_map("parent-child", NS)
    assert not orphan.metadata.owner_references


async def test_selectors_and_pagination(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    for index in range(7):
        tier = "gold" if index % 2 else "silver"
        await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot(
            f"s{index}", labels={"tier": tier, **({"extra": "x"} if index < 2 else {})}))

    async def names(**kwargs: Any) -> list[str]:
        listing = await api.list_namespaced_custom_object(GROUP, VERSION, NS, VDS, **kwargs)
        return [item["metadata"]["name"] for item in listing["items"]]

    assert await names(label_selector="tier=gold") == ["s1", "s3", "s5"]
    assert await names(label_selector="tier!=gold,extra") == ["s0"]
    assert await names(label_selector="tier in (gold, silver),!extra") == ["s2", "s3", "s4", "s5", "s6"]
    assert await names(label_selector="tier notin (silver)") == ["s1", "s3", "s5"]
    assert await names(field_selector="metadata.name=s4") == ["s4"]
    assert await names(field_selector="metadata.name!=s4,metadata.namespace=crud") == [
        "s0", "s1", "s2", "s3", "s5", "s6"]
    pages: list[str] = []
    token = ""
    while True:
        page = await api.list_namespaced_custom_object(GROUP, VERSION, NS, VDS, limit=3, _continue=token)
        pages += [item["metadata"]["name"] for item in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
        assert page["metadata"]["remainingItemCount"] > 0
    assert pages == [f"s{i}" for i in range(7)]
    cluster_wide = await api.list_cluster_custom_object(GROUP, VERSION, VDS, label_selector="extra=x")
    assert [(i["metadata"]["namespace"], i["metadata"]["name"]) for i in cluster_wide["items"]] == [
        ("crud", "s0"), ("crud", "s1")]
    with pytest.raises(ApiException) as bad:
        await names(label_selector="tier in (gold")
    assert bad.value.status == 400
    with pytest.raises(ApiException) as bad_field:
        await names(field_selector="spec.virtualDiskName=x")
    assert bad_field.value.status == 400


async def test_dry_run_changes_nothing(client: ApiClient) -> None:
    api = CustomObjectsApi(client)
    dry = await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("dry"), dry_run="All")
    assert dry["metadata"]["name"] == "dry"
    assert (await api.list_namespaced_custom_object(GROUP, VERSION, NS, VDS))["items"] == []
    real = await api.create_namespaced_custom_object(GROUP, VERSION, NS, VDS, snapshot("dry"))
    await api.patch_namespaced_custom_object(GROUP, VERSION, NS, VDS, "dry", {"metadata": {"labels": {"a": "b"}}},
                                             dry_run="All", _content_type=MERGE)
    await api.delete_namespaced_custom_object(GROUP, VERSION, NS, VDS, "dry", dry_run="All")
    after = await api.get_namespaced_custom_object(GROUP, VERSION, NS, VDS, "dry")
    assert after == real


async def test_core_secrets_and_leases(client: ApiClient) -> None:
    core = CoreV1Api(client)
    secret = await core.create_namespaced_secret(NS, {"apiVersion": "v1", "kind": "Secret",
                                                      "metadata": {"name": "s"}, "data": {"k": "dg=="},
                                                      "stringData": {"plain": "text"}})
    assert secret.data == {"k": "dg==", "plain": "dGV4dA=="} and secret.type == "Opaque"
    leases = CustomObjectsApi(client)
    lease = await leases.create_namespaced_custom_object("coordination.k8s.io", "v1", NS, "leases", {
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "leader"},
        "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}})
    taken = dict(lease, spec={**lease["spec"], "holderIdentity": "b"})
    await leases.replace_namespaced_custom_object("coordination.k8s.io", "v1", NS, "leases", "leader", taken)
    with pytest.raises(ApiException) as lost:
        await leases.replace_namespaced_custom_object("coordination.k8s.io", "v1", NS, "leases", "leader", taken)
    assert lost.value.status == 409
    namespaces = await core.list_namespace()
    assert {"default", NS} <= {item.metadata.name for item in namespaces.items}


async def test_in_process_writes_are_admitted(bare: EmbeddedCluster) -> None:
    await bare.store.create("namespaces", {"metadata": {"name": "inproc"}})
    bad = snapshot("x")
    bad["metadata"]["namespace"] = "inproc"
    bad["spec"]["unknownField"] = 1
    created = await bare.store.create(f"{VDS}.{GROUP}", bad)
    assert "unknownField" not in created["spec"], "unknown fields are pruned"
    del bad["spec"]["virtualDiskName"]
    bad["metadata"]["name"] = "y"
    with pytest.raises(StatusError) as invalid:
        await bare.store.create(f"{VDS}.{GROUP}", bad)
    assert invalid.value.code == 422
    stale = dict(created, spec={**created["spec"], "requiredConsistency": False})
    await bare.store.update(f"{VDS}.{GROUP}", stale)
    with pytest.raises(StatusError) as conflict:
        await bare.store.update(f"{VDS}.{GROUP}", stale)
    assert conflict.value.code == 409
    before = bare.store.resource_version
    # A write that changes nothing is no change: no new resourceVersion, no event (controllers rely on it).
    await bare.store.update_status(f"{VDS}.{GROUP}", {"metadata": {"name": "x", "namespace": "inproc"}})
    assert bare.store.resource_version == before
