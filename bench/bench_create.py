#!/usr/bin/env python3
"""Create latency and throughput: the gateway (gRPC and REST) against its baseline, a
direct VirtualDiskSnapshot create on the same embedded cluster with kubernetes-asyncio.

The gateway does strictly more per create (authenticate, authorize, audit append,
validate, read the disk and its VM, write-ahead operation row, the create itself, the
RUNNING update), so the ratio says what that bookkeeping costs.

    .venv/bin/python bench/bench_create.py [--n 300] [--concurrency 16] [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
import grpc
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import stack
from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc

NS = "demo"
DISK = "spare-disk"  # detached: every snapshot is consistent and completes at once


def _report(label: str, latencies: list[float], wall: float) -> float:
    latencies.sort()
    p50 = statistics.median(latencies) * 1000
    p95 = latencies[int(len(latencies) * 0.95) - 1] * 1000
    rate = len(latencies) / wall
    print(f"{label:34} n={len(latencies):4}  p50={p50:7.2f} ms  p95={p95:7.2f} ms  {rate:8.1f} creates/s")
    return p50


async def _run(n: int, concurrency: int, make: Callable[[int], Awaitable[None]]) -> tuple[list[float], float]:
    latencies: list[float] = []
    counter = iter(range(n))

    async def worker() -> None:
        for i in counter:
            start = time.perf_counter()
            await make(i)
            latencies.append(time.perf_counter() - start)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies, time.perf_counter() - start


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temp dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), database_url=args.database_url) as running:
        print(f"embedded cluster and gateway as separate processes, step delay 0; database "
              f"{(args.database_url or 'sqlite').split(':')[0]}; n={args.n} concurrency={args.concurrency}")
        cfg = kclient.Configuration()
        await kconfig.load_kube_config(config_file=str(running.kubeconfig), client_configuration=cfg)
        async with kclient.ApiClient(cfg) as api:
            objects = kclient.CustomObjectsApi(api)

            async def direct(i: int) -> None:
                await objects.create_namespaced_custom_object(
                    "virtualization.deckhouse.io", "v1alpha2", NS, "virtualdisksnapshots",
                    {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDiskSnapshot",
                     "metadata": {"name": f"direct-{i}"},
                     "spec": {"virtualDiskName": DISK, "requiredConsistency": True}})

            base = _report("baseline: direct CR create", *await _run(args.n, args.concurrency, direct))

        headers = {"Authorization": f"Bearer {running.token}"}
        async with aiohttp.ClientSession(headers=headers) as http:
            url = f"{running.rest_url}/v1/namespaces/{NS}/disk-snapshots"

            async def rest(i: int) -> None:
                async with http.post(url, json={"name": f"rest-{i}", "virtualDiskName": DISK}) as resp:
                    assert resp.status == 202, await resp.text()
                    await resp.read()

            rest_p50 = _report("gateway REST create (202 + op)", *await _run(args.n, args.concurrency, rest))

        async with grpc.aio.insecure_channel(running.grpc_target) as channel:
            stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
            metadata = (("authorization", headers["Authorization"]),)

            async def rpc(i: int) -> None:
                await stub.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
                    namespace=NS, name=f"grpc-{i}", virtual_disk_name=DISK), metadata=metadata)

            grpc_p50 = _report("gateway gRPC create (op)", *await _run(args.n, args.concurrency, rpc))
        print(f"ratio p50 vs baseline: REST {rest_p50 / base:.2f}x, gRPC {grpc_p50 / base:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
