"""The DataExport block endpoint: GET|HEAD <status.url>/api/v1/block with Range support, streamed."""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import AsyncIterator, Iterable
from datetime import UTC, datetime

from aiohttp import web

from service.embedded_cluster.contracts import Obj, ObjectStore, StatusError

from .content import iter_disk_views
from .dataexport import export_source, seconds_left
from .kube import get_condition, meta, name_of, namespace_of, parse_time, uid_of
from .resources import ANN_LAST_ACCESS, DATAEXPORT
from .settings import ControllerSettings

log = logging.getLogger("embedded_cluster.exporter")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
ACCESS_RECORD_INTERVAL = 1.0
PACE_INTERVAL = 0.05    # a throttled download writes a slice this often, so a reader sees steady progress
LIVENESS_INTERVAL = 0.2  # how often a running download checks that its DataExport still exists


class RangeNotSatisfiable(Exception):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """(start, end exclusive) of a single ``bytes=`` range; None to serve everything (absent or
    unparsable, which RFC 9110 says to ignore). Raises RangeNotSatisfiable."""
    if not header:
        return None
    match = _RANGE.match(header.strip())
    if match is None or (not match.group(1) and not match.group(2)):
        return None
    first, last = match.group(1), match.group(2)
    if not first:
        suffix = int(last)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiable
        return max(0, size - suffix), size
    start = int(first)
    end = min(int(last) + 1, size) if last else size
    if last and int(last) < start:
        return None
    if start >= size:
        raise RangeNotSatisfiable
    return start, end


def _problem(status: int, message: str, **headers: str) -> web.Response:
    return web.json_response({"status": status, "message": message}, status=status, headers=headers)


class _Watch:
    """Whether the export being served was deleted (or replaced) since the download began: the real
    exporter pod goes away with its DataExport. Looked up at most every LIVENESS_INTERVAL (a store
    read copies the object)."""

    def __init__(self, store: ObjectStore, export: Obj) -> None:
        self._store = store
        self._key = (namespace_of(export), name_of(export))
        self._uid = uid_of(export)
        self._next = time.monotonic() + LIVENESS_INTERVAL

    def gone(self) -> bool:
        now = time.monotonic()
        if now < self._next:
            return False
        self._next = now + LIVENESS_INTERVAL
        current = self._store.get(DATAEXPORT, *self._key)
        return current is None or uid_of(current) != self._uid or bool(current["metadata"].get("deletionTimestamp"))


class Exporter:
    def __init__(self, store: ObjectStore, settings: ControllerSettings) -> None:
        self.store = store
        self.settings = settings
        self.faults = settings.faults

    def routes(self) -> list[web.RouteDef]:
        path = "/dataexport/{namespace}/{name}/api/v1/block"
        # aiohttp serves HEAD for a GET route by itself (allow_head); the handler skips the body then.
        return [web.get(path, self.block)]

    def _caller(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, token = header.partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return None
        return self.settings.authenticate(token.strip())

    async def block(self, request: web.Request) -> web.StreamResponse:
        user = self._caller(request)
        if user is None:
            return _problem(401, "Unauthorized: a valid bearer token is required.", **{"WWW-Authenticate": "Bearer"})
        namespace, name = request.match_info["namespace"], request.match_info["name"]
        export = self.store.get(DATAEXPORT, namespace, name)
        if export is None:
            return _problem(404, f"The DataExport {namespace}/{name} is not found.")
        ready = get_condition(export, "Ready")
        if seconds_left(export) <= 0 or (ready is not None and ready.get("reason") == "Expired"):
            return _problem(410, f"The DataExport {namespace}/{name} has expired.")
        source, _, message = export_source(self.store, export)
        if source is None or ready is None or ready.get("status") != "True":
            return _problem(409, message or f"The DataExport {namespace}/{name} is not ready.")
        try:
            wanted = parse_range(request.headers.get("Range"), source.size)
        except RangeNotSatisfiable:
            return _problem(416, "Range not satisfiable.", **{"Content-Range": f"bytes */{source.size}"})
        await self._record_access(namespace, name)
        start, end = wanted if wanted is not None else (0, source.size)
        response = web.StreamResponse(status=206 if wanted is not None else 200)
        response.headers["Content-Type"] = "application/octet-stream"
        response.headers["Accept-Ranges"] = "bytes"
        response.content_length = end - start
        if wanted is not None:
            response.headers["Content-Range"] = f"bytes {start}-{end - 1}/{source.size}"
        log.info("export %s/%s bytes %d-%d to %s", namespace, name, start, end, user)
        await response.prepare(request)
        if request.method == "HEAD":
            await response.write_eof()
            return response
        pieces = iter_disk_views(source.seed, source.size, start, end - start, self.settings.export_chunk)
        return await self._stream(request, response, export, pieces)

    async def _stream(self, request: web.Request, response: web.StreamResponse, export: Obj,
                      pieces: Iterable[memoryview]) -> web.StreamResponse:
        """Send the body; the client leaving, an injected drop or the export's deletion ends it early."""
        what = f"{namespace_of(export)}/{name_of(export)}"
        try:
            cut = await self._write_body(response, pieces, self.faults.take_export_drop(), _Watch(self.store, export))
        except ConnectionError:
            log.info("export %s: the client went away", what)
            return response     # aiohttp finds the connection gone and finishes quietly
        if cut:
            # Close short of Content-Length: the client sees a truncated body, as when the exporter pod goes.
            log.info("export %s: download cut: %s", what, cut)
            if request.transport is not None:
                request.transport.close()   # flushes what was written, then closes
            return response
        await response.write_eof()
        return response

    async def _write_body(self, response: web.StreamResponse, pieces: Iterable[memoryview],
                          drop_after: int | None, watch: _Watch) -> str:
        """Write the pieces (only ``drop_after`` bytes of them, if set); why the body was cut short,
        or "" when it was sent whole."""
        sent = 0
        for piece in pieces:
            room = None if drop_after is None else drop_after - sent
            if room is not None and len(piece) > room:
                piece = piece[:room]
            async for part in self._paced(piece):
                if watch.gone():
                    return "the DataExport was deleted"
                await response.write(part)
            if room is not None and len(piece) == room:
                return "an injected fault"
            sent += len(piece)
        return ""

    async def _paced(self, data: memoryview) -> AsyncIterator[memoryview]:
        """All of ``data`` at once, or slices at the injected rate (read again per slice: a test
        may lift or change it while the download runs)."""
        while data:
            rate = self.faults.export_rate()
            part = data if rate is None else data[:max(1, int(rate * PACE_INTERVAL))]
            yield part
            if rate is not None:
                await asyncio.sleep(len(part) / rate)
            data = data[len(part):]

    async def _record_access(self, namespace: str, name: str) -> None:
        """Restart the TTL (it counts from the last access), at most once a second per export."""
        for _ in range(3):
            export = self.store.get(DATAEXPORT, namespace, name)
            if export is None:
                return
            now = datetime.now(UTC)
            annotations = meta(export).setdefault("annotations", {})
            previous = parse_time(str(annotations.get(ANN_LAST_ACCESS, "")))
            if previous is not None and (now - previous).total_seconds() < ACCESS_RECORD_INTERVAL:
                return
            annotations[ANN_LAST_ACCESS] = now.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            try:
                await self.store.update(DATAEXPORT, export)
                return
            except StatusError as err:
                if err.code != 409:
                    raise
