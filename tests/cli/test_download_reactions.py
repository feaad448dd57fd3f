"""How ``download()`` reacts to answers the real gateway gives rarely or never on demand:
a busy 503, a connection dropped mid-body, a changed content, a wrong or missing digest.

A stub server plays those answers; the export contract itself is exercised against the
real gateway in ``test_download_e2e.py``.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiohttp import web

from service.client import download
from service.client.partfile import PartPaths
from service.embedded_cluster.controllers.content import iter_disk_content

SIZE = (3 << 20) + 1000
CONTENT = b"".join(iter_disk_content("stub", SIZE))
SHA = hashlib.sha256(CONTENT).hexdigest()
ETAG = '"stub-etag"'


@dataclass
class Stub:
    """Answers one scripted behaviour per request, then plain full answers."""

    url: str = ""
    script: list[str] = field(default_factory=list)
    seen: list[dict[str, str]] = field(default_factory=list)
    digest: str = SHA          # what Repr-Digest and the operation say ("" for nothing)
    etag: str = ETAG

    def repr_digest(self) -> dict[str, str]:
        if not self.digest:
            return {}
        return {"Repr-Digest": "sha-256=:" + base64.b64encode(bytes.fromhex(self.digest)).decode() + ":"}


STUB = web.AppKey("stub", Stub)


async def _export(request: web.Request) -> web.StreamResponse:
    stub = request.app[STUB]
    stub.seen.append(dict(request.headers))
    step = stub.script.pop(0) if stub.script else ""
    if step == "busy":
        return web.json_response({"title": "Service Unavailable", "detail": "the exporter is busy", "status": 503,
                                  "code": "UNAVAILABLE", "reason": "EXPORTER_UNAVAILABLE"},
                                 status=503, headers={"Retry-After": "0"}, content_type="application/problem+json")
    start = 0
    ranged = "Range" in request.headers and request.headers.get("If-Range") == stub.etag and step != "changed"
    if ranged:
        start = int(request.headers["Range"].removeprefix("bytes=").removesuffix("-"))
    headers = {"ETag": stub.etag, "Content-Length": str(SIZE - start), "X-Operation-Id": "op-1",
               "Content-Type": "application/octet-stream", **stub.repr_digest()}
    if ranged:
        headers["Content-Range"] = f"bytes {start}-{SIZE - 1}/{SIZE}"
    response = web.StreamResponse(status=206 if ranged else 200, headers=headers)
    await response.prepare(request)
    if step == "drop":
        await response.write(CONTENT[start:start + (SIZE - start) // 2])
        assert request.transport is not None
        request.transport.close()
        return response
    await response.write(CONTENT[start:])
    return response


async def _operation(request: web.Request) -> web.Response:
    stub = request.app[STUB]
    return web.json_response({"id": "op-1", "done": True, "state": "SUCCEEDED",
                              "transfer": {"size": SIZE, "sha256": stub.digest, "outcome": "COMPLETED"}})


@pytest.fixture
async def stub() -> AsyncIterator[Stub]:
    app = web.Application()
    app[STUB] = state = Stub()
    app.router.add_get("/v1/namespaces/{ns}/disks/{name}:export", _export)
    app.router.add_get("/v1/operations/{id}", _operation)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    state.url = f"http://127.0.0.1:{port}"
    try:
        yield state
    finally:
        await runner.cleanup()


async def _download(stub: Stub, output: Path, notices: list[str] | None = None,
                    **options: bool | int) -> download.DownloadResult:
    sink: Callable[[str], None] = (notices if notices is not None else []).append
    return await download.download(server=stub.url, token="t", namespace="demo", kind="disk", name="d",
                                   output=output, notice=sink, **options)  # type: ignore[arg-type]


async def test_a_busy_gateway_is_retried(stub: Stub, tmp_path: Path) -> None:
    stub.script = ["busy"]
    notices: list[str] = []
    result = await _download(stub, tmp_path / "d.img", notices)
    assert result.verified and result.retries == 1
    assert "the exporter is busy (503 UNAVAILABLE)" in notices[0]
    assert (tmp_path / "d.img").read_bytes() == CONTENT


async def test_a_dropped_connection_resumes_with_if_range(stub: Stub, tmp_path: Path) -> None:
    stub.script = ["drop"]
    result = await _download(stub, tmp_path / "d.img")
    assert result.verified and result.retries == 1 and result.received == SIZE
    first, second = stub.seen
    assert "Range" not in first
    assert second["Range"] == f"bytes={SIZE // 2}-" and second["If-Range"] == ETAG
    assert second["Want-Repr-Digest"] == "sha-256=1"
    assert (tmp_path / "d.img").read_bytes() == CONTENT
    assert not PartPaths(tmp_path / "d.img").part.exists() and not PartPaths(tmp_path / "d.img").meta.exists()


async def test_changed_content_starts_over(stub: Stub, tmp_path: Path) -> None:
    stub.script = ["drop", "changed"]
    notices: list[str] = []
    result = await _download(stub, tmp_path / "d.img", notices)
    assert result.restarted and result.verified
    assert any("changed since d.img.part was written: starting over" in n for n in notices)
    assert (tmp_path / "d.img").read_bytes() == CONTENT


async def test_a_wrong_digest_keeps_the_part_file(stub: Stub, tmp_path: Path) -> None:
    stub.digest = "00" * 32
    with pytest.raises(download.ChecksumMismatch) as caught:
        await _download(stub, tmp_path / "d.img")
    assert caught.value.exit_code == 3
    assert "checksum mismatch" in str(caught.value) and "\n" not in str(caught.value)
    assert not (tmp_path / "d.img").exists()
    assert (tmp_path / "d.img.part").read_bytes() == CONTENT


async def test_no_digest_is_not_verified_unless_asked_not_to(stub: Stub, tmp_path: Path) -> None:
    stub.digest = ""
    with pytest.raises(download.NotVerified) as caught:
        await _download(stub, tmp_path / "d.img")
    assert caught.value.exit_code == 1 and "not verified" in str(caught.value)
    # The kept part file is complete: --no-verify accepts it, asking only for its last byte.
    result = await _download(stub, tmp_path / "d.img", verify=False)
    assert not result.verified and result.received == 1
    assert stub.seen[-1]["Range"] == f"bytes={SIZE - 1}-"
    assert (tmp_path / "d.img").read_bytes() == CONTENT
