#!/usr/bin/env python3
"""Create latency and throughput: the gateway (gRPC and REST) against its baseline, a
direct VirtualDiskSnapshot create on the same embedded cluster with kubernetes-asyncio.

The gateway does strictly more per create (authenticate, authorize, validate, read the
disk and its VM from the watch cache, the write-ahead operation row with the call's audit
event, the create itself, the RUNNING update; the reconciler then follows the snapshot to
Ready), so the ratio says what that bookkeeping costs. Goals (issue 10): the gateway's
p50 at most 1.5x the direct p50 and its rate at least 0.9x the direct rate.

The three paths run interleaved, ``--rounds`` times in a rotating order, so the
machine's noise falls on all of them alike; the namespace's snapshots are deleted after
every path, since the embedded cluster's work per create grows with the snapshots it holds.
Each database gets its own cluster and gateway processes; PostgreSQL
is a throwaway durable server (fsync and synchronous_commit on) unless ``--postgres-url``
names one.

    .venv/bin/python bench/bench_create.py                          # 8 and 64 callers, SQLite and PostgreSQL
    .venv/bin/python bench/bench_create.py --callers 8 --databases sqlite --n 100 --rounds 2
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp
import grpc
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import Stack, stack
from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc

NS = "demo"
DISK = "spare-disk"  # detached: every snapshot is consistent and completes at once
GROUP, VERSION, PLURAL = "virtualization.deckhouse.io", "v1alpha2", "virtualdisksnapshots"
PATHS = ("direct", "REST", "gRPC")
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Samples:
    latencies: list[float] = field(default_factory=list)
    seconds: float = 0.0  # wall time of the path's rounds
    cpu: dict[str, float] = field(default_factory=dict)  # process -> CPU seconds during the path

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0

    def p(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(len(ordered) * q))] * 1000

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies) * 1000


def _cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS  # utime + stime


async def _run(n: int, callers: int, make: Callable[[int], Awaitable[None]],
               start_at: int) -> tuple[list[float], float]:
    latencies: list[float] = []
    numbers = iter(range(start_at, start_at + n))

    async def caller() -> None:
        for i in numbers:
            began = time.perf_counter()
            await make(i)
            latencies.append(time.perf_counter() - began)

    began = time.perf_counter()
    await asyncio.gather(*(caller() for _ in range(callers)))
    return latencies, time.perf_counter() - began


async def _measure(running: Stack, n: int, callers: int, rounds: int) -> dict[str, Samples]:
    cfg = kclient.Configuration()
    await kconfig.load_kube_config(config_file=str(running.kubeconfig), client_configuration=cfg)
    samples = {path: Samples() for path in PATHS}
    headers = {"Authorization": f"Bearer {running.token}"}
    metadata = (("authorization", headers["Authorization"]),)
    connector = aiohttp.TCPConnector(limit=callers)
    async with kclient.ApiClient(cfg) as api, aiohttp.ClientSession(headers=headers, connector=connector) as http, \
            grpc.aio.insecure_channel(running.grpc_target) as channel:
        objects = kclient.CustomObjectsApi(api)
        stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
        url = f"{running.rest_url}/v1/namespaces/{NS}/disk-snapshots"

        async def direct(i: int) -> None:
            await objects.create_namespaced_custom_object(
                GROUP, VERSION, NS, PLURAL,
                {"apiVersion": f"{GROUP}/{VERSION}", "kind": "VirtualDiskSnapshot",
                 "metadata": {"name": f"direct-{i}"}, "spec": {"virtualDiskName": DISK, "requiredConsistency": True}})

        async def rest(i: int) -> None:
            async with http.post(url, json={"name": f"rest-{i}", "virtualDiskName": DISK}) as resp:
                body = await resp.read()
                if resp.status != 202:
                    raise RuntimeError(f"REST create answered {resp.status}: {body[:300]!r}")

        async def rpc(i: int) -> None:
            await stub.CreateDiskSnapshot(snapshot_service_pb2.CreateDiskSnapshotRequest(
                namespace=NS, name=f"grpc-{i}", virtual_disk_name=DISK), metadata=metadata)

        makers = {"direct": direct, "REST": rest, "gRPC": rpc}
        # Warm every path (connections, caches) before anything is timed.
        for path in PATHS:
            await _run(callers, callers, makers[path], 10_000_000)
        await _delete_all(objects)
        for round_number in range(rounds):
            # Each path starts from an empty namespace (the embedded cluster's work per create
            # grows with the snapshots it holds), and the order rotates between rounds.
            for path in PATHS[round_number % 3:] + PATHS[:round_number % 3]:
                pids = {"gateway": running.gateway_pid, "cluster": running.cluster_pid}
                cpu_before = {name: _cpu_seconds(pid) for name, pid in pids.items()}
                latencies, seconds = await _run(n, callers, makers[path], round_number * n)
                for name, pid in pids.items():
                    samples[path].cpu[name] = samples[path].cpu.get(name, 0.0) + _cpu_seconds(pid) - cpu_before[name]
                samples[path].latencies += latencies
                samples[path].seconds += seconds
                await _delete_all(objects)
    return samples


async def _delete_all(objects: kclient.CustomObjectsApi) -> None:
    """Every snapshot of the namespace, so each round starts from the same cluster."""
    listed = await objects.list_namespaced_custom_object(GROUP, VERSION, NS, PLURAL)
    names = [item["metadata"]["name"] for item in listed.get("items", [])]
    gate = asyncio.Semaphore(16)

    async def delete(name: str) -> None:
        async with gate:
            try:
                await objects.delete_namespaced_custom_object(GROUP, VERSION, NS, PLURAL, name)
            except kclient.ApiException as exc:
                if exc.status != 404:
                    raise

    await asyncio.gather(*(delete(name) for name in names))
    await asyncio.sleep(1.0)  # let the gateway's reconciler see the deletions


def _report(database: str, callers: int, samples: dict[str, Samples]) -> list[str]:
    base = samples["direct"]
    lines = []
    for path in PATHS:
        got = samples[path]
        per_create = {name: seconds / len(got.latencies) * 1000 for name, seconds in got.cpu.items()}
        line = (f"{database:10} {callers:3} callers  {path:6} n={len(got.latencies):5}  p50={got.p50:7.2f} ms  "
                f"p95={got.p(0.95):7.2f} ms  {got.rate:7.1f}/s  CPU ms/create gateway "
                f"{per_create.get('gateway', 0):5.2f} cluster {per_create.get('cluster', 0):5.2f}")
        if path != "direct":
            p50_ratio, rate_ratio = got.p50 / base.p50, got.rate / base.rate
            verdict = "ok" if p50_ratio <= 1.5 and rate_ratio >= 0.9 else "MISSED"
            line += f"  ratio p50 {p50_ratio:4.2f}x (goal <= 1.5)  rate {rate_ratio:4.2f}x (goal >= 0.9)  {verdict}"
        print(line, flush=True)
        lines.append(line)
    return lines


@contextmanager
def _postgres(url: str) -> Iterator[str]:
    if url:
        yield url
        return
    from tests.support.postgres import _Cluster

    server = _Cluster("bench", durable=True)
    try:
        server.init()
        port = server.start()
        yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
    finally:
        server.stop()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=200, help="creates per path per round (default 200)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument("--callers", type=int, nargs="+", default=[8, 64], help="concurrent callers (default 8 64)")
    parser.add_argument("--databases", nargs="+", choices=("sqlite", "postgresql"), default=["sqlite", "postgresql"])
    parser.add_argument("--postgres-url", default="", help="an empty database (default: a throwaway durable server)")
    args = parser.parse_args()

    print(f"embedded cluster and gateway as separate processes; n={args.n} per path per round, "
          f"{args.rounds} interleaved rounds", flush=True)
    summary: list[str] = []
    for database in args.databases:
        with tempfile.TemporaryDirectory() as tmp, \
                _postgres(args.postgres_url) if database == "postgresql" else _nothing() as url, \
                stack(Path(tmp), database_url=url) as running:
            for callers in args.callers:
                summary += _report(database, callers, await _measure(running, args.n, callers, args.rounds))
    print("\nsummary:\n" + "\n".join(summary))
    return 0


@contextmanager
def _nothing() -> Iterator[str]:
    yield ""


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
