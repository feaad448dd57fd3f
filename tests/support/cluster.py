"""Fixtures: a started embedded cluster (real HTTP on 127.0.0.1) and a kubectl runner.

``kubectl`` (client-go) never sends a bearer token over plain HTTP, so ``run_kubectl``
needs a TLS cluster (``embedded_cluster_tls``)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
import yaml
from kubernetes_asyncio.client import ApiClient, Configuration
from kubernetes_asyncio.config import load_kube_config_from_dict

from service.embedded_cluster.server import EmbeddedCluster, EmbeddedClusterConfig

KUBECTL = "/usr/bin/kubectl"


@pytest_asyncio.fixture
async def embedded_cluster() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(EmbeddedClusterConfig(step_delay=0.0, seed_demo=True)) as cluster:
        yield cluster


@pytest_asyncio.fixture
async def embedded_cluster_tls() -> AsyncIterator[EmbeddedCluster]:
    async with EmbeddedCluster(EmbeddedClusterConfig(step_delay=0.0, seed_demo=True, tls=True)) as cluster:
        yield cluster


def _kubectl(kubeconfig: dict[str, object], args: tuple[str, ...], stdin: str | None,
             timeout: float) -> subprocess.CompletedProcess[str]:
    with tempfile.TemporaryDirectory(prefix="kubectl-") as directory:
        path = Path(directory, "kubeconfig")
        path.write_text(yaml.safe_dump(kubeconfig))
        path.chmod(0o600)
        # A private cache dir: discovery must come from this server, not a stale cache of another run.
        command = [KUBECTL, "--kubeconfig", str(path), "--cache-dir", str(Path(directory, "cache")), *args]
        return subprocess.run(command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False)


async def run_kubectl(cluster: EmbeddedCluster, *args: str, input: str | None = None,
                      token: str | None = None, process_timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
    """Run the real kubectl against ``cluster`` in a thread (the server runs in this event loop)."""
    return await asyncio.to_thread(_kubectl, cluster.kubeconfig(token=token), tuple(args), input, process_timeout)


@contextlib.asynccontextmanager
async def api_client(cluster: EmbeddedCluster, *, token: str | None = None) -> AsyncIterator[ApiClient]:
    """A kubernetes-asyncio client configured from the cluster's kubeconfig (as the gateway would be)."""
    configuration = Configuration()
    with tempfile.TemporaryDirectory(prefix="kube-") as directory:
        await load_kube_config_from_dict(cluster.kubeconfig(token=token), client_configuration=configuration,
                                         temp_file_path=directory)
        async with ApiClient(configuration) as client:
            yield client
