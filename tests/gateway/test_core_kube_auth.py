"""TokenReview / SubjectAccessReview against the real embedded API server over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import aiohttp
import pytest
import yaml

from service.app import GatewayApp
from service.cluster.client import KubeClient, connect_cluster
from service.cluster.watch_hub import WatchHub
from service.core import contract as C
from service.core.domain import AuditFilter, AuditOutcome, Caller, RequestContext
from service.core.errors import ApiError, Code
from service.core.gateway import Gateway
from service.core.kube_auth import SubjectAccessReviewAuthorizer, TokenReviewAuthenticator
from service.core.requests import ObjectKey
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from service.settings import Settings
from service.store import Database

ALICE_TOKEN = "alice-cluster-token-42"


@pytest.fixture
async def cluster(tmp_path: Path) -> AsyncIterator[EmbeddedCluster]:
    policy = tmp_path / "cluster-policy.yaml"
    policy.write_text(yaml.safe_dump({
        "users": [{"name": "alice", "token": ALICE_TOKEN, "groups": ["snapshotters"]}],
        "rules": [{"subjects": ["group:snapshotters"], "namespaces": ["demo"], "verbs": ["get", "create"],
                   "resources": ["disk-snapshots"]}],
    }))
    async with EmbeddedCluster(EmbeddedClusterConfig(seed_demo=False, policy_path=policy)) as server:
        yield server


@pytest.fixture
async def client(cluster: EmbeddedCluster, tmp_path: Path) -> AsyncIterator[KubeClient]:
    kube = await connect_cluster(kubeconfig=cluster.write_kubeconfig(tmp_path / "kubeconfig"), request_timeout=5.0)
    try:
        yield kube
    finally:
        await kube.close()


async def test_token_review(cluster: EmbeddedCluster, client: KubeClient) -> None:
    authenticator = TokenReviewAuthenticator(client, cache_seconds=60)
    caller = await authenticator.authenticate(ALICE_TOKEN)
    assert caller is not None and caller.subject == "alice" and "snapshotters" in caller.groups
    assert await authenticator.authenticate("not-a-known-token") is None
    assert await authenticator.authenticate("") is None
    # Cached: the answer survives a cluster outage within the cache period...
    cluster.faults.fail(1.0, code=503)
    assert await authenticator.authenticate(ALICE_TOKEN) == caller
    # ...and an uncached token is UNAVAILABLE, not UNAUTHENTICATED.
    with pytest.raises(ApiError) as caught:
        await authenticator.authenticate("another-token-value")
    assert caught.value.code is Code.UNAVAILABLE


async def test_subject_access_review(cluster: EmbeddedCluster, client: KubeClient) -> None:
    authorizer = SubjectAccessReviewAuthorizer(client, cache_seconds=60)
    alice = Caller("alice", ("snapshotters",))
    assert await authorizer.allowed(alice, verb="create", resource="disk-snapshots", namespace="demo")
    assert not await authorizer.allowed(alice, verb="delete", resource="disk-snapshots", namespace="demo")
    assert not await authorizer.allowed(alice, verb="create", resource="disk-snapshots", namespace="prod")
    assert not await authorizer.allowed(Caller("bob"), verb="get", resource="disk-snapshots", namespace="demo")
    cluster.faults.fail(1.0, code=503)
    assert await authorizer.allowed(alice, verb="create", resource="disk-snapshots", namespace="demo")
    with pytest.raises(ApiError) as caught:
        await authorizer.allowed(alice, verb="list", resource="audit", namespace="")
    assert caught.value.code is Code.UNAVAILABLE


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_gateway_with_cluster_auth(cluster: EmbeddedCluster, client: KubeClient, database: Database) -> None:
    hub = WatchHub(client)
    gateway = Gateway(operations=database.operations, audit=database.audit, page_tokens=database.page_tokens,
                      cluster=client, hub=hub,
                      authenticator=TokenReviewAuthenticator(client), authorizer=SubjectAccessReviewAuthorizer(client))
    try:
        caller = await gateway.authenticate(f"Bearer {ALICE_TOKEN}", action="GetDiskSnapshot", protocol="grpc")
        ctx = RequestContext(caller, request_id="r1", protocol="grpc")
        with pytest.raises(ApiError) as caught:
            await gateway.call(ctx, C.GET_DISK_SNAPSHOT, ObjectKey("demo", "absent"))
        assert caught.value.code is Code.NOT_FOUND  # allowed by RBAC, then not found
        with pytest.raises(ApiError) as caught:
            await gateway.call(ctx, C.GET_DISK_SNAPSHOT, ObjectKey("prod", "absent"))
        assert caught.value.code is Code.PERMISSION_DENIED
        cluster.faults.fail(1.0, code=503)
        with pytest.raises(ApiError) as caught:
            await gateway.authenticate("Bearer some-other-token", action="ListOperations", protocol="rest")
        assert caught.value.code is Code.UNAVAILABLE
        events = [e async for e in database.audit.stream(AuditFilter())]
        assert [(e.actor, e.action, e.outcome, e.code) for e in events] == [
            ("alice", "GetDiskSnapshot", AuditOutcome.ERROR, "NOT_FOUND"),
            ("alice", "GetDiskSnapshot", AuditOutcome.DENIED, "PERMISSION_DENIED"),
            ("system:anonymous", "ListOperations", AuditOutcome.ERROR, "UNAVAILABLE"),
        ]
    finally:
        await hub.close()


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_served_gateway_in_kubernetes_auth_mode(cluster: EmbeddedCluster, database_url: str,
                                                      tmp_path: Path) -> None:
    # The composition root with --auth kubernetes: no token or policy file; the cluster's
    # own users and rules decide, over real REST.
    app = GatewayApp.from_settings(replace(
        Settings(), data_dir=tmp_path, grpc_port=0, rest_port=0, metrics_port=0, database_url=database_url,
        auth="kubernetes", kubeconfig=cluster.write_kubeconfig(tmp_path / "gateway-kubeconfig")))
    await app.start()
    try:
        base = f"http://127.0.0.1:{app.rest_port}/v1/namespaces"
        async with aiohttp.ClientSession() as http:
            alice = {"Authorization": f"Bearer {ALICE_TOKEN}"}
            async with http.get(f"{base}/demo/disk-snapshots/absent", headers=alice) as resp:
                assert resp.status == 404  # allowed by the cluster's rules, then not found
            async with http.get(f"{base}/prod/disk-snapshots/absent", headers=alice) as resp:
                assert resp.status == 403
            async with http.get(f"{base}/demo/disk-snapshots/absent",
                                headers={"Authorization": "Bearer not-a-cluster-token"}) as resp:
                assert resp.status == 401
    finally:
        await app.stop()
