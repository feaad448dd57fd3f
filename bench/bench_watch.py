#!/usr/bin/env python3
"""Watch fan-out: N concurrent watch streams (half SSE, half gRPC) on one gateway, one
change every ``--interval`` seconds, against a baseline of direct watchers on the
embedded cluster itself receiving the same changes.

The embedded cluster and the gateway run as separate processes (bench/processes.py);
the streams are opened by ``--workers`` client processes (half SSE, half gRPC), so that
no single client's event loop is what gets measured. Each change is a merge patch of a
label ``bench-seq: <i>`` on one VirtualDiskSnapshot; every client records when each
stream sees it (``time.monotonic`` is one clock for every process of the machine).

Printed:
- open time: from the first stream opened to the last one having received its first
  event (the current objects), and the opens' failures;
- delivery latency (patch sent -> stream received) over every (stream, change): p50,
  p95, p99, max; per change, the time until *all* streams had it (p50, p99, max); and
  the changes some stream never received;
- the same for the baseline: ``--direct`` plain kube watches (default N/100) on the
  embedded cluster, and the ratio gateway / direct;
- gateway RSS before opening, after opening, after the changes, and per stream;
- health probe latency (REST /healthz and gRPC Health/Check, every 100 ms) while idle
  and during the fan-out.

    .venv/bin/python bench/bench_watch.py [--streams 10000] [--changes 20] [--interval 2.0]
        [--workers 4] [--direct N/100] [--database-url URL] [--open-concurrency 200]
        [--keep DIR] [--source DIR]

``--source DIR`` runs the gateway from another copy of the sources (e.g. ``git archive
HEAD | tar -x -C DIR``) to measure a before/after in the same conditions.

The file descriptor limit is raised to its hard limit (the gateway inherits it): 10,000
streams need over 10,000 sockets in the gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

NS = "demo"
DISK = "spare-disk"
OBJECT = "bench-watch"
SSE_SEQ = re.compile(rb'bench-seq"\s*:\s*"(\d+)"')
GRPC_SEQ = re.compile(rb"\tbench-seq\x12.(\d+)", re.DOTALL)  # map entry: key (len 9), value


def _raise_fd_limit() -> int:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


class _Seen:
    """Receive times of the sequence numbers one client process sees, per stream."""

    def __init__(self) -> None:
        self.times: dict[int, list[float]] = {}
        self.first: list[float] = []

    def scan(self, pattern: re.Pattern[bytes], data: bytes, seen: set[int]) -> None:
        now = time.monotonic()
        for match in pattern.finditer(data):
            seq = int(match.group(1))
            if seq not in seen:
                seen.add(seq)
                self.times.setdefault(seq, []).append(now)


# ---------------------------------------------------------------- stream clients


class _SseProtocol(asyncio.Protocol):
    """A raw HTTP/1.1 SSE reader: the cheapest client we can write, so the client side
    takes as little of the machine's CPU as possible."""

    def __init__(self, seen: _Seen, request: bytes, opened: asyncio.Future[float]) -> None:
        self._seen, self._request, self._opened = seen, request, opened
        self._tail = b""
        self._got: set[int] = set()
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        transport.write(self._request)

    def data_received(self, data: bytes) -> None:
        buf = self._tail + data
        if not self._opened.done() and b"event: " in buf:
            if not buf.startswith(b"HTTP/1.1 200") and not self._tail:
                self._opened.set_exception(RuntimeError(buf[:200].decode(errors="replace")))
                return
            self._opened.set_result(time.monotonic())
        elif not self._opened.done() and buf.startswith(b"HTTP/1.1 ") and not buf.startswith(b"HTTP/1.1 200"):
            self._opened.set_exception(RuntimeError(buf[:300].decode(errors="replace")))
            return
        self._seen.scan(SSE_SEQ, buf, self._got)
        self._tail = buf[-48:]

    def connection_lost(self, exc: Exception | None) -> None:
        if not self._opened.done():
            self._opened.set_exception(RuntimeError(f"connection lost: {exc}"))
        if not self.closed.done():
            self.closed.set_result(None)


async def _sse_worker(count: int, rest_url: str, token: str, concurrency: int, seen: _Seen) -> list[Any]:
    url = urlsplit(rest_url)
    request = (f"GET /v1/namespaces/{NS}/disk-snapshots:watch HTTP/1.1\r\nHost: {url.netloc}\r\n"
               f"Authorization: Bearer {token}\r\nAccept: text/event-stream\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(concurrency)
    transports: list[Any] = []

    async def one() -> float:
        async with gate:
            opened: asyncio.Future[float] = loop.create_future()
            transport, _ = await loop.create_connection(lambda: _SseProtocol(seen, request, opened),
                                                        url.hostname, url.port)
            transports.append(transport)
            return await asyncio.wait_for(opened, 120)

    return await asyncio.gather(*(one() for _ in range(count)), return_exceptions=True)


async def _grpc_worker(count: int, target: str, token: str, concurrency: int, seen: _Seen,
                       per_channel: int = 500) -> list[Any]:
    import grpc

    from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2

    request = snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace=NS).SerializeToString()
    channels = [grpc.aio.insecure_channel(target, options=[("grpc.use_local_subchannel_pool", 1)])
                for _ in range(max(1, -(-count // per_channel)))]
    gate = asyncio.Semaphore(concurrency)
    metadata = (("authorization", f"Bearer {token}"),)
    loop = asyncio.get_running_loop()
    readers: list[asyncio.Task[None]] = []

    async def one(i: int) -> float:
        # Raw bytes in and out: the client scans the serialized event for the label.
        method = channels[i % len(channels)].unary_stream(
            "/dvp.snapshots.v1.SnapshotService/WatchDiskSnapshots",
            request_serializer=None, response_deserializer=None)
        opened: asyncio.Future[float] = loop.create_future()

        async def read() -> None:
            got: set[int] = set()
            try:
                async for message in method(request, metadata=metadata):
                    if not opened.done():
                        opened.set_result(time.monotonic())
                    seen.scan(GRPC_SEQ, message, got)
            except Exception as exc:
                if not opened.done():
                    opened.set_exception(exc)

        async with gate:
            readers.append(asyncio.create_task(read()))
            return await asyncio.wait_for(opened, 120)

    return await asyncio.gather(*(one(i) for i in range(count)), return_exceptions=True)


async def _worker_main(args: argparse.Namespace) -> int:
    """A client process: opens its streams, reports, records until told to stop (stdin)."""
    _raise_fd_limit()
    seen = _Seen()
    started = time.monotonic()
    if args.worker == "sse":
        results = await _sse_worker(args.count, args.rest_url, args.token, args.open_concurrency, seen)
    else:
        results = await _grpc_worker(args.count, args.grpc_target, args.token, args.open_concurrency, seen)
    opened = [r for r in results if isinstance(r, float)]
    errors = [repr(r)[:300] for r in results if not isinstance(r, float)]
    print(json.dumps({"opened": len(opened), "started": started, "last": max(opened, default=started),
                      "errors": errors[:3], "failed": len(errors)}), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    print(json.dumps({"times": {str(k): v for k, v in seen.times.items()}}), flush=True)
    os._exit(0)  # thousands of open calls: do not wait for a graceful close


# ---------------------------------------------------------------- the driver


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered)) - 1))]


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (load-independent, unlike latencies)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class _Kube:
    """The embedded cluster's API over plain HTTP, as the kubeconfig gives it."""

    def __init__(self, kubeconfig: Path) -> None:
        import yaml

        config = yaml.safe_load(kubeconfig.read_text())
        self.server = config["clusters"][0]["cluster"]["server"].rstrip("/")
        self.token = config["users"][0]["user"].get("token", "")
        self.path = f"/apis/virtualization.deckhouse.io/v1alpha2/namespaces/{NS}/virtualdisksnapshots"

    def headers(self, content_type: str = "application/json") -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": content_type}


async def _direct_watchers(kube: _Kube, count: int, seen: _Seen) -> list[asyncio.Task[None]]:
    import aiohttp

    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None))
    ready: list[asyncio.Future[None]] = []

    async def watch(opened: asyncio.Future[None]) -> None:
        got: set[int] = set()
        async with session.get(f"{kube.server}{kube.path}?watch=1&allowWatchBookmarks=false",
                               headers=kube.headers()) as resp:
            assert resp.status == 200, await resp.text()
            opened.set_result(None)
            tail = b""
            async for chunk in resp.content.iter_any():
                buf = tail + chunk
                seen.scan(SSE_SEQ, buf, got)
                tail = buf[-48:]

    loop = asyncio.get_running_loop()
    tasks = []
    for _ in range(count):
        opened: asyncio.Future[None] = loop.create_future()
        ready.append(opened)
        tasks.append(asyncio.create_task(watch(opened)))
    await asyncio.gather(*ready)
    tasks.append(asyncio.create_task(_close_later(session)))
    return tasks


async def _close_later(session: Any) -> None:
    try:
        await asyncio.Event().wait()
    finally:
        await session.close()


async def _probe_loop(probes: dict[str, Callable[[], Any]], out: dict[str, list[float]], stop: asyncio.Event,
                      every: float = 0.1) -> None:
    while not stop.is_set():
        for name, probe in probes.items():
            start = time.monotonic()
            await probe()
            out.setdefault(name, []).append(time.monotonic() - start)
        await asyncio.sleep(every)


def _line(label: str, values: list[float]) -> str:
    ms = [v * 1000 for v in values]
    return (f"{label:34} n={len(ms):6}  p50={_pct(ms, .5):8.1f}  p95={_pct(ms, .95):8.1f}  "
            f"p99={_pct(ms, .99):8.1f}  max={max(ms, default=float('nan')):8.1f} ms")


async def _driver(args: argparse.Namespace) -> int:
    import aiohttp
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    from bench.processes import GatewayProcess, child_env, embedded_cluster_process

    limit = _raise_fd_limit()
    n = args.streams
    n_grpc = round(n * (1 - args.sse_fraction))
    n_sse = n - n_grpc
    direct_n = args.direct if args.direct is not None else max(1, n // 100)
    with tempfile.TemporaryDirectory() as tmp_name, \
            embedded_cluster_process(Path(args.keep or tmp_name)) as cluster:
        directory = Path(args.keep or tmp_name)
        gateway = GatewayProcess(directory, cluster.kubeconfig, database_url=args.database_url,
                                 extra_args=["--max-streams-per-caller", str(n + 10)],
                                 env=child_env(Path(args.source)) if args.source else None)
        gateway.start(limit=60.0)
        try:
            print(f"fd limit {limit}; {n} streams ({n_sse} SSE, {n_grpc} gRPC) from {args.workers} client "
                  f"processes; {args.changes} changes every {args.interval} s; baseline: {direct_n} direct "
                  f"kube watches; database {(args.database_url or 'sqlite').split(':')[0]}", flush=True)
            kube = _Kube(cluster.kubeconfig)
            async with aiohttp.ClientSession() as http, \
                    grpc.aio.insecure_channel(gateway.grpc_target) as health_channel:
                async with http.post(f"{kube.server}{kube.path}", headers=kube.headers(), json={
                        "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDiskSnapshot",
                        "metadata": {"name": OBJECT, "labels": {"bench-seq": "0"}},
                        "spec": {"virtualDiskName": DISK, "requiredConsistency": True}}) as resp:
                    assert resp.status in (200, 201), await resp.text()
                await asyncio.sleep(1.0)  # let the controller finish with it

                health = health_pb2_grpc.HealthStub(health_channel)

                async def rest_health() -> None:
                    async with http.get(f"{gateway.rest_url}/healthz") as r:
                        await r.read()

                async def grpc_health() -> None:
                    await health.Check(health_pb2.HealthCheckRequest(service=""))

                probes = {"REST /healthz": rest_health, "gRPC Health/Check": grpc_health}
                idle: dict[str, list[float]] = {}
                stop_idle = asyncio.Event()
                idle_task = asyncio.create_task(_probe_loop(probes, idle, stop_idle))
                await asyncio.sleep(2.0)
                stop_idle.set()
                await idle_task

                rss_before = _rss_kib(gateway.pid)
                cpu_open_start = _cpu_seconds(gateway.pid)
                per_worker_sse = max(1, args.workers // 2)
                per_worker_grpc = max(1, args.workers - per_worker_sse)
                plan = [("sse", c) for c in _split(n_sse, per_worker_sse)] + \
                       [("grpc", c) for c in _split(n_grpc, per_worker_grpc)]
                workers = []
                for protocol, count in plan:
                    if not count:
                        continue
                    workers.append(subprocess.Popen(  # noqa: ASYNC220  (a few, once, before measuring)
                        [sys.executable, __file__, "--worker", protocol, "--count", str(count), "--rest-url",
                         gateway.rest_url, "--grpc-target", gateway.grpc_target, "--token", gateway.token,
                         "--open-concurrency", str(args.open_concurrency)],
                        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
                loop = asyncio.get_running_loop()
                reports = await asyncio.gather(*(loop.run_in_executor(None, w.stdout.readline)  # type: ignore[union-attr]
                                                 for w in workers))
                opened = [json.loads(r) for r in reports]
                open_start = min(o["started"] for o in opened)
                open_end = max(o["last"] for o in opened)
                total_open = sum(o["opened"] for o in opened)
                failed = sum(o["failed"] for o in opened)
                errors = [e for o in opened for e in o["errors"]]
                cpu_open = _cpu_seconds(gateway.pid) - cpu_open_start
                await asyncio.sleep(1.0)
                rss_open = _rss_kib(gateway.pid)

                direct_seen = _Seen()
                direct_tasks = await _direct_watchers(kube, direct_n, direct_seen)
                await asyncio.sleep(0.5)

                busy: dict[str, list[float]] = {}
                stop_busy = asyncio.Event()
                busy_task = asyncio.create_task(_probe_loop(probes, busy, stop_busy))
                sent: dict[int, float] = {}
                cpu_fan_start = _cpu_seconds(gateway.pid)
                for seq in range(1, args.changes + 1):
                    sent[seq] = time.monotonic()
                    async with http.patch(f"{kube.server}{kube.path}/{OBJECT}",
                                          headers=kube.headers("application/merge-patch+json"),
                                          json={"metadata": {"labels": {"bench-seq": str(seq)}}}) as resp:
                        assert resp.status == 200, await resp.text()
                    await asyncio.sleep(max(0.0, sent[seq] + args.interval - time.monotonic()))
                await asyncio.sleep(args.interval)  # stragglers
                stop_busy.set()
                await busy_task
                cpu_fan = _cpu_seconds(gateway.pid) - cpu_fan_start
                rss_after = _rss_kib(gateway.pid)

                for w in workers:
                    w.stdin.write("stop\n")  # type: ignore[union-attr]
                    w.stdin.flush()  # type: ignore[union-attr]
                finals = await asyncio.gather(*(loop.run_in_executor(None, w.stdout.readline)  # type: ignore[union-attr]
                                                for w in workers))
                for task in direct_tasks:
                    task.cancel()
                await asyncio.gather(*direct_tasks, return_exceptions=True)
                for w in workers:
                    w.wait(timeout=30)
        finally:
            gateway.stop()

    times: dict[int, list[float]] = {}
    for final in finals:
        for seq, values in json.loads(final)["times"].items():
            times.setdefault(int(seq), []).extend(values)

    def summary(label: str, got: dict[int, list[float]], expected: int) -> tuple[float, float]:
        every = [t - sent[s] for s, ts in got.items() if s in sent for t in ts]
        all_of = [max(ts) - sent[s] for s, ts in got.items() if s in sent and len(ts) >= expected]
        missing = sum(max(0, expected - len(got.get(s, []))) for s in sent)
        print(_line(f"{label}: each delivery", every))
        print(_line(f"{label}: change -> all {expected}", all_of) + f"  missing deliveries {missing}")
        return _pct(every, .99), _pct(every, .5)

    print(f"open: {total_open}/{n} streams in {open_end - open_start:.2f} s "
          f"({failed} failed{': ' + errors[0] if errors else ''})")
    g99, g50 = summary("gateway", times, total_open)
    d99, d50 = summary("direct kube watch", direct_seen.times, direct_n)
    deliveries = sum(len(v) for s, v in times.items() if s in sent)
    print(f"gateway CPU: opening {cpu_open:.1f} s ({cpu_open / max(1, total_open) * 1000:.2f} ms per stream); "
          f"fan-out {cpu_fan:.1f} s for {deliveries} deliveries "
          f"({cpu_fan / max(1, deliveries) * 1e6:.0f} us per delivery, probes and idle included)")
    print(f"ratio gateway/direct: p50 {g50 / d50:.1f}x, p99 {g99 / d99:.1f}x")
    per_stream = (rss_open - rss_before) / max(1, total_open)
    print(f"gateway RSS: before {rss_before / 1024:.1f} MiB, streams open {rss_open / 1024:.1f} MiB, after changes "
          f"{rss_after / 1024:.1f} MiB; {per_stream:.1f} KiB per stream")
    for name in probes:
        print(_line(f"health idle: {name}", idle.get(name, [])))
        print(_line(f"health fan-out: {name}", busy.get(name, [])))
    return 0


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--streams", type=int, default=10_000, help="watch streams, half SSE half gRPC")
    parser.add_argument("--changes", type=int, default=20, help="changes made (one label patch each)")
    parser.add_argument("--interval", type=float, default=2.0, help="seconds between changes")
    parser.add_argument("--sse-fraction", type=float, default=0.5, help="share of SSE streams (rest: gRPC)")
    parser.add_argument("--workers", type=int, default=4, help="client processes (half SSE, half gRPC)")
    parser.add_argument("--direct", type=int, default=None, help="direct kube watchers (default: streams/100)")
    parser.add_argument("--database-url", default="", help="default: a SQLite file in a temp dir")
    parser.add_argument("--open-concurrency", type=int, default=200, help="opens in flight per client process")
    parser.add_argument("--keep", default="", help="run in this directory and keep its logs")
    parser.add_argument("--source", default="", help="run the gateway from this copy of the sources")
    # Internal: a client process.
    parser.add_argument("--worker", choices=("sse", "grpc"), help=argparse.SUPPRESS)
    parser.add_argument("--count", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--rest-url", default="", help=argparse.SUPPRESS)
    parser.add_argument("--grpc-target", default="", help=argparse.SUPPRESS)
    parser.add_argument("--token", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return asyncio.run(_worker_main(args))
    if args.keep:
        Path(args.keep).mkdir(parents=True, exist_ok=True)
    return asyncio.run(_driver(args))


if __name__ == "__main__":
    sys.exit(main())
