"""WatchHub against the real embedded cluster: fan-out, resume, relist, slow subscribers, filters."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio.client import ApiClient, CoreV1Api

from service.cluster.client import KubeClient, connect_cluster
from service.cluster.config import load_configuration
from service.cluster.kinds import VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT
from service.cluster.translate import disk_snapshot_manifest
from service.cluster.watch_hub import Subscription, WatchHub
from service.core.errors import ApiError
from service.core.ports import ResourceKind, WatchEvent

pytestmark = pytest.mark.timeout(60)

KIND = VIRTUAL_DISK_SNAPSHOT


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def body(namespace: str, name: str) -> dict[str, Any]:
    return disk_snapshot_manifest(namespace=namespace, name=name, generate_name="", virtual_disk_name="linux-vm-root",
                                  required_consistency=False, labels={}, annotations={}, operation_id="op",
                                  actor="test")


@pytest.fixture
async def kubeconfig(embedded_cluster: Any, tmp_path: Path) -> Path:
    path = tmp_path / "kubeconfig"
    embedded_cluster.write_kubeconfig(path)
    return path


@pytest.fixture
async def kube(kubeconfig: Path, embedded_cluster: Any) -> AsyncIterator[KubeClient]:
    client = await connect_cluster(kubeconfig=kubeconfig, request_timeout=5.0, retry_base_delay=0.02)
    yield client
    embedded_cluster.faults.clear()
    await client.close()


@pytest.fixture
async def hub(kube: KubeClient) -> AsyncIterator[WatchHub]:
    watch_hub = WatchHub(kube, reconnect_delay=0.02, max_reconnect_delay=0.2)
    yield watch_hub
    await watch_hub.close()


@pytest.fixture
async def namespace(kubeconfig: Path) -> str:
    """A fresh namespace, so tests see only their own objects."""
    name = unique("hub")
    api = ApiClient(configuration=await load_configuration(kubeconfig=kubeconfig))
    try:
        await CoreV1Api(api).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
    finally:
        await api.close()
    return name


async def next_event(sub: Subscription) -> WatchEvent:
    return await asyncio.wait_for(anext(sub), 5.0)


async def collect_until(sub: Subscription, done: Any) -> list[WatchEvent]:
    """Events until ``done(events)`` is true (10 s at most)."""
    events: list[WatchEvent] = []
    async with asyncio.timeout(10.0):
        while not done(events):
            events.append(await anext(sub))
    return events


async def watch_established(hub: WatchHub, kube: KubeClient, sub: Subscription, namespace: str) -> None:
    """Wait until the hub's upstream watch is open: an object created after the initial list can
    only reach us through it."""
    await hub.wait_synced(KIND)
    marker = unique("marker")
    await kube.create(KIND, namespace, body(namespace, marker))
    await collect_until(sub, lambda ev: marker in added_names(ev))


def name_of(event: WatchEvent) -> str:
    return str(event.object["metadata"]["name"])


def added_names(events: list[WatchEvent]) -> set[str]:
    return {name_of(e) for e in events if e.type == "ADDED"}


async def test_one_upstream_watch_for_ten_subscribers(hub: WatchHub, kube: KubeClient, namespace: str) -> None:
    subs = [hub.subscribe(KIND, namespace) for _ in range(10)]
    for sub in subs:
        await sub.__aenter__()
    await hub.wait_synced(KIND)
    name = unique("snap")
    await kube.create(KIND, namespace, body(namespace, name))
    for sub in subs:
        event = await next_event(sub)
        assert (event.type, name_of(event)) == ("ADDED", name)
    assert hub.upstream_watches_started(KIND) == 1
    assert hub.watch_requests(KIND) == 1
    assert hub.subscriber_count(KIND) == 10
    for sub in subs:
        await sub.aclose()
    assert hub.subscriber_count(KIND) == 0


async def test_new_subscriber_gets_current_objects_first(hub: WatchHub, kube: KubeClient, namespace: str) -> None:
    async with hub.subscribe(VIRTUAL_DISK, "demo", "linux-vm-root") as sub:
        event = await next_event(sub)
        assert (event.type, name_of(event)) == ("ADDED", "linux-vm-root")
    await hub.wait_synced(VIRTUAL_DISK)
    assert hub.get_cached(VIRTUAL_DISK, "demo", "linux-vm-root") is not None
    assert hub.get_cached(VIRTUAL_DISK, "demo", "nope") is None
    # A later subscriber is served from the warm cache: current objects first, all as ADDED.
    async with hub.subscribe(VIRTUAL_DISK, "demo") as again:
        snapshot = await collect_until(again, lambda ev: any(name_of(e) == "linux-vm-root" for e in ev))
        assert {e.type for e in snapshot} == {"ADDED"}
    assert hub.upstream_watches_started(VIRTUAL_DISK) == 1


async def test_filters_by_namespace_and_name(hub: WatchHub, kube: KubeClient, namespace: str, kubeconfig: Path) -> None:
    other = unique("hub-other")
    api = ApiClient(configuration=await load_configuration(kubeconfig=kubeconfig))
    try:
        await CoreV1Api(api).create_namespace({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": other}})
    finally:
        await api.close()
    async with (hub.subscribe(KIND, namespace) as in_ns, hub.subscribe(KIND, other) as in_other,
                hub.subscribe(KIND, namespace, "snap-a") as one, hub.subscribe(KIND) as everywhere):
        await hub.wait_synced(KIND)
        for ns, name in ((namespace, "snap-a"), (namespace, "snap-b"), (other, "snap-c")):
            await kube.create(KIND, ns, body(ns, name))

        got_ns = await collect_until(in_ns, lambda ev: added_names(ev) >= {"snap-a", "snap-b"})
        got_other = await collect_until(in_other, lambda ev: "snap-c" in added_names(ev))
        got_one = await collect_until(one, lambda ev: "snap-a" in added_names(ev))
        got_all = await collect_until(
            everywhere, lambda ev: {(e.object["metadata"]["namespace"], name_of(e)) for e in ev}
            >= {(namespace, "snap-a"), (namespace, "snap-b"), (other, "snap-c")})

        assert {e.object["metadata"]["namespace"] for e in got_ns} == {namespace}
        assert {e.object["metadata"]["namespace"] for e in got_other} == {other}
        assert {name_of(e) for e in got_one} == {"snap-a"}
        assert got_all
        await kube.delete(KIND, other, "snap-c")
        deleted = await collect_until(in_other, lambda ev: any(e.type == "DELETED" for e in ev))
        assert deleted[-1].type == "DELETED" and name_of(deleted[-1]) == "snap-c"


async def test_resumes_after_dropped_watches_without_losing_events(
        embedded_cluster: Any, hub: WatchHub, kube: KubeClient, namespace: str) -> None:
    async with hub.subscribe(KIND, namespace) as sub:
        await watch_established(hub, kube, sub, namespace)
        names = [unique("snap") for _ in range(6)]
        for index, name in enumerate(names):
            if index % 2 == 0:
                embedded_cluster.faults.drop_watches()
            await kube.create(KIND, namespace, body(namespace, name))
        events = await collect_until(sub, lambda ev: added_names(ev) >= set(names))
        added = [name_of(e) for e in events if e.type == "ADDED"]
        assert sorted(added) == sorted(names)  # each exactly once
        seen = [(name_of(e), e.object["metadata"]["resourceVersion"]) for e in events]
        assert len(seen) == len(set(seen))  # no event delivered twice
    assert hub.watch_requests(KIND) >= 2
    assert hub.relists(KIND) == 1  # resumed from the last resourceVersion, never relisted
    assert hub.upstream_watches_started(KIND) == 1


async def test_relists_after_410_and_emits_the_differences(
        embedded_cluster: Any, hub: WatchHub, kube: KubeClient, namespace: str) -> None:
    keep, change, remove = unique("keep"), unique("change"), unique("remove")
    for name in (keep, change, remove):
        await kube.create(KIND, namespace, body(namespace, name))
    async with hub.subscribe(KIND, namespace) as sub:
        await collect_until(sub, lambda ev: added_names(ev) >= {keep, change, remove})
        await watch_established(hub, kube, sub, namespace)
        # Keep the hub from reconnecting while the cluster changes behind its back.
        embedded_cluster.faults.fail(1.0, code=503, verb="watch", resource=KIND.plural)
        embedded_cluster.faults.fail(1.0, code=503, verb="list", resource=KIND.plural)
        embedded_cluster.faults.expire_watches()
        added = unique("added")
        await kube.create(KIND, namespace, body(namespace, added))
        await kube.patch_merge(KIND, namespace, change, {"metadata": {"labels": {"changed": "yes"}}})
        await kube.delete(KIND, namespace, remove)
        embedded_cluster.faults.clear()

        def complete(events: list[WatchEvent]) -> bool:
            return (added in added_names(events)
                    and any(e.type == "MODIFIED" and name_of(e) == change
                            and e.object["metadata"].get("labels", {}).get("changed") == "yes" for e in events)
                    and any(e.type == "DELETED" and name_of(e) == remove for e in events))

        events = await collect_until(sub, complete)
        assert keep not in added_names(events)
    assert hub.relists(KIND) >= 2
    assert hub.upstream_watches_started(KIND) == 1


async def test_slow_subscriber_is_disconnected(kube: KubeClient, namespace: str) -> None:
    hub = WatchHub(kube, reconnect_delay=0.02)
    try:
        async with hub.subscribe(KIND, namespace, queue_size=2) as slow, hub.subscribe(KIND, namespace) as fast:
            await hub.wait_synced(KIND)
            names = [unique("snap") for _ in range(6)]
            received: list[WatchEvent] = []
            for name in names:
                await kube.create(KIND, namespace, body(namespace, name))
                received += await collect_until(fast, lambda ev, n=name: n in added_names(ev))
            assert added_names(received) >= set(names)
            with pytest.raises(ApiError) as caught:
                async with asyncio.timeout(5):
                    async for _ in slow:
                        pass
            assert (caught.value.code.value, caught.value.reason) == ("ABORTED", "WATCH_OVERFLOW")
            assert hub.subscriber_count(KIND) == 1
    finally:
        await hub.close()


async def test_unwatchable_kind_fails_its_subscribers(hub: WatchHub) -> None:
    missing = ResourceKind("deckhouse.io", "v1alpha1", "nonexistentexports", "NonexistentExport")
    async with hub.subscribe(missing, "demo") as sub:
        with pytest.raises(ApiError) as caught:
            await next_event(sub)
    assert caught.value.reason == "MODULE_NOT_ENABLED"
    with pytest.raises(ApiError):
        await hub.wait_synced(missing)
    assert hub.upstream_watches_started(missing) == 2  # a later subscriber tries again


async def test_close_ends_subscriptions(kube: KubeClient) -> None:
    hub = WatchHub(kube)
    sub = hub.subscribe(KIND, "demo")
    await sub.__aenter__()
    await hub.wait_synced(KIND)
    await hub.close()
    with pytest.raises(ApiError) as caught:
        async with asyncio.timeout(5):
            async for _ in sub:
                pass
    assert caught.value.reason == "WATCH_HUB_CLOSED"
