"""Watch over real HTTP: initial events, resume without loss, 410 past the window,
bookmarks, selectors, dropped and expired watches, slow watchers."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest_asyncio
from kubernetes_asyncio import watch
from kubernetes_asyncio.client import CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig
from tests.support.cluster import api_client
from tests.support.waiting import wait_for

NS = "w"
BASE = "/apis/virtualization.deckhouse.io/v1alpha2"
COLLECTION = f"{BASE}/namespaces/{NS}/virtualdisksnapshots"


def snapshot(name: str, labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDiskSnapshot",
            "metadata": {"name": name, "namespace": NS, "labels": labels or {}},
            "spec": {"virtualDiskName": "d"}}


@pytest_asyncio.fixture
async def cluster() -> AsyncIterator[EmbeddedCluster]:
    config = EmbeddedClusterConfig(seed_demo=False, run_controllers=False, watch_history=20, bookmark_interval=0.2)
    async with EmbeddedCluster(config) as started:
        await started.store.create("namespaces", {"metadata": {"name": NS}})
        yield started


@pytest_asyncio.fixture
async def http(cluster: EmbeddedCluster) -> AsyncIterator[aiohttp.ClientSession]:
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    async with aiohttp.ClientSession(cluster.url, headers=headers) as session:
        yield session


async def create(cluster: EmbeddedCluster, name: str, labels: dict[str, str] | None = None) -> str:
    created = await cluster.store.create("virtualdisksnapshots.virtualization.deckhouse.io", snapshot(name, labels))
    return str(created["metadata"]["resourceVersion"])


async def read_events(response: aiohttp.ClientResponse, count: int, limit: float = 5.0) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    async with asyncio.timeout(limit):
        while len(events) < count:
            line = await response.content.readline()
            if not line:
                break
            events.append(json.loads(line))
    return events


def summary(events: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(e["type"], e["object"].get("metadata", {}).get("name", "")) for e in events]


async def test_initial_list_then_changes(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    await create(cluster, "a")
    async with http.get(COLLECTION, params={"watch": "1"}) as response:
        assert response.status == 200
        assert summary(await read_events(response, 1)) == [("ADDED", "a")]
        await create(cluster, "b")
        await cluster.store.delete("virtualdisksnapshots.virtualization.deckhouse.io", NS, "a")
        assert summary(await read_events(response, 2)) == [("ADDED", "b"), ("DELETED", "a")]


async def test_resume_from_resource_version_loses_nothing(cluster: EmbeddedCluster,
                                                          http: aiohttp.ClientSession) -> None:
    start = await create(cluster, "first")
    async with http.get(COLLECTION, params={"watch": "true", "resourceVersion": start}) as response:
        await create(cluster, "second")
        events = await read_events(response, 1)
        last_seen = events[-1]["object"]["metadata"]["resourceVersion"]
    # Changes made while no one watches arrive on the resumed watch, in order, without duplicates.
    for name in ("third", "fourth"):
        await create(cluster, name)
    async with http.get(COLLECTION, params={"watch": "true", "resourceVersion": last_seen}) as response:
        assert summary(await read_events(response, 2)) == [("ADDED", "third"), ("ADDED", "fourth")]


async def test_too_old_resource_version_is_410(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    old = await create(cluster, "old")
    for index in range(25):   # more than watch_history=20 events
        await create(cluster, f"n{index}")
    async with http.get(COLLECTION, params={"watch": "1", "resourceVersion": old}) as response:
        assert response.status == 200
        (event,) = await read_events(response, 1)
        assert event["type"] == "ERROR"
        assert event["object"]["code"] == 410 and event["object"]["reason"] == "Expired"
        assert await response.content.readline() == b""   # the stream ends after the error


async def test_bookmarks_periodic_and_final(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    current = await create(cluster, "x")
    params = {"watch": "1", "resourceVersion": current, "allowWatchBookmarks": "true", "timeoutSeconds": "1"}
    async with http.get(COLLECTION, params=params) as response:
        events = await read_events(response, 100, limit=5)
    assert len(events) >= 2 and {e["type"] for e in events} == {"BOOKMARK"}
    assert events[-1]["object"]["metadata"]["resourceVersion"] == current
    assert events[-1]["object"]["kind"] == "VirtualDiskSnapshot"


async def test_label_selector_turns_unmatch_into_deleted(cluster: EmbeddedCluster,
                                                         http: aiohttp.ClientSession) -> None:
    await create(cluster, "sel", {"team": "a"})
    async with http.get(COLLECTION, params={"watch": "1", "labelSelector": "team=a"}) as response:
        assert summary(await read_events(response, 1)) == [("ADDED", "sel")]
        await create(cluster, "other", {"team": "b"})
        obj = cluster.store.get("virtualdisksnapshots.virtualization.deckhouse.io", NS, "sel")
        assert obj is not None
        obj["metadata"]["labels"] = {"team": "b"}
        await cluster.store.update("virtualdisksnapshots.virtualization.deckhouse.io", obj)
        assert summary(await read_events(response, 1)) == [("DELETED", "sel")]


async def test_dropped_watch_resumes_without_loss(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    start = await create(cluster, "before")
    async with http.get(COLLECTION, params={"watch": "1", "resourceVersion": start}) as response:
        await create(cluster, "one")
        (event,) = await read_events(response, 1)
        cluster.faults.drop_watches()
        assert await response.content.readline() == b""
    await create(cluster, "two")
    resume = event["object"]["metadata"]["resourceVersion"]
    async with http.get(COLLECTION, params={"watch": "1", "resourceVersion": resume}) as response:
        assert summary(await read_events(response, 1)) == [("ADDED", "two")]


async def test_expired_watches_get_410(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    start = await create(cluster, "e")
    async with http.get(COLLECTION, params={"watch": "1", "resourceVersion": start}) as response:
        await asyncio.sleep(0.05)
        cluster.faults.expire_watches()
        (event,) = await read_events(response, 1)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410
    async with http.get(COLLECTION, params={"watch": "1", "resourceVersion": str(int(start) - 1)}) as response:
        (event,) = await read_events(response, 1)
        assert event["type"] == "ERROR" and event["object"]["code"] == 410


async def test_slow_watcher_is_closed_not_buffered(cluster: EmbeddedCluster) -> None:
    backlog, subscription = cluster.store.watch("virtualdisksnapshots.virtualization.deckhouse.io", None,
                                                queue_size=3)
    assert backlog == []
    for index in range(5):
        await create(cluster, f"slow{index}")
    assert subscription.overflowed and subscription.closed
    received = [event async for event in subscription]
    assert len(received) == 3


async def test_kubernetes_asyncio_watch(cluster: EmbeddedCluster) -> None:
    await create(cluster, "k1")
    async with api_client(cluster) as client:
        api = CustomObjectsApi(client)
        listing = await api.list_namespaced_custom_object("virtualization.deckhouse.io", "v1alpha2", NS,
                                                          "virtualdisksnapshots")
        seen: list[tuple[str, str]] = []
        stream = watch.Watch().stream(api.list_namespaced_custom_object, "virtualization.deckhouse.io",
                                      "v1alpha2", NS, "virtualdisksnapshots",
                                      resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=5)
        await create(cluster, "k2")
        async with asyncio.timeout(5):
            async for event in stream:
                seen.append((event["type"], event["object"]["metadata"]["name"]))
                break
        assert seen == [("ADDED", "k2")]
        for index in range(25):
            await create(cluster, f"m{index}")
        expired = watch.Watch().stream(api.list_namespaced_custom_object, "virtualization.deckhouse.io",
                                       "v1alpha2", NS, "virtualdisksnapshots",
                                       resource_version=listing["metadata"]["resourceVersion"], timeout_seconds=5)
        try:
            async with asyncio.timeout(5):
                async for _ in expired:
                    raise AssertionError("no event may come from a too-old resourceVersion")
        except ApiException as error:
            assert error.status == 410
        else:
            raise AssertionError("a 410 ApiException was expected")


async def test_legacy_watch_path_and_table_events(cluster: EmbeddedCluster, http: aiohttp.ClientSession) -> None:
    await create(cluster, "legacy")
    async with http.get(f"{BASE}/watch/namespaces/{NS}/virtualdisksnapshots") as response:
        assert summary(await read_events(response, 1)) == [("ADDED", "legacy")]
    table = {"Accept": "application/json;as=Table;v=v1;g=meta.k8s.io"}
    async with http.get(COLLECTION, params={"watch": "1"}, headers=table) as response:
        (event,) = await read_events(response, 1)
    assert event["type"] == "ADDED" and event["object"]["kind"] == "Table"
    assert event["object"]["rows"][0]["cells"][0] == "legacy"


async def test_idle_watch_of_a_departed_client_is_freed(cluster: EmbeddedCluster) -> None:
    before = cluster.store.open_subscriptions
    session = aiohttp.ClientSession(cluster.url, headers={"Authorization": f"Bearer {cluster.admin_token}"})
    response = await session.get(COLLECTION, params={"watch": "1", "resourceVersion": "1"})
    await wait_for(lambda: cluster.store.open_subscriptions > before, "the watch is not open", limit=5)
    response.close()
    await session.close()
    await wait_for(lambda: cluster.store.open_subscriptions == before, "the watch was not let go", limit=6)
