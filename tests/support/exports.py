"""Export clients for tests: one call per door that streams an export end to end over a
real channel or a real HTTP client and checks every byte against the embedded cluster's
deterministic content as it arrives (nothing is kept, so multi-GiB streams cost nothing)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import grpc
from multidict import CIMultiDict

from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2, export_service_pb2_grpc
from service.embedded_cluster.controllers.content import disk_content
from tests.support.gateway import GatewayServer

MAX_MESSAGE = 16 << 20


@dataclass(frozen=True)
class Volume:
    """What an export of an object must return: ``size`` bytes derived from ``seed``."""

    kind: str        # "disk" | "disk-snapshot"
    name: str
    seed: str
    size: int

    def expected(self, offset: int, length: int) -> bytes:
        return disk_content(self.seed, self.size, offset, length)


@dataclass
class Received:
    """One export, as the client saw it."""

    status: int = 0                          # REST status (gRPC: 200 when the stream ended OK)
    headers: CIMultiDict[str] = field(default_factory=CIMultiDict)   # REST, case-insensitive
    metadata: dict[str, Any] = field(default_factory=dict)    # gRPC ExportMetadata / REST headers
    summary: dict[str, Any] = field(default_factory=dict)     # gRPC ExportSummary
    offset: int = 0
    length: int = 0                          # bytes covered (data and holes)
    data_bytes: int = 0
    hole_bytes: int = 0
    holes: int = 0
    sha256: str = ""                         # of the bytes covered, holes as zeros
    mismatches: list[int] = field(default_factory=list)      # offsets whose bytes differ from the content


def _check(volume: Volume, received: Received, offset: int, data: bytes, digest: Any) -> None:
    if offset != received.offset + received.length:
        received.mismatches.append(offset)
    if data != volume.expected(offset, len(data)):
        received.mismatches.append(offset)
    digest.update(data)
    received.length += len(data)


async def grpc_export(server: GatewayServer, volume: Volume, *, user: str = "dev", stop_after: int | None = None,
                      **fields: Any) -> Received:
    """ExportDisk / ExportDiskSnapshot; ``fields`` go into the request (range=ByteRange(...),
    expand_holes, whole_image_sha256, if_etag). ``stop_after``: cancel after that many bytes."""
    received, digest = Received(), hashlib.sha256()
    options = [("grpc.max_receive_message_length", MAX_MESSAGE)]
    async with grpc.aio.insecure_channel(server.grpc_target, options=options) as channel:
        stub = export_service_pb2_grpc.ExportServiceStub(channel)
        if volume.kind == "disk":
            call = stub.ExportDisk(export_service_pb2.ExportDiskRequest(namespace=server.namespace, name=volume.name,
                                                                         **fields),
                                   metadata=(("authorization", f"Bearer {server.tokens[user]}"),))
        else:
            call = stub.ExportDiskSnapshot(export_service_pb2.ExportDiskSnapshotRequest(
                namespace=server.namespace, name=volume.name, **fields),
                metadata=(("authorization", f"Bearer {server.tokens[user]}"),))
        async for chunk in call:
            which = chunk.WhichOneof("chunk")
            if which == "metadata":
                m = chunk.metadata
                received.metadata = {"size": m.size, "offset": m.offset, "length": m.length, "etag": m.etag,
                                     "operation_id": m.operation_id, "sha256": m.sha256}
                received.offset = m.offset
            elif which == "data":
                received.data_bytes += len(chunk.data.data)
                _check(volume, received, chunk.data.offset, chunk.data.data, digest)
            elif which == "hole":
                received.hole_bytes += chunk.hole.length
                received.holes += 1
                _check(volume, received, chunk.hole.offset, bytes(chunk.hole.length), digest)
            else:
                s = chunk.summary
                received.summary = {"size": s.size, "offset": s.offset, "length": s.length, "sha256": s.sha256,
                                    "range_sha256": s.range_sha256, "hole_bytes": s.hole_bytes}
            if stop_after is not None and received.length >= stop_after:
                call.cancel()
                break
    received.status = 200
    received.sha256 = digest.hexdigest()
    return received


def export_url(server: GatewayServer, volume: Volume) -> str:
    plural = "disks" if volume.kind == "disk" else "disk-snapshots"
    return f"{server.rest_url}/v1/namespaces/{server.namespace}/{plural}/{volume.name}:export"


async def rest_export(server: GatewayServer, volume: Volume, *, headers: dict[str, str] | None = None,
                      user: str = "dev", stop_after: int | None = None, query: str = "") -> Received:
    """GET ...:export; ``stop_after``: drop the connection after that many bytes."""
    received, digest = Received(), hashlib.sha256()
    async with aiohttp.ClientSession() as session, session.get(export_url(server, volume) + query,
                           headers={**server.auth(user), **(headers or {})}) as response:
        received.status = response.status
        received.headers = CIMultiDict(response.headers)
        if response.status not in (200, 206):
            received.metadata = await response.json(content_type=None)
            return received
        content_range = response.headers.get("Content-Range", "")
        received.offset = int(content_range.split(" ")[1].split("-")[0]) if content_range else 0
        async for piece in response.content.iter_chunked(1 << 20):
            _check(volume, received, received.offset + received.length, piece, digest)
            received.data_bytes += len(piece)
            if stop_after is not None and received.length >= stop_after:
                break
    received.sha256 = digest.hexdigest()
    return received
