"""Watch streams: newline-delimited JSON events, resumable from the store's history."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web

from service.embedded_cluster.apiserver.faults import FaultInjector
from service.embedded_cluster.apiserver.status import bad_request, status_body
from service.embedded_cluster.apiserver.store import MemoryStore
from service.embedded_cluster.apiserver.subscription import Subscription
from service.embedded_cluster.apiserver.table import TableConverter
from service.embedded_cluster.contracts import Obj, ResourceType, StatusError, StoreEvent

DEFAULT_TIMEOUT = 1800.0
# How often an idle watch checks that its client is still connected.
LIVENESS_CHECK = 2.0


@dataclass
class WatchRequest:
    rtype: ResourceType
    namespace: str
    matches: Callable[[Obj], bool]
    filtered: bool                     # a label or field selector is in use
    resource_version: str
    timeout: float
    bookmarks: bool
    table: TableConverter | None = None
    table_api_version: str = ""
    include_object: str = "Metadata"
    visible: set[tuple[str, str]] = field(default_factory=set)

    def since(self) -> int | None:
        """None: send the current objects first (resourceVersion "" or "0")."""
        if self.resource_version in ("", "0"):
            return None
        if not self.resource_version.isdigit() or len(self.resource_version) > 18:
            raise bad_request(f"invalid resource version: {self.resource_version!r}")
        return int(self.resource_version)


def _key(obj: Obj) -> tuple[str, str]:
    meta = obj.get("metadata", {})
    return (str(meta.get("namespace", "")), str(meta.get("name", "")))


class WatchStream:
    def __init__(self, store: MemoryStore, faults: FaultInjector, request: WatchRequest, *, queue_size: int,
                 bookmark_interval: float) -> None:
        self._store = store
        self._faults = faults
        self._request = request
        self._queue_size = queue_size
        self._bookmark_interval = bookmark_interval
        self._end_reason = ""
        self._subscription: Subscription | None = None

    def _shape(self, obj: Obj) -> Obj:
        request = self._request
        if request.table is None:
            return obj
        return request.table.table([obj], request.include_object, {"resourceVersion": obj["metadata"].get(
            "resourceVersion", "")}, request.table_api_version)

    def _translate(self, event: StoreEvent) -> tuple[str, Obj] | None:
        """The event this watcher sees: selectors turn "stopped matching" into DELETED."""
        request, obj = self._request, event.object
        key = _key(obj)
        if request.namespace and key[0] != request.namespace:
            return None
        matches = request.matches(obj)
        if event.type == "DELETED":
            if matches or key in request.visible:
                request.visible.discard(key)
                return "DELETED", obj
            return None
        if matches:
            if request.filtered:
                request.visible.add(key)
            return event.type, obj
        if request.filtered and key in request.visible:
            request.visible.discard(key)
            return "DELETED", obj
        return None

    async def _send(self, response: web.StreamResponse, event_type: str, obj: Obj) -> None:
        line = json.dumps({"type": event_type, "object": obj}, separators=(",", ":")) + "\n"
        await response.write(line.encode())

    def _bookmark(self) -> Obj:
        rtype = self._request.rtype
        return {"kind": rtype.kind, "apiVersion": rtype.api_version,
                "metadata": {"resourceVersion": str(self._store.resource_version)}}

    def _close(self, reason: str) -> None:
        self._end_reason = reason
        if self._subscription is not None:
            self._subscription.close()

    async def serve(self, http_request: web.Request) -> web.StreamResponse:
        request = self._request
        since = request.since()
        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json",
                                                           "Cache-Control": "no-cache"})
        response.enable_chunked_encoding()
        try:
            backlog, self._subscription = self._store.watch(request.rtype.key, since, queue_size=self._queue_size)
        except StatusError as error:
            # The real API server answers a too-old resourceVersion with 200 and one ERROR event.
            await response.prepare(http_request)
            await self._send(response, "ERROR", status_body(error))
            return response
        initial = self._store.list(request.rtype.key, request.namespace or None) if since is None else []
        subscription = self._subscription
        unregister = self._faults.register_watch(self._close)
        try:
            await response.prepare(http_request)
            for obj in initial:
                if request.matches(obj):
                    if request.filtered:
                        request.visible.add(_key(obj))
                    await self._send(response, "ADDED", self._shape(obj))
            for event in backlog:
                await self._deliver(response, event)
            await self._follow(response, subscription, http_request)
        except ConnectionError:
            pass   # the client went away: nothing left to tell it
        finally:
            unregister()
            subscription.close()
        return response

    async def _deliver(self, response: web.StreamResponse, event: StoreEvent) -> None:
        translated = self._translate(event)
        if translated is not None:
            await self._send(response, translated[0], self._shape(translated[1]))

    async def _follow(self, response: web.StreamResponse, subscription: Subscription,
                      http_request: web.Request) -> None:
        request = self._request
        loop = asyncio.get_running_loop()
        deadline = loop.time() + request.timeout
        next_bookmark = loop.time() + self._bookmark_interval
        while True:
            now = loop.time()
            wait = min(deadline - now, LIVENESS_CHECK)
            if request.bookmarks:
                wait = min(wait, next_bookmark - now)
            try:
                event = await asyncio.wait_for(anext(subscription), timeout=max(0.0, wait))
            except TimeoutError:
                now = loop.time()
                if now >= deadline:
                    if request.bookmarks:
                        await self._send(response, "BOOKMARK", self._bookmark())
                    return
                if request.bookmarks and now >= next_bookmark:
                    await self._send(response, "BOOKMARK", self._bookmark())
                    next_bookmark = now + self._bookmark_interval
                elif http_request.transport is None or http_request.transport.is_closing():
                    return   # the client left while nothing happened: free its subscription now
                continue
            except StopAsyncIteration:
                if self._end_reason == "expired":
                    await self._send(response, "ERROR", status_body(StatusError(
                        410, "Expired", "The resourceVersion for the provided watch is too old.")))
                return
            await self._deliver(response, event)
