"""The wire itself (raw aiohttp): discovery, tables, hostile input, auth, faults, apply."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import yaml

from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

GV = "virtualization.deckhouse.io/v1alpha2"
NS = "h"
VDS_PATH = f"/apis/{GV}/namespaces/{NS}/virtualdisksnapshots"
ALICE, BOB = "alice-token-0123456789", "bob-token-0123456789"
POLICY = {
    "users": [{"name": "alice", "token": ALICE, "groups": ["dev"]}, {"name": "bob", "token": BOB}],
    "rules": [{"subjects": ["group:dev"], "namespaces": [NS], "verbs": ["get", "list", "watch"],
               "resources": ["virtualdisksnapshots"]},
              {"subjects": ["alice"], "namespaces": [NS], "verbs": ["create"], "resources": ["*"]}],
}


def snapshot(name: str) -> dict[str, Any]:
    return {"apiVersion": GV, "kind": "VirtualDiskSnapshot", "metadata": {"name": name},
            "spec": {"virtualDiskName": "linux-vm-root"}}


@pytest_asyncio.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    policy = tmp_path / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY))
    config = EmbeddedClusterConfig(seed_demo=False, run_controllers=False, policy_path=policy)
    async with EmbeddedCluster(config) as started:
        await started.store.create("namespaces", {"metadata": {"name": NS}})
        yield started


@pytest_asyncio.fixture
async def http(cluster: EmbeddedCluster) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(cluster.url, headers={"Authorization": f"Bearer {cluster.admin_token}"}) as s:
        yield s


async def status(response: aiohttp.ClientResponse, code: int, reason: str) -> dict[str, Any]:
    body: dict[str, Any] = await response.json(content_type=None)
    assert (response.status, body["kind"], body["code"], body["reason"]) == (code, "Status", code, reason), body
    return body


async def test_discovery(http: aiohttp.ClientSession) -> None:
    async with http.get("/version") as response:
        assert (await response.json())["major"] == "1"
    async with http.get("/api") as response:
        assert (await response.json())["versions"] == ["v1"]
    async with http.get("/apis") as response:
        groups = {g["name"]: g for g in (await response.json())["groups"]}
    assert {"virtualization.deckhouse.io", "deckhouse.io", "coordination.k8s.io"} <= set(groups)
    assert groups["virtualization.deckhouse.io"]["preferredVersion"]["groupVersion"] == GV
    async with http.get(f"/apis/{GV}") as response:
        resources = {r["name"]: r for r in (await response.json())["resources"]}
    vds = resources["virtualdisksnapshots"]
    assert vds["kind"] == "VirtualDiskSnapshot" and vds["namespaced"] is True and "vdsnapshot" in vds["shortNames"]
    assert set(vds["verbs"]) >= {"get", "list", "watch", "create", "update", "patch", "delete"}
    assert resources["virtualdisksnapshots/status"]["verbs"] == ["get", "patch", "update"]
    async with http.get("/api/v1") as response:
        core = {r["name"]: r for r in (await response.json())["resources"]}
    assert core["namespaces"]["namespaced"] is False and core["secrets"]["namespaced"] is True
    for missing in ("/apis/nope.io", "/apis/nope.io/v1", "/api/v2", "/openapi/v2"):
        async with http.get(missing) as response:
            await status(response, 404, "NotFound")
    async with http.get("/openapi/v3") as response:
        assert f"apis/{GV}" in (await response.json())["paths"]


async def test_table_output(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    async with http.post(VDS_PATH, json=snapshot("t")) as response:
        assert response.status == 201
    await cluster.store.update_status("virtualdisksnapshots.virtualization.deckhouse.io", {
        "metadata": {"name": "t", "namespace": NS}, "status": {"phase": "Ready", "consistent": True}})
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json"
    async with http.get(VDS_PATH, headers={"Accept": accept}) as response:
        table = await response.json()
    assert table["kind"] == "Table" and table["apiVersion"] == "meta.k8s.io/v1"
    assert [c["name"] for c in table["columnDefinitions"]] == ["Name", "Phase", "Consistent", "Age"]
    (row,) = table["rows"]
    assert row["cells"][:3] == ["t", "Ready", True] and row["cells"][3].endswith("s")
    assert row["object"]["kind"] == "PartialObjectMetadata"
    async with http.get(f"{VDS_PATH}/t", headers={"Accept": accept}, params={"includeObject": "Object"}) as response:
        single = await response.json()
    assert single["rows"][0]["object"]["spec"]["virtualDiskName"] == "linux-vm-root"


async def test_hostile_input_never_500(http: aiohttp.ClientSession) -> None:
    cases: list[tuple[str, str, bytes, str, int, str]] = [
        ("POST", VDS_PATH, b"{not json", "application/json", 400, "BadRequest"),
        ("POST", VDS_PATH, b"[1,2]", "application/json", 400, "BadRequest"),
        ("POST", VDS_PATH, b'{"a": NaN}', "application/json", 400, "BadRequest"),
        ("POST", VDS_PATH, b"[" * 5000 + b"]" * 5000, "application/json", 400, "BadRequest"),
        ("POST", VDS_PATH, b"\xff\xfe", "application/json", 400, "BadRequest"),
        ("POST", VDS_PATH, b"a: b", "text/plain", 415, "UnsupportedMediaType"),
        ("POST", VDS_PATH, json.dumps({**snapshot("k"), "kind": "VirtualDisk"}).encode(), "application/json",
         400, "BadRequest"),
        ("POST", VDS_PATH, json.dumps({**snapshot("k"), "apiVersion": "v1"}).encode(), "application/json",
         400, "BadRequest"),
        ("POST", VDS_PATH, json.dumps({"metadata": {"name": "k"}}).encode(), "application/json", 400,
         "BadRequest"),
        ("POST", VDS_PATH, json.dumps({**snapshot("k"), "metadata": "x"}).encode(), "application/json", 400,
         "BadRequest"),
        ("POST", VDS_PATH, json.dumps({**snapshot("k"), "metadata": {"name": 5}}).encode(), "application/json",
         400, "BadRequest"),
        ("POST", VDS_PATH, json.dumps({**snapshot("k"), "metadata": {"name": "k", "labels": {"a": 1}}}).encode(),
         "application/json", 422, "Invalid"),
        ("POST", f"{VDS_PATH}/x", b"{}", "application/json", 405, "MethodNotAllowed"),
        ("PUT", f"{VDS_PATH}/x", json.dumps(snapshot("y")).encode(), "application/json", 400, "BadRequest"),
        ("PATCH", f"{VDS_PATH}/x", b"{}", "application/xml", 415, "UnsupportedMediaType"),
        ("PUT", f"{VDS_PATH}/x", json.dumps(snapshot("x")).encode(), "application/json", 422, "Invalid"),
        ("GET", f"/apis/{GV}/namespaces/{NS}/nothings", b"", "", 404, "NotFound"),
        ("GET", f"/apis/{GV}/virtualdisksnapshots/x", b"", "", 404, "NotFound"),
        ("GET", f"{VDS_PATH}/x/scale", b"", "", 404, "NotFound"),
        ("GET", f"{VDS_PATH}/x/status/more", b"", "", 404, "NotFound"),
        ("GET", f"{VDS_PATH}?limit=-1", b"", "", 400, "BadRequest"),
        ("GET", f"{VDS_PATH}?continue=%%%", b"", "", 400, "BadRequest"),
        ("GET", f"{VDS_PATH}?watch=maybe", b"", "", 400, "BadRequest"),
        ("GET", f"{VDS_PATH}?watch=1&resourceVersion=abc", b"", "", 400, "BadRequest"),
        ("GET", f"{VDS_PATH}?labelSelector=a%3D%3D%3Db", b"", "", 400, "BadRequest"),
        ("POST", f"{VDS_PATH}?dryRun=Some", json.dumps(snapshot("k")).encode(), "application/json", 400,
         "BadRequest"),
        ("DELETE", f"{VDS_PATH}/x?propagationPolicy=Never", b"", "", 400, "BadRequest"),
        ("DELETE", f"{VDS_PATH}/x", b"[]", "application/json", 400, "BadRequest"),
        ("DELETE", f"{VDS_PATH}/x", b"", "", 404, "NotFound"),
        ("PATCH", f"{VDS_PATH}/x", b"{}", "application/merge-patch+json", 404, "NotFound"),
    ]
    for method, path, body, content_type, code, reason in cases:
        headers = {"Content-Type": content_type} if content_type else {}
        async with http.request(method, path, data=body, headers=headers) as response:
            try:
                await status(response, code, reason)
            except AssertionError as error:
                raise AssertionError(f"{method} {path} {body[:40]!r}: {error}") from None


async def test_patches_and_apply(http: aiohttp.ClientSession) -> None:
    async with http.post(VDS_PATH, json=snapshot("p")) as response:
        assert response.status == 201
    smp = {"Content-Type": "application/strategic-merge-patch+json"}
    async with http.patch(f"{VDS_PATH}/p", data=json.dumps({"metadata": {"labels": {"a": "b"}}}),
                          headers=smp) as response:
        assert (await response.json())["metadata"]["labels"] == {"a": "b"}
    json_patch = {"Content-Type": "application/json-patch+json"}
    failing = [{"op": "test", "path": "/spec/virtualDiskName", "value": "other"}]
    async with http.patch(f"{VDS_PATH}/p", data=json.dumps(failing), headers=json_patch) as response:
        await status(response, 422, "Invalid")
    bad_pointer = [{"op": "remove", "path": "/spec/missing/deeper"}]
    async with http.patch(f"{VDS_PATH}/p", data=json.dumps(bad_pointer), headers=json_patch) as response:
        await status(response, 422, "Invalid")
    async with http.patch(f"{VDS_PATH}/p", data=json.dumps([{"op": "explode", "path": "/a"}]),
                          headers=json_patch) as response:
        await status(response, 400, "BadRequest")
    stale = {"metadata": {"resourceVersion": "1"}}
    async with http.patch(f"{VDS_PATH}/p", data=json.dumps(stale),
                          headers={"Content-Type": "application/merge-patch+json"}) as response:
        await status(response, 409, "Conflict")
    apply = {"Content-Type": "application/apply-patch+yaml"}
    manifest = yaml.safe_dump({**snapshot("applied"), "spec": {"virtualDiskName": "d1"}})
    async with http.patch(f"{VDS_PATH}/applied", data=manifest, headers=apply,
                          params={"fieldManager": "test"}) as response:
        assert response.status == 201
    async with http.patch(f"{VDS_PATH}/applied", data=manifest.replace("d1", "d2"), headers=apply,
                          params={"fieldManager": "test"}) as response:
        assert (await response.json())["spec"]["virtualDiskName"] == "d2"
    bomb = "a: &a [x, x]\nb: &b [*a, *a]\n"
    async with http.patch(f"{VDS_PATH}/applied", data=bomb, headers=apply) as response:
        await status(response, 400, "BadRequest")


async def test_delete_options_body_and_preconditions(http: aiohttp.ClientSession) -> None:
    async with http.post(VDS_PATH, json=snapshot("d")) as response:
        uid = (await response.json())["metadata"]["uid"]
    options = {"kind": "DeleteOptions", "apiVersion": "v1", "preconditions": {"uid": "not-" + uid}}
    async with http.delete(f"{VDS_PATH}/d", json=options) as response:
        await status(response, 409, "Conflict")
    async with http.delete(f"{VDS_PATH}/d", json={**options, "preconditions": {"uid": uid},
                                                  "propagationPolicy": "Foreground"}) as response:
        assert response.status == 200 and (await response.json())["metadata"]["uid"] == uid
    held = {**snapshot("held"), "metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    async with http.post(VDS_PATH, json=held):
        pass
    async with http.delete(f"{VDS_PATH}/held") as response:
        # 200 with the object, as the real API server answers while finalizers hold it
        assert response.status == 200 and (await response.json())["metadata"]["deletionTimestamp"]
    async with http.patch(f"{VDS_PATH}/held", data=json.dumps({"metadata": {"finalizers": []}}),
                          headers={"Content-Type": "application/merge-patch+json"}) as response:
        assert response.status == 200
    async with http.get(f"{VDS_PATH}/held") as response:
        await status(response, 404, "NotFound")
    for name in ("c1", "c2"):
        async with http.post(VDS_PATH, json=snapshot(name)):
            pass
    async with http.delete(VDS_PATH) as response:
        assert sorted(i["metadata"]["name"] for i in (await response.json())["items"]) == ["c1", "c2"]


async def test_authentication_and_authorization(cluster: EmbeddedCluster) -> None:
    async with aiohttp.ClientSession(cluster.url) as anonymous:
        async with anonymous.get(VDS_PATH) as response:
            await status(response, 401, "Unauthorized")
        async with anonymous.get(VDS_PATH, headers={"Authorization": "Bearer wrong"}) as response:
            await status(response, 401, "Unauthorized")
        async with anonymous.get("/healthz") as response:
            assert response.status == 200
    async with aiohttp.ClientSession(cluster.url, headers={"Authorization": f"Bearer {ALICE}"}) as alice:
        async with alice.get(VDS_PATH) as response:
            assert response.status == 200
        async with alice.post(VDS_PATH, json=snapshot("by-alice")) as response:
            assert response.status == 201
        async with alice.delete(f"{VDS_PATH}/by-alice") as response:
            body = await status(response, 403, "Forbidden")
        assert body["message"] == (
            'virtualdisksnapshots.virtualization.deckhouse.io "by-alice" is forbidden: User "alice" cannot delete '
            'resource "virtualdisksnapshots" in API group "virtualization.deckhouse.io" in the namespace "h"')
        assert body["details"] == {"name": "by-alice", "group": "virtualization.deckhouse.io",
                                   "kind": "virtualdisksnapshots"}
        async with alice.get(f"/apis/{GV}/virtualdisksnapshots") as response:
            body = await status(response, 403, "Forbidden")
        assert body["message"].endswith("at the cluster scope")
    async with (aiohttp.ClientSession(cluster.url, headers={"Authorization": f"Bearer {BOB}"}) as bob,
                bob.get(VDS_PATH) as response):
        await status(response, 403, "Forbidden")


async def test_token_and_access_reviews(http: aiohttp.ClientSession) -> None:
    review = {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": {"token": ALICE}}
    async with http.post("/apis/authentication.k8s.io/v1/tokenreviews", json=review) as response:
        answer = await response.json()
    assert response.status == 201 and answer["status"]["authenticated"] is True
    assert answer["status"]["user"]["username"] == "alice" and "dev" in answer["status"]["user"]["groups"]
    assert ALICE not in json.dumps(answer)
    review["spec"] = {"token": "nope"}
    async with http.post("/apis/authentication.k8s.io/v1/tokenreviews", json=review) as response:
        assert (await response.json())["status"]["authenticated"] is False
    sar_path = "/apis/authorization.k8s.io/v1/subjectaccessreviews"

    async def allowed(user: str, groups: list[str], verb: str, namespace: str) -> bool:
        sar = {"apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview", "spec": {
            "user": user, "groups": groups, "resourceAttributes": {
                "namespace": namespace, "verb": verb, "group": "virtualization.deckhouse.io",
                "resource": "virtualdisksnapshots"}}}
        async with http.post(sar_path, json=sar) as response:
            assert response.status == 201
            return bool((await response.json())["status"]["allowed"])

    assert await allowed("alice", ["dev"], "list", NS)
    assert not await allowed("alice", ["dev"], "delete", NS)
    assert not await allowed("alice", ["dev"], "list", "elsewhere")
    assert not await allowed("bob", [], "get", NS)
    assert await allowed("carol", ["dev"], "watch", NS)
    assert await allowed("admin", [], "delete", "anywhere")
    async with http.get(sar_path) as response:
        await status(response, 405, "MethodNotAllowed")


async def test_fault_injection(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    cluster.faults.fail(1.0, code=503, verb="list", resource="virtualdisksnapshots")
    async with http.get(VDS_PATH) as response:
        await status(response, 503, "ServiceUnavailable")
    async with http.post(VDS_PATH, json=snapshot("ok")) as response:
        assert response.status == 201, "other verbs are untouched"
    cluster.faults.clear()
    cluster.faults.add_latency(0.3, verb="get")
    started = time.monotonic()
    async with http.get(f"{VDS_PATH}/ok") as response:
        assert response.status == 200
    assert time.monotonic() - started >= 0.3
    cluster.faults.clear()
    cluster.faults.fail(0.5, code=500)
    codes = []
    for _ in range(40):
        async with http.get(f"{VDS_PATH}/ok") as response:
            codes.append(response.status)
    assert 0 < codes.count(500) < 40 and set(codes) == {200, 500}
    cluster.faults.clear()


async def test_concurrent_writers_one_wins(http: aiohttp.ClientSession) -> None:
    async with http.post(VDS_PATH, json=snapshot("race")) as response:
        current = await response.json()

    async def replace(value: str) -> int:
        body = {**current, "spec": {"virtualDiskName": value}}
        async with http.put(f"{VDS_PATH}/race", json=body) as response:
            return response.status

    results = await asyncio.gather(*(replace(f"d{i}") for i in range(5)))
    assert sorted(results) == [200, 409, 409, 409, 409]


@pytest.mark.parametrize("path", ["/api/v1/namespaces/h/secrets", "/apis/coordination.k8s.io/v1/leases"])
async def test_builtin_lists(http: aiohttp.ClientSession, path: str) -> None:
    async with http.get(path) as response:
        body = await response.json()
    assert response.status == 200 and body["items"] == [] and body["kind"] in ("SecretList", "LeaseList")
