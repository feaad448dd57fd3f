"""TokenReview / SubjectAccessReview against the real embedded API server over HTTP."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import yaml

from service.cluster.client import KubeClient, connect_cluster
from service.cluster.watch_hub import WatchHub
from service.core.domain import AuditFilter, AuditOutcome, Caller, RequestContext
from service.core.errors import ApiError, Code
from service.core.gateway import Gateway
from service.core.kube_auth import SubjectAccessReviewAuthorizer, TokenReviewAuthenticator
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
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
    gateway = Gateway(operations=database.operations, audit=database.audit, cluster=client, hub=hub,
                      authenticator=TokenReviewAuthenticator(client), authorizer=SubjectAccessReviewAuthorizer(client))
    try:
        caller = await gateway.authenticate(f"Bearer {ALICE_TOKEN}", action="GetDiskSnapshot", protocol="grpc")
        ctx = RequestContext(caller, request_id="r1", protocol="grpc")
        with pytest.raises(ApiError) as caught:
            await gateway.get_disk_snapshot(ctx, "demo", "absent")
        assert caught.value.code is Code.NOT_FOUND  # allowed by RBAC, then not found
        with pytest.raises(ApiError) as caught:
            await gateway.get_disk_snapshot(ctx, "prod", "absent")
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
