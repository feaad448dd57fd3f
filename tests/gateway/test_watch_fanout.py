"""Watch fan-out over real sockets: one change is translated once and encoded once per
protocol whatever the number of watchers (SSE and gRPC alike), and a watcher that does
not read is cut off with a resync error (ABORTED / WATCH_OVERFLOW: list again, watch
again) while a fast watcher of the same kind keeps receiving every change."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2, snapshot_service_pb2_grpc
from service.api.rest.streams import STREAM_SETTINGS
from service.cluster.kinds import VIRTUAL_DISK_SNAPSHOT
from service.core import fanout
from service.core.gateway import CoreSettings
from tests.support.gateway import GatewayServer, running_gateway

NS = "demo"
DISK = "spare-disk"  # detached: its snapshots are consistent and complete at once
PLURAL = "virtualdisksnapshots"
SEQ = "fanout-seq"


class Kube:
    """The embedded cluster's API over HTTP, as an operator would change objects."""

    def __init__(self, server: GatewayServer, session: aiohttp.ClientSession) -> None:
        config = server.cluster.kubeconfig()
        self._url = config["clusters"][0]["cluster"]["server"].rstrip("/") + \
            f"/apis/virtualization.deckhouse.io/v1alpha2/namespaces/{NS}/{PLURAL}"
        self._auth = {"Authorization": f"Bearer {config['users'][0]['user']['token']}"}
        self._session = session

    async def create(self, name: str) -> None:
        async with self._session.post(self._url, headers=self._auth, json={
                "apiVersion": "virtualization.deckhouse.io/v1alpha2", "kind": "VirtualDiskSnapshot",
                "metadata": {"name": name, "labels": {SEQ: "0"}},
                "spec": {"virtualDiskName": DISK, "requiredConsistency": True}}) as resp:
            assert resp.status in (200, 201), await resp.text()

    async def mark(self, name: str, seq: int, pad: int = 0) -> None:
        patch: dict[str, Any] = {"metadata": {"labels": {SEQ: str(seq)}}}
        if pad:
            patch["metadata"]["annotations"] = {"pad": f"{seq}-" + "x" * pad}
        async with self._session.patch(f"{self._url}/{name}", json=patch,
                                       headers={**self._auth, "Content-Type": "application/merge-patch+json"}) as resp:
            assert resp.status == 200, await resp.text()


class Seen:
    """What one watcher received of one object: its label values in order."""

    def __init__(self) -> None:
        self.seqs: list[str] = []
        self.changed = asyncio.Event()
        self.error: Any = None

    def add(self, seq: str) -> None:
        self.seqs.append(seq)
        self.changed.set()

    async def until(self, seq: str, limit: float = 15.0) -> None:
        async with asyncio.timeout(limit):
            while seq not in self.seqs:
                self.changed.clear()
                await self.changed.wait()


def _sse_events(buffer: bytes) -> tuple[list[tuple[str, dict[str, Any]]], bytes]:
    events = []
    while b"\n\n" in buffer:
        block, buffer = buffer.split(b"\n\n", 1)
        fields = dict(line.split(": ", 1) for line in block.decode().splitlines() if ": " in line)
        if "data" in fields:
            events.append((fields.get("event", ""), json.loads(fields["data"])))
    return events, buffer


async def _read_sse(resp: aiohttp.ClientResponse, name: str, seen: Seen) -> None:
    buffer = b""
    async for chunk in resp.content.iter_any():
        events, buffer = _sse_events(buffer + chunk)
        for event, data in events:
            if event == "error":
                seen.error = data
            elif data["snapshot"]["name"] == name:
                seen.add(data["snapshot"]["labels"].get(SEQ, ""))


async def _read_grpc(call: Any, name: str, seen: Seen) -> None:
    try:
        async for event in call:
            if event.snapshot.name == name:
                seen.add(event.snapshot.labels.get(SEQ, ""))
    except grpc.aio.AioRpcError as error:
        seen.error = error


@contextlib.asynccontextmanager
async def _watchers(server: GatewayServer, session: aiohttp.ClientSession, channel: grpc.aio.Channel,
                    name: str, count: int) -> AsyncIterator[tuple[list[Seen], list[Seen]]]:
    sse, rpc = [Seen() for _ in range(count)], [Seen() for _ in range(count)]
    stub = snapshot_service_pb2_grpc.SnapshotServiceStub(channel)
    metadata = (("authorization", f"Bearer {server.token}"),)
    readers = []
    responses = []
    for seen in sse:
        resp = await session.get(f"{server.rest_url}/v1/namespaces/{NS}/disk-snapshots:watch",
                                 headers=server.auth())
        assert resp.status == 200
        responses.append(resp)
        readers.append(asyncio.create_task(_read_sse(resp, name, seen)))
    for seen in rpc:
        call = stub.WatchDiskSnapshots(snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace=NS),
                                       metadata=metadata)
        readers.append(asyncio.create_task(_read_grpc(call, name, seen)))
    try:
        yield sse, rpc
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
        for resp in responses:
            resp.close()


def _settings() -> CoreSettings:
    return CoreSettings(resync_interval=0.2)


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_change_is_translated_and_encoded_once_whatever_the_watchers(
        embedded_cluster: Any, database_url: str, tmp_path: Path) -> None:
    name = "fanout-once"
    async with running_gateway(embedded_cluster, database_url, tmp_path, _settings()) as server, \
            aiohttp.ClientSession() as session, grpc.aio.insecure_channel(server.grpc_target) as channel:
        kube = Kube(server, session)
        await kube.create(name)
        async with _watchers(server, session, channel, name, count=6) as (sse, rpc):
            everyone = sse + rpc
            await asyncio.gather(*(seen.until("0") for seen in everyone))
            await asyncio.sleep(0.5)  # let the controller's own updates of the new snapshot pass
            before = dict(fanout.COUNTS)
            received = [len(seen.seqs) for seen in everyone]

            for seq in (1, 2, 3):
                await kube.mark(name, seq)
            await asyncio.gather(*(seen.until("3") for seen in everyone))

            delivered = {len(seen.seqs) - n for seen, n in zip(everyone, received, strict=True)}
            assert len(delivered) == 1, "every watcher got the same events"
            events = delivered.pop()
            assert events >= 3

            def done(name: str) -> int:
                return fanout.COUNTS[name] - before.get(name, 0)

            # 12 watchers, yet each change was translated once, serialized once for gRPC and
            # framed once for SSE: the same bytes went to every stream.
            assert done(f"translate:{PLURAL}") == events
            assert done("grpc:DiskSnapshotEvent") == events
            sse_encodings = sum(n - before.get(key, 0) for key, n in fanout.COUNTS.items() if key.startswith("sse:"))
            assert sse_encodings == events


async def _stalled_sse(server: GatewayServer) -> tuple[socket.socket, bytes]:
    """An SSE watch whose client reads the first bytes, then nothing (small receive buffer)."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await loop.sock_connect(sock, ("127.0.0.1", server.app.rest_port))
    await loop.sock_sendall(sock, (f"GET /v1/namespaces/{NS}/disk-snapshots:watch HTTP/1.1\r\n"
                                   f"Host: 127.0.0.1\r\nAuthorization: Bearer {server.token}\r\n\r\n").encode())
    first = b""
    async with asyncio.timeout(10):
        while b"event: " not in first:
            first += await loop.sock_recv(sock, 65536)
    assert first.startswith(b"HTTP/1.1 200"), first[:200]
    return sock, first


async def _drain_sse(sock: socket.socket) -> bytes:
    loop = asyncio.get_running_loop()
    body = b""
    async with asyncio.timeout(30):
        while True:
            chunk = await loop.sock_recv(sock, 1 << 20)
            if not chunk:
                return body
            body += chunk
            if body.endswith(b"0\r\n\r\n") and b"event: error" in body:
                return body


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
async def test_a_reader_that_falls_behind_gets_a_resync_error_and_the_others_keep_up(
        embedded_cluster: Any, database_url: str, tmp_path: Path) -> None:
    name = "fanout-slow"
    async with running_gateway(embedded_cluster, database_url, tmp_path, _settings()) as server, \
            aiohttp.ClientSession() as session, grpc.aio.insecure_channel(server.grpc_target) as channel, \
            grpc.aio.insecure_channel(server.grpc_target) as slow_channel:
        # Small bounds, so that a few dozen changes overflow them.
        server.app.hub.queue_size = 16
        stream_settings = server.app._rest.app[STREAM_SETTINGS]  # type: ignore[union-attr]
        stream_settings.max_buffer_bytes = 16 * 1024
        stream_settings.end_timeout_seconds = 60
        kube = Kube(server, session)
        await kube.create(name)
        async with _watchers(server, session, channel, name, count=1) as (fast_sse, fast_rpc):
            fast = fast_sse + fast_rpc
            await asyncio.gather(*(seen.until("0") for seen in fast))
            kind = VIRTUAL_DISK_SNAPSHOT
            others = server.app.hub.subscriber_count(kind)  # the fast ones, the reconciler's
            slow_sse, _ = await _stalled_sse(server)
            stub = snapshot_service_pb2_grpc.SnapshotServiceStub(slow_channel)
            slow_rpc = stub.WatchDiskSnapshots(snapshot_service_pb2.WatchDiskSnapshotsRequest(namespace=NS),
                                               metadata=(("authorization", f"Bearer {server.token}"),))
            await slow_rpc.read()  # opened; then it reads nothing while the changes come

            last = 0
            async with asyncio.timeout(120):
                # Until both slow watchers were let go (the SSE one by its socket's bound, the
                # gRPC one by the hub's queue once flow control stopped its sends).
                while server.app.hub.subscriber_count(kind) > others or last < 5:
                    assert last < 400, "the slow watchers were never cut off"
                    last += 1
                    await kube.mark(name, last, pad=60_000)
                    await asyncio.gather(*(seen.until(str(last)) for seen in fast))
            # The fast watchers got every change, in order, and no error.
            for seen in fast:
                assert seen.error is None
                assert [int(s) for s in seen.seqs if s != "0"][-last:] == list(range(1, last + 1))

            # The slow ones: what was buffered, then the resync error (both doors alike).
            body = await _drain_sse(slow_sse)
            slow_sse.close()
            error_block = body[body.index(b"event: error"):]
            problem = json.loads(error_block.split(b"data: ", 1)[1].split(b"\n", 1)[0])
            assert problem["reason"] == "WATCH_OVERFLOW" and problem["status"] == 409
            assert "list again" in problem["detail"]

            with pytest.raises(grpc.aio.AioRpcError) as caught:
                async with asyncio.timeout(30):
                    while await slow_rpc.read() is not grpc.aio.EOF:
                        pass
            assert caught.value.code() is grpc.StatusCode.ABORTED
            assert "list again" in (caught.value.details() or "")
            status = rpc_status.from_call(caught.value)
            assert status is not None
            reasons = []
            for detail in status.details:
                if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
                    info = error_details_pb2.ErrorInfo()
                    detail.Unpack(info)
                    reasons.append(info.reason)
            assert reasons == ["WATCH_OVERFLOW"]
