"""Watches tell the truth after a relist.

Invariant: a client that applies a WatchHub stream in order (ADDED/MODIFIED/DELETED)
holds exactly a fresh list of the cluster once things settle, whatever happened in
between: 410 expiries, dropped watches, a cluster restarted at the same address with
other objects and resourceVersions counting from 1 again. Every event must also make
sense to that client when it arrives (no ADDED for what it holds, no MODIFIED or
DELETED for what it does not, no MODIFIED that changes nothing, DELETED naming the
object it holds).

The cluster is the real embedded one over HTTP; its objects are written straight into
its store (instant, and no await in between: what the hub sees is up to the test).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from service.cluster.client import KubeClient, connect_cluster
from service.cluster.kinds import VIRTUAL_DISK_SNAPSHOT
from service.cluster.translate import disk_snapshot_manifest
from service.cluster.watch_hub import Subscription, WatchHub, replace_events, went_back
from service.core.errors import ApiError
from service.core.ports import ClusterClient, ListResult, ResourceKind, WatchEvent
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.support.waiting import wait_for

pytestmark = pytest.mark.timeout(120)

KIND = VIRTUAL_DISK_SNAPSHOT
RESOURCE = f"{KIND.plural}.{KIND.group}"   # the store's key for the kind
NAMESPACES = ("relist-a", "relist-b", "relist-c")
NAMES = ("snap-0", "snap-1", "snap-2", "snap-3")

Obj = dict[str, Any]
Key = tuple[str, str]


def key_of(obj: Obj) -> Key:
    return str(obj["metadata"].get("namespace", "")), str(obj["metadata"]["name"])


def uid_of(obj: Obj) -> str:
    return str(obj["metadata"].get("uid", ""))


def manifest(namespace: str, name: str, generation: int = 0) -> Obj:
    return disk_snapshot_manifest(namespace=namespace, name=name, generate_name="", virtual_disk_name="disk",
                                  required_consistency=False, labels={"generation": str(generation)},
                                  annotations={}, operation_id="op", actor="test")


# ---------------------------------------------------------------- a cluster that restarts


class RestartableCluster:
    """An embedded cluster that can be stopped and started again at the same address with the
    same admin token (so one kubeconfig, and one KubeClient, serve every incarnation), but
    with none of the previous incarnation's objects."""

    def __init__(self, directory: Path) -> None:
        self.kubeconfig = directory / "kubeconfig"
        self.token = uuid.uuid4().hex
        self.port = 0
        self.current: EmbeddedCluster | None = None
        self.incarnations = 0

    @property
    def cluster(self) -> EmbeddedCluster:
        assert self.current is not None, "the cluster is down"
        return self.current

    async def start(self, objects: Iterable[Key] = ()) -> None:
        # No controllers: nothing but the test writes, so every change is one the test made.
        cluster = EmbeddedCluster(EmbeddedClusterConfig(port=self.port, admin_token=self.token, tls=False,
                                                        step_delay=0.0, seed_demo=False, run_controllers=False))
        await cluster.start()
        self.current, self.incarnations = cluster, self.incarnations + 1
        self.port = int(cluster.url.rsplit(":", 1)[1])
        cluster.write_kubeconfig(self.kubeconfig)
        for namespace in NAMESPACES:
            await cluster.store.create("namespaces", {"apiVersion": "v1", "kind": "Namespace",
                                                      "metadata": {"name": namespace}})
        for namespace, name in objects:
            await cluster.store.create(RESOURCE, manifest(namespace, name, 100 * self.incarnations))

    async def stop(self) -> None:
        cluster, self.current = self.current, None
        if cluster is None:
            return
        await cluster.stop()
        # A connection accepted in the very instant the listener closes is dropped by asyncio
        # (Python 3.11: Server._attach asserts) without being closed; the hub's request on it
        # would wait for its own timeout. A dying process would close it: so do we.
        gc.collect()


@contextlib.asynccontextmanager
async def running_cluster(objects: Iterable[Key] = ()) -> AsyncIterator[RestartableCluster]:
    with tempfile.TemporaryDirectory(prefix="relist-") as directory:
        cluster = RestartableCluster(Path(directory))
        await cluster.start(objects)
        try:
            yield cluster
        finally:
            await cluster.stop()


@contextlib.asynccontextmanager
async def hub_for(cluster: RestartableCluster, *, reconnect_delay: float = 0.02,
                  max_reconnect_delay: float = 0.2) -> AsyncIterator[tuple[WatchHub, KubeClient]]:
    kube = await connect_cluster(kubeconfig=cluster.kubeconfig, request_timeout=5.0, retry_base_delay=0.02)
    hub = WatchHub(kube, reconnect_delay=reconnect_delay, max_reconnect_delay=max_reconnect_delay)
    try:
        yield hub, kube
    finally:
        await hub.close()
        await kube.close()


async def restart(cluster: RestartableCluster, hub: WatchHub, objects: Iterable[Key]) -> None:
    """Stop, let the hub find the cluster gone (connection refused for a while), start afresh."""
    await cluster.stop()
    attempts = hub.relists(KIND)
    # Every attempt the hub makes while the cluster is down fails and leaves it relisting.
    await wait_for(lambda: hub.relists(KIND) > attempts, "the hub never noticed the cluster was gone", limit=10.0)
    await cluster.start(objects)


# ---------------------------------------------------------------- a client of the stream


@dataclass
class StreamClient:
    """What a watcher (a gRPC/SSE client, an internal cache) does with the stream: apply each
    event in order. It notes every event that makes no sense against what it holds."""

    namespace: str | None = None
    name: str | None = None
    objects: dict[Key, Obj] = field(default_factory=dict)
    events: list[WatchEvent] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    subscription: Subscription | None = None
    task: asyncio.Task[None] | None = None

    def in_scope(self, key: Key) -> bool:
        return (self.namespace is None or key[0] == self.namespace) and (self.name is None or key[1] == self.name)

    def expected(self, truth: dict[Key, Obj]) -> dict[Key, Obj]:
        return {key: obj for key, obj in truth.items() if self.in_scope(key)}

    def apply(self, event: WatchEvent) -> None:
        self.events.append(event)
        obj = event.object
        key = key_of(obj)
        held = self.objects.get(key)
        if not self.in_scope(key):
            self.problems.append(f"{event.type} {key} is outside {self.namespace}/{self.name}")
        if event.type == "ADDED":
            if held is not None:
                self.problems.append(f"ADDED {key} while holding it")
            self.objects[key] = obj
        elif event.type == "MODIFIED":
            if held is None:
                self.problems.append(f"MODIFIED {key} never added")
            elif held == obj:
                self.problems.append(f"MODIFIED {key} with nothing changed")
            elif uid_of(held) != uid_of(obj):
                self.problems.append(f"MODIFIED {key} turned into another object (uid)")
            self.objects[key] = obj
        elif event.type == "DELETED":
            if held is None:
                self.problems.append(f"DELETED {key} never added")
            elif uid_of(held) != uid_of(obj):
                self.problems.append(f"DELETED {key} names another object than the one held")
            self.objects.pop(key, None)
        else:
            self.problems.append(f"unexpected event type {event.type}")

    async def _consume(self, subscription: Subscription) -> None:
        try:
            async for event in subscription:
                self.apply(event)
        except ApiError as error:
            self.problems.append(f"the stream failed: {error.reason}")

    async def close(self) -> None:
        if self.subscription is not None:
            await self.subscription.aclose()
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task


async def follow(hub: WatchHub, namespace: str | None = None, name: str | None = None) -> StreamClient:
    client = StreamClient(namespace, name)
    client.subscription = hub.subscribe(KIND, namespace, name)
    await client.subscription.__aenter__()   # registered now: the snapshot is queued at once
    client.task = asyncio.create_task(client._consume(client.subscription))
    return client


async def fresh_list(kube: KubeClient) -> dict[Key, Obj]:
    result = await kube.list(KIND, "")
    return {key_of(obj): obj for obj in result.items}


def hub_cache(hub: WatchHub) -> dict[Key, Obj]:
    cached: dict[Key, Obj] = {}
    for namespace in NAMESPACES:
        cached.update({key_of(obj): obj for obj in hub.list_cached(KIND, namespace) or []})
    return cached


async def settled(hub: WatchHub, kube: KubeClient, clients: list[StreamClient],
                  limit: float = 10.0) -> dict[Key, Obj]:
    """Wait until every client (and the hub's own cache) holds the fresh list; returns it."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit
    while True:
        truth = await fresh_list(kube)
        behind = [f"{c.namespace}/{c.name}: holds {sorted(c.objects)}, cluster {sorted(c.expected(truth))}"
                  for c in clients if c.objects != c.expected(truth)]
        if hub_cache(hub) != truth:
            behind.append(f"hub cache: {sorted(hub_cache(hub))}, cluster {sorted(truth)}")
        if not behind:
            return truth
        if loop.time() > deadline:
            raise AssertionError("the streams never matched the cluster:\n" + "\n".join(behind))
        await asyncio.sleep(0.02)


def assert_sensible(clients: list[StreamClient]) -> None:
    problems = [f"{c.namespace}/{c.name}: {p}" for c in clients for p in c.problems]
    assert problems == []


def names(events: list[WatchEvent], event_type: str) -> list[str]:
    return sorted(str(e.object["metadata"]["name"]) for e in events if e.type == event_type)


# ---------------------------------------------------------------- scenarios


async def test_restarted_cluster_is_delivered_as_its_differences() -> None:
    ns_a, ns_b = NAMESPACES[0], NAMESPACES[1]
    first = [(ns_a, "gone"), (ns_a, "stays"), (ns_b, "gone"), (ns_b, "stays")]
    async with running_cluster(first) as cluster, hub_for(cluster) as (hub, kube):
        for index in range(20):   # many writes: the restarted cluster's versions will be behind the hub's
            current = cluster.cluster.store.get(RESOURCE, ns_b, "stays")
            assert current is not None
            current["metadata"]["labels"]["generation"] = str(index)
            await cluster.cluster.store.update(RESOURCE, current)
        everywhere, in_a, one = await follow(hub), await follow(hub, ns_a), await follow(hub, ns_a, "stays")
        before = await settled(hub, kube, [everywhere, in_a, one])
        held_gone = in_a.objects[(ns_a, "gone")]
        old_version = int(before[(ns_b, "stays")]["metadata"]["resourceVersion"])
        in_a.events.clear()

        await restart(cluster, hub, [(ns_a, "stays"), (ns_a, "new"), (ns_b, "stays")])
        after = await settled(hub, kube, [everywhere, in_a, one])
        assert all(int(obj["metadata"]["resourceVersion"]) < old_version for obj in after.values())
        # What the namespace's watcher saw: the gone object as it held it, the same name
        # holding another object as DELETED then ADDED, the new one ADDED, nothing else.
        assert [(e.type, e.object) for e in in_a.events if e.type == "DELETED" and key_of(e.object)[1] == "gone"] \
            == [("DELETED", held_gone)]
        assert names(in_a.events, "DELETED") == ["gone", "stays"]
        assert names(in_a.events, "ADDED") == ["new", "stays"]
        assert names(in_a.events, "MODIFIED") == []
        assert [e.type for e in one.events] == ["ADDED", "DELETED", "ADDED"]

        # The new cluster's events carry versions older than any the hub saw before: delivered.
        in_a.events.clear()
        await cluster.cluster.store.create(RESOURCE, manifest(ns_a, "later"))
        await cluster.cluster.store.delete(RESOURCE, ns_a, "new")
        await settled(hub, kube, [everywhere, in_a, one])
        assert [(e.type, key_of(e.object)[1]) for e in in_a.events] == [("ADDED", "later"), ("DELETED", "new")]

        # A subscriber joining after the relist starts from the new cluster alone.
        late = await follow(hub, ns_a)
        await settled(hub, kube, [everywhere, in_a, one, late])
        assert names(late.events, "ADDED") == ["later", "stays"] and len(late.events) == 2
        assert_sensible([everywhere, in_a, one, late])
        for client in (everywhere, in_a, one, late):
            await client.close()


async def test_quick_restart_behind_the_hub_is_found_before_resuming() -> None:
    """The cluster comes back before the hub even tried to reconnect, so it saw no outage: its
    resourceVersion, behind the hub's, is what gives the restart away."""
    namespace = NAMESPACES[0]
    async with running_cluster([(namespace, name) for name in NAMES]) as cluster, \
            hub_for(cluster, reconnect_delay=1.0, max_reconnect_delay=1.0) as (hub, kube):
        watcher = await follow(hub, namespace)
        await settled(hub, kube, [watcher])
        # The hub's watch is open and has delivered nothing: when the server ends it, the
        # hub waits 0.5-1 s before watching again, and the restart happens meanwhile.
        await wait_for(lambda: cluster.cluster.store.open_subscriptions == 1, "the hub's watch is not open")
        watches = hub.watch_requests(KIND)
        await cluster.stop()
        await cluster.start([(namespace, NAMES[0])])
        truth = await settled(hub, kube, [watcher])
        assert sorted(truth) == [(namespace, NAMES[0])]
        assert hub.relists(KIND) == 2                  # the first list and this one; no failed attempt
        assert hub.watch_requests(KIND) == watches + 1  # the first request made went to the new cluster
        assert names(watcher.events, "DELETED") == sorted(NAMES)
        assert_sensible([watcher])
        await watcher.close()


async def test_relist_after_410_sends_only_what_changed() -> None:
    namespace, other = NAMESPACES[0], NAMESPACES[1]
    start = [(namespace, n) for n in ("keep", "change", "remove", "recreate")] + [(other, "elsewhere")]
    async with running_cluster(start) as cluster, hub_for(cluster) as (hub, kube):
        before_relist, everywhere = await follow(hub, namespace), await follow(hub)
        await settled(hub, kube, [before_relist, everywhere])
        await wait_for(lambda: cluster.cluster.store.open_subscriptions == 1, "the hub's watch is not open")
        held = dict(before_relist.objects)
        before_relist.events.clear()
        everywhere.events.clear()
        relists = hub.relists(KIND)
        store = cluster.cluster.store
        # The watch ends with 410 and the history is compacted; nothing awaits in between,
        # so the hub learns of these writes from the relist alone.
        cluster.cluster.faults.expire_watches()
        changed = store.get(RESOURCE, namespace, "change")
        assert changed is not None
        changed["metadata"]["labels"]["generation"] = "2"
        await store.update(RESOURCE, changed)
        await store.delete(RESOURCE, namespace, "remove")
        await store.delete(RESOURCE, namespace, "recreate")
        await store.create(RESOURCE, manifest(namespace, "recreate"))
        await store.create(RESOURCE, manifest(namespace, "added"))
        await wait_for(lambda: hub.relists(KIND) > relists and (namespace, "added") in hub_cache(hub),
                       "no relist after 410")
        joined_after = await follow(hub, namespace)
        clients = [before_relist, everywhere, joined_after]
        await settled(hub, kube, clients)
        got = sorted((e.type, key_of(e.object)[1]) for e in before_relist.events)
        assert got == [("ADDED", "added"), ("ADDED", "recreate"), ("DELETED", "recreate"),
                       ("DELETED", "remove"), ("MODIFIED", "change")]
        # DELETED carries the last object the watcher knew, not a bare name.
        deleted = {key_of(e.object)[1]: e.object for e in before_relist.events if e.type == "DELETED"}
        assert deleted == {"remove": held[(namespace, "remove")], "recreate": held[(namespace, "recreate")]}
        assert everywhere.events and all(key_of(e.object)[0] == namespace for e in everywhere.events)
        assert_sensible(clients)
        for client in clients:
            await client.close()


# ---------------------------------------------------------------- the invariant, at random

NS_INDEX = st.integers(min_value=0, max_value=len(NAMESPACES) - 1)
NAME_INDEX = st.integers(min_value=0, max_value=len(NAMES) - 1)
OBJECT_KEYS = st.tuples(NS_INDEX, NAME_INDEX)
OPERATIONS = st.one_of(
    st.tuples(st.sampled_from(["create", "update", "delete"]), OBJECT_KEYS),
    st.tuples(st.sampled_from(["expire", "drop", "pause"]), st.none()),
    st.tuples(st.just("restart"), st.sets(OBJECT_KEYS, max_size=6)),
    st.tuples(st.just("join"), st.one_of(st.none(), NS_INDEX)),
)


def _object_key(indexes: tuple[int, int]) -> Key:
    return NAMESPACES[indexes[0]], NAMES[indexes[1]]


async def _run_operations(operations: list[tuple[str, Any]]) -> None:
    async with running_cluster() as cluster, hub_for(cluster, max_reconnect_delay=0.1) as (hub, kube):
        clients = [await follow(hub), await follow(hub, NAMESPACES[0]), await follow(hub, NAMESPACES[1], NAMES[0])]
        written = 0
        try:
            for operation, argument in operations:
                store = cluster.cluster.store
                if operation in ("create", "update", "delete"):
                    namespace, name = _object_key(argument)
                    current = store.get(RESOURCE, namespace, name)
                    written += 1
                    if operation == "create" and current is None:
                        await store.create(RESOURCE, manifest(namespace, name, written))
                    elif operation == "update" and current is not None:
                        current["metadata"]["labels"]["generation"] = str(written)
                        await store.update(RESOURCE, current)
                    elif operation == "delete" and current is not None:
                        await store.delete(RESOURCE, namespace, name)
                elif operation == "expire":
                    cluster.cluster.faults.expire_watches()
                elif operation == "drop":
                    cluster.cluster.faults.drop_watches()
                elif operation == "pause":
                    await asyncio.sleep(0.05)   # let the hub catch up part of the way
                elif operation == "restart":
                    await restart(cluster, hub, [_object_key(indexes) for indexes in argument])
                elif operation == "join":
                    clients.append(await follow(hub, None if argument is None else NAMESPACES[argument]))
                await asyncio.sleep(0)
            await settled(hub, kube, clients)
            assert_sensible(clients)
        finally:
            for client in clients:
                await client.close()


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(operations=st.lists(OPERATIONS, min_size=1, max_size=16))
async def test_stream_built_cache_equals_a_fresh_list(operations: list[tuple[str, Any]]) -> None:
    await _run_operations(operations)


# ---------------------------------------------------------------- a stream whose history changed


class ScriptedCluster:
    """Just the list and watch of a ClusterClient, fed by the test: a watch that keeps going
    while the objects behind it are swapped is what a cluster replaced between the hub's
    probe and its watch request looks like."""

    def __init__(self, objects: list[Obj], resource_version: int) -> None:
        self.objects, self.resource_version = objects, resource_version
        self.stream: asyncio.Queue[WatchEvent] = asyncio.Queue()
        self.watched_from: list[str] = []

    async def list(self, kind: ResourceKind, namespace: str, *, label_selector: str = "", limit: int = 0,
                   continue_token: str = "") -> ListResult:
        return ListResult(items=list(self.objects), continue_token="", resource_version=str(self.resource_version))

    def watch(self, kind: ResourceKind, namespace: str | None, resource_version: str,
              *, timeout_seconds: int = 300) -> AsyncIterator[WatchEvent]:
        self.watched_from.append(resource_version)
        return self._events()

    async def _events(self) -> AsyncIterator[WatchEvent]:
        while True:
            yield await self.stream.get()


def scripted(name: str, version: int, uid: str) -> Obj:
    return {"apiVersion": KIND.api_version, "kind": KIND.kind,
            "metadata": {"namespace": NAMESPACES[0], "name": name, "uid": uid, "resourceVersion": str(version)}}


@pytest.mark.parametrize("event_type", ["ADDED", "BOOKMARK"])
async def test_an_event_older_than_the_cache_makes_the_hub_relist(event_type: str) -> None:
    upstream = ScriptedCluster([scripted("x", 10, "x1"), scripted("y", 11, "y1")], 11)
    hub = WatchHub(cast(ClusterClient, upstream), reconnect_delay=0.01, max_reconnect_delay=0.01)
    watcher = StreamClient()
    try:
        watcher.subscription = hub.subscribe(KIND)
        await watcher.subscription.__aenter__()
        watcher.task = asyncio.create_task(watcher._consume(watcher.subscription))
        await wait_for(lambda: len(watcher.objects) == 2, "no initial list")
        # Another cluster now answers, counting from 1: "y" is another object, "x" is gone.
        upstream.objects, upstream.resource_version = [scripted("y", 2, "y2"), scripted("z", 3, "z1")], 3
        stale = scripted("z", 3, "z1") if event_type == "ADDED" else {"metadata": {"resourceVersion": "3"}}
        await upstream.stream.put(WatchEvent(event_type, stale))
        await wait_for(lambda: sorted(watcher.objects) == [(NAMESPACES[0], "y"), (NAMESPACES[0], "z")]
                       and uid_of(watcher.objects[(NAMESPACES[0], "y")]) == "y2", "the hub kept the old cluster")
        assert hub.relists(KIND) == 2
        assert upstream.watched_from == ["11", "3"]
        assert_sensible([watcher])
    finally:
        await watcher.close()
        await hub.close()


def test_replace_events_and_version_order() -> None:
    def obj(name: str, version: str, uid: str, label: str = "") -> Obj:
        return {"metadata": {"namespace": "ns", "name": name, "resourceVersion": version, "uid": uid,
                             "labels": {"l": label}}}

    old = {("ns", n): o for n, o in (("same", obj("same", "5", "s")), ("gone", obj("gone", "6", "g")),
                                     ("older", obj("older", "9", "o")), ("swapped", obj("swapped", "7", "a")))}
    fresh = {("ns", n): o for n, o in (("same", obj("same", "5", "s")), ("older", obj("older", "3", "o")),
                                       ("swapped", obj("swapped", "7", "b")), ("new", obj("new", "8", "n")))}
    got = [(e.type, e.object["metadata"]["name"], e.object["metadata"]["uid"]) for e in replace_events(old, fresh)]
    assert got == [("DELETED", "gone", "g"), ("MODIFIED", "older", "o"), ("DELETED", "swapped", "a"),
                   ("ADDED", "swapped", "b"), ("ADDED", "new", "n")]
    assert went_back("3", "9", allow_equal=False) and went_back("9", "9", allow_equal=False)
    assert not went_back("9", "9", allow_equal=True) and not went_back("10", "9", allow_equal=False)
    # Opaque (non-numeric) versions are never compared; an empty one neither.
    assert not went_back("abc", "9", allow_equal=False) and not went_back("3", "", allow_equal=False)

