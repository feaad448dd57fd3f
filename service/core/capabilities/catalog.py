"""The read side of a kind callers see as objects (disk and VM snapshots): get, list, watch.

Generic over the domain type: a capability gives its kind, its resource -> domain
translation and its event type; paging and watch semantics are the same for every kind.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Callable
from typing import Any, Generic, Protocol, TypeVar

from service.core import paging, request_checks
from service.core.capabilities.registry import Call, Registry
from service.core.contract import Method
from service.core.domain import Page, WatchEventType
from service.core.errors import ApiError, Code, not_found
from service.core.fanout import OncePer
from service.core.page_tokens import PageTokens
from service.core.ports import ClusterClient, ResourceKind, WatchSource
from service.core.requests import ListRequest, ObjectKey, WatchRequest
from service.core.validation import effective_page_size


class Viewed(Protocol):
    namespace: str
    name: str
    resource_version: str


T = TypeVar("T", bound=Viewed)
E = TypeVar("E")


class _Translated(Generic[T, E]):
    """One cluster object's domain view, and its events by type: shared by every watcher."""

    __slots__ = ("events", "item")

    def __init__(self, item: T) -> None:
        self.item = item
        self.events: dict[WatchEventType, E] = {}


class Catalog(Generic[T, E]):
    def __init__(self, *, kind: ResourceKind, view: Callable[[dict[str, Any]], T],
                 event: Callable[[WatchEventType, T], E], cluster: ClusterClient, hub: WatchSource,
                 default_page_size: int, max_page_size: int, page_tokens: PageTokens) -> None:
        self._kind = kind
        self._tokens = page_tokens
        self._view = view
        self._event = event
        self._cluster = cluster
        self._hub = hub
        self._default_page_size = default_page_size
        self._max_page_size = max_page_size
        # The hub hands every subscriber the same object: translate it once for all of
        # them, so the adapters also see one event object and encode it once.
        self._translate: OncePer[dict[str, Any], _Translated[T, E]] = OncePer(
            f"translate:{kind.plural}", lambda obj: _Translated(view(obj)))

    async def get(self, key: ObjectKey) -> T:
        request_checks.object_key(key.namespace, key.name)
        try:
            obj = await self._cluster.get(self._kind, key.namespace, key.name)
        except ApiError as exc:
            if exc.code == Code.NOT_FOUND:
                raise not_found(self._kind.kind, key.name, key.namespace) from None
            raise
        return self._view(obj)

    async def list_page(self, req: ListRequest) -> Page[T]:
        request_checks.list_request(req)
        continue_token = paging.unwrap(self._tokens, req.page_token, self._kind.plural, req.namespace,
                                       req.label_selector)
        size = effective_page_size(req.page_size, self._default_page_size, self._max_page_size)
        try:
            result = await self._cluster.list(self._kind, req.namespace, label_selector=req.label_selector,
                                              limit=size, continue_token=continue_token)
        except ApiError as exc:
            if exc.reason == "WATCH_EXPIRED" or (continue_token and exc.code == Code.INVALID_ARGUMENT):
                raise ApiError(Code.INVALID_ARGUMENT, "PAGE_TOKEN_EXPIRED",
                               "page_token has expired; start the list again") from None
            raise
        return Page([self._view(o) for o in result.items],
                    paging.wrap(self._tokens, result.continue_token, self._kind.plural, req.namespace,
                                req.label_selector))

    def serve(self, registry: Registry, get: Method[ObjectKey, T], list_: Method[ListRequest, Page[T]],
              watch: Method[WatchRequest, E]) -> None:
        """Answer the kind's Get, List and Watch methods."""

        async def get_one(call: Call, key: ObjectKey) -> T:
            return await self.get(key)

        async def list_page(call: Call, req: ListRequest) -> Page[T]:
            return await self.list_page(req)

        async def open_watch(call: Call, req: WatchRequest) -> AsyncIterator[E]:
            self.check_watch(req)  # before the stream opens: refused calls are audited as such
            return self.watch(req)

        registry.on(get, get_one)
        registry.on(list_, list_page)
        registry.on_stream(watch, open_watch)

    def check_watch(self, req: WatchRequest) -> None:
        request_checks.watch_key(req.namespace, req.name)

    async def watch(self, req: WatchRequest) -> AsyncGenerator[E, None]:
        """Current objects as ADDED (the hub replays its cache to a new subscriber), then
        every change; repeats of an already delivered resourceVersion are dropped. Every
        watcher of the same change gets the same event object (translated once). A watcher
        that falls too far behind gets ABORTED / WATCH_OVERFLOW: list again, watch again."""
        self.check_watch(req)
        namespace, name = req.namespace, req.name
        delivered: dict[str, str] = {}
        members = WatchEventType.__members__
        async with self._hub.subscribe(self._kind, namespace, name or None) as events:
            async for event in events:
                kind = members.get(event.type)
                if kind is None:
                    continue  # BOOKMARK and anything unknown
                shared = self._translate(event.object)
                item = shared.item
                if item.namespace != namespace or (name and item.name != name):
                    continue
                if kind is WatchEventType.DELETED:
                    delivered.pop(item.name, None)
                elif delivered.get(item.name) == item.resource_version:
                    continue
                else:
                    delivered[item.name] = item.resource_version
                out = shared.events.get(kind)
                if out is None:
                    out = shared.events[kind] = self._event(kind, item)
                yield out
