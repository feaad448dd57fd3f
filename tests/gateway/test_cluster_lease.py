"""LeaderElector on a real coordination.k8s.io/v1 Lease in the embedded cluster."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from service.cluster.client import KubeClient, connect_cluster
from service.cluster.kinds import LEASE
from service.cluster.lease import LeaderElector

pytestmark = pytest.mark.timeout(60)


@pytest.fixture
async def kube(embedded_cluster: Any, tmp_path: Path) -> AsyncIterator[KubeClient]:
    path = tmp_path / "kubeconfig"
    embedded_cluster.write_kubeconfig(path)
    client = await connect_cluster(kubeconfig=path, request_timeout=5.0, retry_base_delay=0.02)
    yield client
    embedded_cluster.faults.clear()
    await client.close()


def elector(kube: KubeClient, lease_name: str, identity: str, lease_seconds: int = 2) -> LeaderElector:
    return LeaderElector(kube, "demo", lease_name, identity, lease_seconds, retry_period=0.05)


async def stop(task: asyncio.Task[None]) -> None:
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_one_leader_at_a_time_and_release_hands_over(kube: KubeClient) -> None:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    first, second = elector(kube, name, "replica-a"), elector(kube, name, "replica-b")
    first_task = asyncio.create_task(first.run())
    await asyncio.wait_for(first.wait_until_leader(), 5)
    second_task = asyncio.create_task(second.run())
    try:
        await asyncio.sleep(0.4)  # several rounds: the lease is renewed, never expires
        assert first.is_leader and not second.is_leader
        lease = await kube.get(LEASE, "demo", name)
        assert lease["spec"]["holderIdentity"] == "replica-a"

        await stop(first_task)  # releases the lease on the way out
        assert not first.is_leader
        await asyncio.wait_for(second.wait_until_leader(), 3)
        lease = await kube.get(LEASE, "demo", name)
        assert lease["spec"]["holderIdentity"] == "replica-b"
        assert lease["spec"]["leaseTransitions"] >= 1
    finally:
        await stop(first_task)
        await stop(second_task)


async def test_a_dead_leaders_lease_expires(kube: KubeClient) -> None:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    crashed = elector(kube, name, "crashed", lease_seconds=1)
    assert await crashed.try_acquire_or_renew()  # acquires, then "crashes": never renews nor releases
    survivor = elector(kube, name, "survivor", lease_seconds=1)
    assert not await survivor.try_acquire_or_renew()
    loop = asyncio.get_running_loop()
    started = loop.time()
    task = asyncio.create_task(survivor.run())
    try:
        await asyncio.wait_for(survivor.wait_until_leader(), 5)
        assert loop.time() - started >= 0.9  # not before the lease ran out
    finally:
        await stop(task)


async def test_leader_steps_down_when_it_cannot_renew(embedded_cluster: Any, kube: KubeClient) -> None:
    name = f"gw-{uuid.uuid4().hex[:8]}"
    leader = elector(kube, name, "replica-a", lease_seconds=1)
    task = asyncio.create_task(leader.run())
    try:
        await asyncio.wait_for(leader.wait_until_leader(), 5)
        embedded_cluster.faults.fail(1.0, code=503, resource="leases")
        await asyncio.wait_for(leader.wait_until_not_leader(), 5)
        assert not leader.is_leader
    finally:
        embedded_cluster.faults.clear()
        await stop(task)
