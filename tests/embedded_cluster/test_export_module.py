"""A cluster without the DataExport module (storage-volume-data-manager disabled): the
resource type is not served at all and no exporter exists, as on a real cluster."""

from __future__ import annotations

from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio

from service.embedded_cluster.cli import config_of, parser
from service.embedded_cluster.controllers import resources as R
from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

from .test_controllers_kit import KubeError, demo_ready, kube

NS = "demo"
GROUP_VERSION = "/apis/deckhouse.io/v1alpha1"
EXPORT = {"apiVersion": R.DATAEXPORT_API_VERSION, "kind": "DataExport", "metadata": {"name": "nope"},
          "spec": {"ttl": "2m", "targetRef": {"kind": "VirtualDisk", "name": "spare-disk"}}}


@pytest_asyncio.fixture
async def cluster_without_exports() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(EmbeddedClusterConfig(step_delay=0.0, seed_demo=True, export_module=False)) as cluster:
        yield cluster


async def test_dataexports_are_not_served(cluster_without_exports: EmbeddedCluster) -> None:
    async with kube(cluster_without_exports) as k:
        await demo_ready(k)     # the rest of the platform works as usual
        for call in (k.create(R.DATAEXPORT, NS, EXPORT), k.list(R.DATAEXPORT, NS)):
            with pytest.raises(KubeError) as caught:
                await call
            assert caught.value.status == 404
            assert caught.value.body["reason"] == "NotFound"
        assert await k.get(R.DATAEXPORT, NS, "nope") is None


async def test_discovery_does_not_list_dataexports(cluster_without_exports: EmbeddedCluster) -> None:
    cluster = cluster_without_exports
    headers = {"Authorization": f"Bearer {cluster.admin_token}"}
    async with aiohttp.ClientSession(headers=headers) as session:
        async with session.get(f"{cluster.url}/apis") as response:
            groups = {group["name"] for group in (await response.json())["groups"]}
        assert "virtualization.deckhouse.io" in groups and "deckhouse.io" not in groups
        for path in ("/apis/deckhouse.io", GROUP_VERSION):
            async with session.get(f"{cluster.url}{path}") as response:
                assert response.status == 404, path


async def test_no_exporter_routes(cluster_without_exports: EmbeddedCluster) -> None:
    cluster = cluster_without_exports
    url = f"{cluster.url}/dataexport/{NS}/nope/api/v1/block"
    async with aiohttp.ClientSession() as session:
        async with session.get(url, headers={"Authorization": f"Bearer {cluster.admin_token}"}) as response:
            assert response.status == 404
            assert (await response.json())["message"] == "the server could not find the requested resource"
        async with session.get(url) as response:
            assert response.status == 401    # an ordinary API path now: no exemption from authentication


async def test_the_module_is_served_by_default(embedded_cluster: EmbeddedCluster) -> None:
    headers = {"Authorization": f"Bearer {embedded_cluster.admin_token}"}
    async with aiohttp.ClientSession(headers=headers) as session, \
            session.get(f"{embedded_cluster.url}{GROUP_VERSION}") as response:
        names = {resource["name"] for resource in (await response.json())["resources"]}
    assert "dataexports" in names


def test_cli_flags() -> None:
    assert config_of(parser().parse_args(["serve", "--no-export-module"])).export_module is False
    default = config_of(parser().parse_args(["serve"]))
    assert default.export_module is True and default.export_chunk == EmbeddedClusterConfig().export_chunk
    assert config_of(parser().parse_args(["serve", "--export-chunk", "65536"])).export_chunk == 65536
    with pytest.raises(ValueError, match="export_chunk"):
        config_of(parser().parse_args(["serve", "--export-chunk", "0"]))
