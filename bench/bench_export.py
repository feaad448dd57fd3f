#!/usr/bin/env python3
"""Disk export: throughput, the gateway's memory while it streams, and gRPC bytes on the wire.

1. Throughput of a multi-GiB export of a detached VirtualDisk (``--size``, default 4Gi).
   Baseline: the same disk downloaded directly from its DataExport's block endpoint
   (``<status.url>/api/v1/block``) with aiohttp; then the gateway's REST export, its gRPC
   ExportDisk with holes as holes (the default) and with ``expand_holes``. Every path is
   timed from the first request (the direct one creates its DataExport, as the gateway
   does) to the last byte, ``--repeat`` times, interleaved; best and median.
2. Peak RSS of the gateway process above its idle RSS while it serves a ``--rss-size``
   (default 8Gi) export, REST and gRPC, sampled from /proc every 20 ms; the cluster's too.
3. gRPC bytes from the gateway to the client (a counting TCP proxy in this process) for one
   ExportDisk against the bytes the sparse disk really holds (64 KiB every 64 MiB).

The client is kept cheap: it hashes nothing (the gateway does) and keeps no bytes.

    .venv/bin/python bench/bench_export.py [--size 4Gi|8Gi] [--rss-size 8Gi] [--repeat 2] [--skip-rss] [--no-verify]
                                           [--database-url URL]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import ssl
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import yaml
from kubernetes_asyncio import client as kclient
from kubernetes_asyncio import config as kconfig

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.processes import stack
from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2, export_service_pb2_grpc
from service.embedded_cluster.controllers.content import BLOCK, STRIPE, disk_sha256
from service.embedded_cluster.controllers.kube import format_quantity, parse_quantity

pb = export_service_pb2
NS = "demo"
PIECE = 1 << 20                    # the HTTP readers take the body in pieces of at most 1 MiB
GRPC_MAX_MESSAGE = 16 << 20
RSS_INTERVAL = 0.02
RSS_GOAL_MIB = 32.0
WIRE_GOAL = 1.05
MB = 1e6


class NotImplementedYet(Exception):
    """The gateway answers 501 / UNIMPLEMENTED for exports."""


@dataclass
class Result:
    seconds: float          # first request to last byte
    first_byte: float       # first request to response headers (REST) / the metadata message (gRPC)
    volume: int             # bytes of the volume covered (data + holes)
    data: int = 0           # of which sent as bytes
    holes: int = 0          # of which sent as holes (gRPC)
    sha256: str = ""        # the gateway's summary (gRPC)
    operation_id: str = ""
    data_messages: int = 0  # gRPC
    hole_messages: int = 0

    @property
    def rate(self) -> float:
        return self.volume / self.seconds / MB


# ------------------------------------------------------------------- the cluster side


@dataclass
class Cluster:
    objects: kclient.CustomObjectsApi
    token: str


async def _wait(what: str, check: Callable[[], Awaitable[Any]], limit: float = 60.0) -> Any:
    deadline = time.monotonic() + limit
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what}: not ready after {limit:.0f} s")
        await asyncio.sleep(0.01)


async def touch_disk(cluster: Cluster, name: str) -> None:
    """Change the disk's resourceVersion (an annotation): the gateway's entity tag changes
    with it, so its next export cannot reuse a digest it computed before and hashes again."""
    await cluster.objects.patch_namespaced_custom_object(
        "virtualization.deckhouse.io", "v1alpha2", NS, "virtualdisks", name,
        {"metadata": {"annotations": {"bench.dvp.io/touched": str(time.time_ns())}}},
        _content_type="application/merge-patch+json")
    await asyncio.sleep(0.5)   # the gateway reads the disk from its watch cache: let the change arrive


async def create_disk(cluster: Cluster, name: str, size: int) -> str:
    """A blank VirtualDisk of ``size`` bytes attached to no VM; returns its content seed once Ready."""
    await cluster.objects.create_namespaced_custom_object(
        "virtualization.deckhouse.io", "v1alpha2", NS, "virtualdisks",
        {"apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDisk", "metadata": {"name": name},
         "spec": {"persistentVolumeClaim": {"size": format_quantity(size)}}})

    async def ready() -> dict[str, Any] | None:
        disk = await cluster.objects.get_namespaced_custom_object(
            "virtualization.deckhouse.io", "v1alpha2", NS, "virtualdisks", name)
        return disk if (disk.get("status") or {}).get("phase") == "Ready" else None

    disk = await _wait(f"VirtualDisk {name}", ready)
    capacity = parse_quantity(disk["status"].get("capacity"))
    if capacity != size:
        raise RuntimeError(f"VirtualDisk {name}: capacity {capacity}, expected {size}")
    return str(disk["metadata"].get("annotations", {}).get("embedded.dvp.io/content-seed", ""))


def _ssl_for(ca_b64: str | None) -> ssl.SSLContext | None:
    if not ca_b64:
        return None
    return ssl.create_default_context(cadata=base64.b64decode(ca_b64).decode())


async def _drain(response: aiohttp.ClientResponse) -> int:
    received = 0
    async for piece in response.content.iter_chunked(PIECE):
        received += len(piece)
    return received


async def export_direct(cluster: Cluster, http: aiohttp.ClientSession, disk: str, size: int) -> Result:
    """Baseline: create a DataExport, wait for Ready, download <status.url>/api/v1/block."""
    name = f"bench-{uuid.uuid4().hex[:10]}"
    start = time.perf_counter()
    await cluster.objects.create_namespaced_custom_object(
        "deckhouse.io", "v1alpha1", NS, "dataexports",
        {"apiVersion": "deckhouse.io/v1alpha1", "kind": "DataExport", "metadata": {"name": name},
         "spec": {"ttl": "10m", "publish": False, "targetRef": {"kind": "VirtualDisk", "name": disk}}})

    async def ready() -> dict[str, Any] | None:
        export = await cluster.objects.get_namespaced_custom_object("deckhouse.io", "v1alpha1", NS, "dataexports",
                                                                    name)
        st = export.get("status") or {}
        conditions = {c.get("type"): c for c in st.get("conditions") or []}
        return st if st.get("url") and (conditions.get("Ready") or {}).get("status") == "True" else None

    try:
        st = await _wait(f"DataExport {name}", ready)
        async with http.get(f"{st['url']}/api/v1/block", headers={"Authorization": f"Bearer {cluster.token}"},
                            ssl=_ssl_for(st.get("ca")) or False) as response:
            if response.status != 200:
                raise RuntimeError(f"direct download: HTTP {response.status}: {(await response.text())[:300]}")
            first = time.perf_counter() - start
            received = await _drain(response)
        seconds = time.perf_counter() - start
    finally:
        await cluster.objects.delete_namespaced_custom_object("deckhouse.io", "v1alpha1", NS, "dataexports", name)
    if received != size:
        raise RuntimeError(f"direct download: {received} bytes, expected {size}")
    return Result(seconds, first, received, data=received)


# ------------------------------------------------------------------- the gateway side


@dataclass
class Gateway:
    rest_url: str
    token: str
    http: aiohttp.ClientSession

    @property
    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.token}"),)


async def export_rest(gateway: Gateway, disk: str, size: int, *, probe: bool = False) -> Result:
    url = f"{gateway.rest_url}/v1/namespaces/{NS}/disks/{disk}:export"
    headers = {"Authorization": f"Bearer {gateway.token}"}
    if probe:
        headers["Range"] = "bytes=0-0"
    start = time.perf_counter()
    async with gateway.http.get(url, headers=headers) as response:
        if response.status == 501:
            raise NotImplementedYet(f"REST GET {url.removeprefix(gateway.rest_url)} answers 501 Not Implemented")
        if response.status not in (200, 206):
            raise RuntimeError(f"REST export: HTTP {response.status}: {(await response.text())[:300]}")
        first = time.perf_counter() - start
        operation_id = response.headers.get("X-Operation-Id", "")
        if probe:
            response.close()          # a gateway without Range support would send it all: do not read it
            return Result(time.perf_counter() - start, first, 0, operation_id=operation_id)
        if response.content_length != size:
            raise RuntimeError(f"REST export: Content-Length {response.content_length}, expected {size}")
        received = await _drain(response)
    seconds = time.perf_counter() - start
    if received != size:
        raise RuntimeError(f"REST export: {received} bytes, expected {size}")
    return Result(seconds, first, received, data=received, operation_id=operation_id)


async def export_grpc(channel: grpc.aio.Channel, gateway: Gateway, disk: str, size: int, *, expand_holes: bool,
                      probe: bool = False) -> Result:
    stub = export_service_pb2_grpc.ExportServiceStub(channel)
    request = pb.ExportDiskRequest(namespace=NS, name=disk, expand_holes=expand_holes)
    if probe:
        request.range.offset, request.range.length = 0, 1
    start = time.perf_counter()
    first, position, data, holes, data_messages, hole_messages = 0.0, 0, 0, 0, 0, 0
    operation_id, summary = "", None
    call = stub.ExportDisk(request, metadata=gateway.metadata)
    try:
        async for chunk in call:
            kind = chunk.WhichOneof("chunk")
            if kind == "data":
                if chunk.data.offset != position:
                    raise RuntimeError(f"gRPC export: data at {chunk.data.offset}, expected {position}")
                length = len(chunk.data.data)
                data += length
                data_messages += 1
                position += length
            elif kind == "hole":
                if chunk.hole.offset != position:
                    raise RuntimeError(f"gRPC export: hole at {chunk.hole.offset}, expected {position}")
                holes += chunk.hole.length
                hole_messages += 1
                position += chunk.hole.length
            elif kind == "metadata":
                first = time.perf_counter() - start
                operation_id = chunk.metadata.operation_id
                position = chunk.metadata.offset
                if chunk.metadata.size != size:
                    raise RuntimeError(f"gRPC export: metadata size {chunk.metadata.size}, expected {size}")
            elif kind == "summary":
                summary = chunk.summary
    except grpc.aio.AioRpcError as error:
        if error.code() == grpc.StatusCode.UNIMPLEMENTED:
            raise NotImplementedYet(f"gRPC ExportService.ExportDisk answers UNIMPLEMENTED: {error.details()}") from None
        raise RuntimeError(f"gRPC export: {error.code().name}: {error.details()}") from None
    seconds = time.perf_counter() - start
    if summary is None:
        raise RuntimeError("gRPC export: the stream ended without a summary")
    expected = 1 if probe else size
    if data + holes != expected or summary.length != expected or summary.hole_bytes != holes:
        raise RuntimeError(f"gRPC export: data {data} + holes {holes} (summary length {summary.length}, "
                           f"hole_bytes {summary.hole_bytes}), expected {expected}")
    return Result(seconds, first, data + holes, data=data, holes=holes, sha256=summary.sha256,
                  operation_id=operation_id, data_messages=data_messages, hole_messages=hole_messages)


def grpc_channel(target: str) -> grpc.aio.Channel:
    return grpc.aio.insecure_channel(target, options=[("grpc.max_receive_message_length", GRPC_MAX_MESSAGE)])


# ------------------------------------------------------------------- RSS and the wire


_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process (all its threads) so far."""
    with open(f"/proc/{pid}/stat", "rb") as stat:
        fields = stat.read().rsplit(b")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS


def vm_rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", "rb") as status:
        for line in status:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"/proc/{pid}/status has no VmRSS")


@dataclass
class RssSampler:
    """Samples VmRSS of some processes every RSS_INTERVAL until stopped. The sampling runs
    in a thread the task waits on: the event loop is busy taking the export in, and a
    loop-driven timer then slips (100-170 ms gaps were seen); a thread gets the GIL back
    within the 5 ms switch interval."""

    pids: dict[str, int]
    idle: dict[str, int] = field(default_factory=dict)
    peak: dict[str, int] = field(default_factory=dict)
    samples: int = 0
    max_gap: float = 0.0
    _stop: threading.Event = field(default_factory=threading.Event)

    async def run(self) -> None:
        self.idle = {name: vm_rss_kib(pid) for name, pid in self.pids.items()}
        self.peak = dict(self.idle)
        await asyncio.to_thread(self._sample)

    def _sample(self) -> None:
        last = time.perf_counter()
        while not self._stop.wait(RSS_INTERVAL):
            for name, pid in self.pids.items():
                self.peak[name] = max(self.peak[name], vm_rss_kib(pid))
            self.samples += 1
            now = time.perf_counter()
            self.max_gap, last = max(self.max_gap, now - last), now

    def stop(self) -> None:
        self._stop.set()


async def with_rss(pids: dict[str, int], run: Callable[[], Awaitable[Result]]) -> tuple[Result, RssSampler]:
    await asyncio.sleep(0.5)         # let the previous export's buffers go before "idle" is read
    sampler = RssSampler(pids)
    task = asyncio.create_task(sampler.run())
    await asyncio.sleep(0)            # the idle sample is taken before the export starts
    try:
        result = await run()
    finally:
        sampler.stop()
        await task
    return result, sampler


class CountingProxy:
    """A TCP relay that counts the bytes going from the upstream (the gateway) to the client."""

    def __init__(self, target: str) -> None:
        host, _, port = target.rpartition(":")
        self.host, self.port = host.strip("[]"), int(port)
        self.downstream = 0
        self.server: asyncio.Server | None = None
        self.tasks: set[asyncio.Task[Any]] = set()

    async def start(self) -> str:
        self.server = await asyncio.start_server(self._connection, "127.0.0.1", 0)
        return f"127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()
        for task in list(self.tasks):
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)

    async def _connection(self, client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self.tasks.add(task)
        upstream_writer: asyncio.StreamWriter | None = None
        try:
            upstream_reader, upstream_writer = await asyncio.open_connection(self.host, self.port)
            await asyncio.gather(self._pipe(client_reader, upstream_writer, count=False),
                                 self._pipe(upstream_reader, client_writer, count=True), return_exceptions=True)
        except asyncio.CancelledError:
            pass
        finally:
            for writer in (client_writer, upstream_writer):
                if writer is not None:
                    writer.close()
            self.tasks.discard(task)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, count: bool) -> None:
        try:
            while data := await reader.read(1 << 20):
                if count:
                    self.downstream += len(data)
                writer.write(data)
                await writer.drain()
        finally:
            writer.close()


async def wire_bytes(proxy: CountingProxy, target: str, gateway: Gateway, disk: str, size: int, *,
                     expand_holes: bool) -> tuple[int, Result]:
    """Bytes from the gateway over one ExportDisk on a fresh connection (HTTP/2 setup included)."""
    proxy.downstream = 0
    async with grpc_channel(target) as channel:
        result = await export_grpc(channel, gateway, disk, size, expand_holes=expand_holes)
    return proxy.downstream, result


def written_bytes(size: int) -> tuple[int, int]:
    """(stripes, non-zero bytes) of a disk of ``size`` bytes: a BLOCK at the start of every STRIPE."""
    stripes = -(-size // STRIPE)
    return stripes, sum(min(BLOCK, size - start) for start in range(0, size, STRIPE))


# ------------------------------------------------------------------- the run


def _size(text: str) -> int:
    size = parse_quantity(text)
    if not size:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 4Gi)")
    return size


def _mib(kib: int) -> float:
    return kib / 1024


async def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=_size, default=_size("4Gi"), help="throughput disk (default 4Gi; 8Gi too)")
    parser.add_argument("--rss-size", type=_size, default=_size("8Gi"), help="disk exported while RSS is sampled")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--skip-rss", action="store_true")
    parser.add_argument("--no-verify", action="store_true",
                        help="do not recompute the disk's SHA-256 to check the gateway's summary")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temp dir")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, stack(Path(tmp), database_url=args.database_url) as running:
        pids = {"gateway": running.gateway_pid, "cluster": running.cluster_pid}
        startup_rss = {name: vm_rss_kib(pid) for name, pid in pids.items()}
        print(f"embedded cluster (--no-tls) and gateway as separate processes on {os.cpu_count()} cores; database "
              f"{(args.database_url or 'sqlite').split(':')[0]}; throughput disk {format_quantity(args.size)}, "
              f"repeat {args.repeat}; RSS disk {'skipped' if args.skip_rss else format_quantity(args.rss_size)}")
        kube = yaml.safe_load(running.kubeconfig.read_text())
        cfg = kclient.Configuration()
        await kconfig.load_kube_config(config_file=str(running.kubeconfig), client_configuration=cfg)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120)
        async with kclient.ApiClient(cfg) as api, \
                aiohttp.ClientSession(timeout=timeout, read_bufsize=PIECE) as http:
            cluster = Cluster(kclient.CustomObjectsApi(api), kube["users"][0]["user"]["token"])
            gateway = Gateway(running.rest_url, running.token, http)
            disk = f"bench-export-{format_quantity(args.size).lower()}"
            seed = await create_disk(cluster, disk, args.size)
            rss_disk = disk
            if not args.skip_rss and args.rss_size != args.size:
                rss_disk = f"bench-export-{format_quantity(args.rss_size).lower()}"
                await create_disk(cluster, rss_disk, args.rss_size)
            expected_sha = ""
            if not args.no_verify:
                started = time.perf_counter()
                expected_sha = await asyncio.to_thread(disk_sha256, seed, args.size)
                print(f"disk {disk}: sha256 {expected_sha[:16]}... recomputed in {time.perf_counter() - started:.1f} s "
                      "(before any timing)")

            async with grpc_channel(running.grpc_target) as channel:
                # Probe (and warm up) the gateway's export with a one-byte range before the long runs.
                missing = ""
                try:
                    await export_rest(gateway, disk, args.size, probe=True)
                    await export_grpc(channel, gateway, disk, args.size, expand_holes=False, probe=True)
                except NotImplementedYet as error:
                    missing = str(error)

                paths: dict[str, Callable[[], Awaitable[Result]]] = {
                    "direct DataExport download": lambda: export_direct(cluster, http, disk, args.size)}
                if not missing:
                    async def rest_hashing() -> Result:
                        await touch_disk(cluster, disk)
                        return await export_rest(gateway, disk, args.size)

                    # The gateway hashes every byte unless it knows the content's digest from an
                    # earlier complete export of the same content: both cases are measured.
                    paths["gateway REST, hashing"] = rest_hashing
                    paths["gateway REST"] = lambda: export_rest(gateway, disk, args.size)
                    paths["gateway gRPC, holes"] = lambda: export_grpc(channel, gateway, disk, args.size,
                                                                        expand_holes=False)
                    paths["gateway gRPC, expand_holes"] = lambda: export_grpc(channel, gateway, disk, args.size,
                                                                              expand_holes=True)
                if not missing and not args.skip_rss:
                    await rss_section(pids, startup_rss, cluster, gateway, http, channel, rss_disk, args.rss_size)
                results = await throughput_section(paths, args.repeat, format_quantity(args.size), pids)
                if expected_sha:
                    for label, runs in results.items():
                        for result in runs:
                            if result.sha256 and result.sha256 != expected_sha:
                                raise RuntimeError(f"{label}: summary sha256 {result.sha256}, expected {expected_sha}")
                    if any(r.sha256 for runs in results.values() for r in runs):
                        print("gRPC summary sha256 equals the recomputed digest")
            if missing:
                print(f"error: the gateway does not export yet: {missing}", file=sys.stderr)
                return 3
            await wire_section(running.grpc_target, gateway, disk, args.size)
    return 0


async def throughput_section(paths: dict[str, Callable[[], Awaitable[Result]]], repeat: int, size: str,
                             pids: dict[str, int]) -> dict[str, list[Result]]:
    results: dict[str, list[Result]] = {label: [] for label in paths}
    cpu: dict[str, list[dict[str, float]]] = {label: [] for label in paths}
    watched = {"client": os.getpid(), **pids}
    for _ in range(repeat):
        for label, run in paths.items():
            before = {name: cpu_seconds(pid) for name, pid in watched.items()}
            results[label].append(await run())
            cpu[label].append({name: cpu_seconds(pid) - before[name] for name, pid in watched.items()})
    print(f"\nthroughput, {size} detached disk (MB = 10^6 bytes of volume: data + holes; first request to last "
          "byte; CPU = user+system seconds per export, median)")
    print(f"{'path':28} {'best MB/s':>10} {'median MB/s':>12} {'best s':>7} {'1st byte ms':>12} "
          f"{'ratio best':>11} {'ratio median':>13}   CPU s client / gateway / cluster")
    base_best = base_median = 0.0
    for label, runs in results.items():
        rates = [r.rate for r in runs]
        best, median = max(rates), statistics.median(rates)
        if not base_best:
            base_best, base_median = best, median
        first = statistics.median(r.first_byte for r in runs) * 1000
        used = " / ".join(f"{statistics.median(c[name] for c in cpu[label]):.2f}" for name in watched)
        print(f"{label:28} {best:10.1f} {median:12.1f} {min(r.seconds for r in runs):7.2f} {first:12.1f} "
              f"{best / base_best:10.2f}x {median / base_median:12.2f}x   {used}")
    return results


async def rss_section(pids: dict[str, int], startup: dict[str, int], cluster: Cluster, gateway: Gateway,
                      http: aiohttp.ClientSession, channel: grpc.aio.Channel, disk: str, size: int) -> None:
    runs: dict[str, Callable[[], Awaitable[Result]]] = {
        "direct (no gateway)": lambda: export_direct(cluster, http, disk, size),
        "gateway REST": lambda: export_rest(gateway, disk, size),
        "gateway gRPC, holes": lambda: export_grpc(channel, gateway, disk, size, expand_holes=False),
        "gateway gRPC, expand_holes": lambda: export_grpc(channel, gateway, disk, size, expand_holes=True),
    }
    print(f"\npeak RSS during a {format_quantity(size)} export (MiB; /proc/<pid>/status VmRSS every "
          f"{RSS_INTERVAL * 1000:.0f} ms; at startup: gateway {_mib(startup['gateway']):.1f}, "
          f"cluster {_mib(startup['cluster']):.1f})")
    print(f"{'export':28} {'gateway idle':>12} {'peak':>8} {'+peak':>7} {'cluster idle':>13} {'peak':>8} "
          f"{'+peak':>7} {'MB/s':>7} {'samples':>8} {'max gap ms':>10}")
    worst = 0.0
    for label, run in runs.items():
        result, rss = await with_rss(pids, run)
        above = _mib(rss.peak["gateway"] - rss.idle["gateway"])
        if label.startswith("gateway"):
            worst = max(worst, above)
        print(f"{label:28} {_mib(rss.idle['gateway']):12.1f} {_mib(rss.peak['gateway']):8.1f} {above:7.1f} "
              f"{_mib(rss.idle['cluster']):13.1f} {_mib(rss.peak['cluster']):8.1f} "
              f"{_mib(rss.peak['cluster'] - rss.idle['cluster']):7.1f} {result.rate:7.1f} {rss.samples:8} "
              f"{rss.max_gap * 1000:10.1f}")
    print(f"gateway peak above idle: {worst:.1f} MiB (goal <= {RSS_GOAL_MIB:.0f} MiB: "
          f"{'met' if worst <= RSS_GOAL_MIB else 'NOT met'})")


async def wire_section(target: str, gateway: Gateway, disk: str, size: int) -> None:
    stripes, written = written_bytes(size)
    proxy = CountingProxy(target)
    through = await proxy.start()
    try:
        holes_wire, holes = await wire_bytes(proxy, through, gateway, disk, size, expand_holes=False)
        expanded_wire, expanded = await wire_bytes(proxy, through, gateway, disk, size, expand_holes=True)
    finally:
        await proxy.close()
    print(f"\ngRPC bytes on the wire (gateway -> client, counted by a TCP proxy, HTTP/2 setup included), "
          f"{format_quantity(size)} disk: written (non-zero) bytes {stripes} stripes x {BLOCK >> 10} KiB = "
          f"{written} ({written / (1 << 20):.2f} MiB)")
    ratio = holes_wire / written
    print(f"{'holes as holes':18} wire {holes_wire:>14,} B  = {ratio:8.3f}x written (goal <= {WIRE_GOAL}x: "
          f"{'met' if ratio <= WIRE_GOAL else 'NOT met'}); ExportData bytes {holes.data:,} "
          f"({'= written' if holes.data == written else f'!= written {written:,}'}), holes {holes.holes:,}; "
          f"{holes.data_messages} data + {holes.hole_messages} hole messages")
    print(f"{'expand_holes':18} wire {expanded_wire:>14,} B  = {expanded_wire / written:8.1f}x written "
          f"({expanded_wire / size:.4f}x the volume); ExportData bytes {expanded.data:,} in "
          f"{expanded.data_messages} messages")


def run() -> int:
    try:
        return asyncio.run(main())
    except RuntimeError as error:
        print(f"error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(run())
