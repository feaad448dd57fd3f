"""One upstream watch per resource kind, fanned out to any number of subscribers.

For each kind the hub runs a small informer: list (all pages), then watch from the
list's resourceVersion, keeping the latest object per (namespace, name). After a watch
the server ended cleanly it watches again from the last resourceVersion it saw (with
backoff). It relists instead whenever that history may not be the cluster's any more:
on 410 Gone, after the cluster was unavailable or unreachable (it may come back as
another cluster: restarted, restored, recreated at the same address), and when the
cluster's resourceVersion went back below the last one seen (a short probe before each
resume, and every event checked on arrival). A relist is delivered as client-go's
``Replace``: subscribers get DELETED (with the last known object) for what is gone,
ADDED for what is new, MODIFIED for what changed (DELETED then ADDED when the name now
holds another object, another uid), and nothing for what did not change. So a
subscriber that applies its events in order always ends up holding the cluster's list.

An informer starts with the first subscriber (or ``wait_synced``) and then keeps running
until ``close()``: the kinds are few, the core subscribes to them for as long as the
process lives, and a warm cache makes every later subscriber start without a relist.

Subscribers receive the hub's own dicts: treat them as read-only.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import random
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from service.core.errors import ApiError, Code, watch_overflow
from service.core.ports import ClusterClient, ResourceKind, WatchEvent

log = logging.getLogger(__name__)

Obj = dict[str, Any]
Key = tuple[str, str]  # (namespace, name)

_RELIST_PAGE_SIZE = 500
# Subscribers offered a live event between two turns of the event loop.
_FAN_OUT_BATCH = 256


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata")
    meta = meta if isinstance(meta, dict) else {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


def _resource_version(obj: Obj) -> str:
    meta = obj.get("metadata")
    return str(meta.get("resourceVersion") or "") if isinstance(meta, dict) else ""


def _uid(obj: Obj) -> str:
    meta = obj.get("metadata")
    return str(meta.get("uid") or "") if isinstance(meta, dict) else ""


def went_back(version: str, last: str, *, allow_equal: bool) -> bool:
    """Whether ``version`` is older than ``last`` (or equal, unless ``allow_equal``).

    resourceVersions are opaque to clients, but every API server issues them from one
    increasing counter (etcd's revision), and a watch delivers them in increasing order;
    a number that goes back means the history changed under us. Non-numeric versions
    are never called older: then only 410 and outages make the hub relist."""
    if not (version.isdigit() and last.isdigit()):
        return False
    new, old = int(version), int(last)
    return new < old or (new == old and not allow_equal)


def replace_events(old: dict[Key, Obj], fresh: dict[Key, Obj]) -> list[WatchEvent]:
    """What a subscriber holding ``old`` must apply to hold ``fresh`` (client-go's Replace),
    and nothing for an object that did not change."""
    events = [WatchEvent("DELETED", obj) for key, obj in old.items() if key not in fresh]
    for key, obj in fresh.items():
        previous = old.get(key)
        if previous is None:
            events.append(WatchEvent("ADDED", obj))
        elif _uid(previous) != _uid(obj):
            # Another object under the same name: the old one was deleted while we did not
            # look. Say so, as the watch would have, so uid-keyed consumers stay right.
            events += [WatchEvent("DELETED", previous), WatchEvent("ADDED", obj)]
        elif previous != obj:
            # Compared whole, not by resourceVersion: a restored cluster may hand back an
            # older version (or the same number for other content).
            events.append(WatchEvent("MODIFIED", obj))
    return events


class _HistoryGap(Exception):
    """The watch does not continue the history the cache was built from: relist."""


class _End:
    """Queued after the last event: the hub closed, or the subscriber left."""

    def __init__(self, hub_closed: bool) -> None:
        self.hub_closed = hub_closed


_END = _End(hub_closed=True)
_LEFT = _End(hub_closed=False)


class Subscription:
    """An async context manager and async iterator of ADDED/MODIFIED/DELETED events.

    Registers on ``__aenter__`` (or the first ``__anext__``): the current matching
    objects arrive first as ADDED, then live changes. Leave with ``async with`` (or
    ``aclose()``) so the hub stops queueing for you.

    Kept small and cheap (a gateway holds thousands): a plain deque and at most one
    waiting future instead of an ``asyncio.Queue``; the hub's per-subscriber work is a
    filter check and an append of the shared event. The backlog is bounded: a subscriber
    that falls ``queue_size`` events behind is cut off with WATCH_OVERFLOW
    (raised ahead of anything queued) and never slows the hub or the others."""

    __slots__ = ("_abort", "_closed", "_hub", "_items", "_queue_size", "_registered", "_waiter", "kind",
                 "name", "namespace")

    def __init__(self, hub: WatchHub, kind: ResourceKind, namespace: str | None, name: str | None,
                 queue_size: int) -> None:
        self.kind = kind
        self.namespace = namespace
        self.name = name
        self._hub = hub
        self._items: deque[WatchEvent | ApiError | _End] = deque()
        self._queue_size = queue_size
        self._waiter: asyncio.Future[None] | None = None
        self._registered = False
        self._closed = False
        # Raised at once, ahead of anything queued (a slow subscriber is cut off, not drained).
        self._abort: ApiError | None = None

    def matches(self, key: Key) -> bool:
        namespace, name = key
        if self.namespace is not None and namespace != self.namespace:
            return False
        return self.name is None or name == self.name

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _offer(self, item: WatchEvent | ApiError | _End) -> None:
        if self._abort is not None:
            return
        if len(self._items) >= self._queue_size:
            self._abort = item if isinstance(item, ApiError) else watch_overflow(
                f"{self.kind.kind}: the client did not keep up with the events")
            self._items.clear()  # nothing queued will be read: free it now
            self._hub._unregister(self)
        else:
            self._items.append(item)
        self._wake()

    def _register(self) -> None:
        if not self._registered and not self._closed:
            self._registered = True
            self._hub._register(self)

    async def __aenter__(self) -> Subscription:
        self._register()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        self._closed = True
        self._hub._unregister(self)
        self._items.append(_LEFT)  # wakes a consumer blocked in __anext__
        self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> WatchEvent:
        self._register()
        while not self._items and self._abort is None:
            if self._closed:
                raise StopAsyncIteration
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        if self._abort is not None:
            raise self._abort
        item = self._items.popleft()
        if isinstance(item, ApiError):
            raise item
        if isinstance(item, _End):
            if not item.hub_closed:
                raise StopAsyncIteration
            raise ApiError(Code.UNAVAILABLE, "WATCH_HUB_CLOSED", "the gateway is shutting down; watch again",
                           retry_after_seconds=1)
        return item


@dataclass
class _Informer:
    kind: ResourceKind
    cache: dict[Key, Obj] = field(default_factory=dict)
    resource_version: str = ""
    subscribers: set[Subscription] = field(default_factory=set)
    synced: asyncio.Event = field(default_factory=asyncio.Event)
    error: ApiError | None = None
    task: asyncio.Task[None] | None = None


class _Backoff:
    def __init__(self, base: float, cap: float) -> None:
        self._base, self._cap, self._attempt = base, cap, 0

    def reset(self) -> None:
        self._attempt = 0

    def next_delay(self) -> float:
        delay: float = min(self._cap, self._base * 2.0 ** min(self._attempt, 30))
        self._attempt += 1
        return delay * random.uniform(0.5, 1.0)


class WatchHub:
    def __init__(self, client: ClusterClient, *, queue_size: int = 1000, watch_timeout_seconds: int = 300,
                 reconnect_delay: float = 0.2, max_reconnect_delay: float = 5.0,
                 on_restart: Callable[[str, str], None] | None = None) -> None:
        self._client = client
        # Told (kind's plural, reason) each time an informer lists or watches again
        # (metrics): "closed" (the server ended the watch), "expired" (410),
        # "unavailable", "history_gap", "history_lost".
        self._on_restart = on_restart or _ignore
        # Events a subscriber may fall behind before it is cut off (public: tests lower it).
        self.queue_size = queue_size
        self._watch_timeout_seconds = watch_timeout_seconds
        self._reconnect_delay = reconnect_delay
        self._max_reconnect_delay = max_reconnect_delay
        self._informers: dict[ResourceKind, _Informer] = {}
        self._informers_started: dict[ResourceKind, int] = {}
        self._watch_requests: dict[ResourceKind, int] = {}
        self._relists: dict[ResourceKind, int] = {}
        self._closed = False

    # ------------------------------------------------------------ public API

    def subscribe(self, kind: ResourceKind, namespace: str | None = None, name: str | None = None, *,
                  queue_size: int | None = None) -> Subscription:
        """Events for ``kind``, optionally only in ``namespace`` / only for ``name``.
        ``queue_size`` overrides the hub's bound on this subscriber's backlog."""
        return Subscription(self, kind, namespace, name, queue_size or self.queue_size)

    def get_cached(self, kind: ResourceKind, namespace: str, name: str) -> Obj | None:
        """The latest object seen, or None (also when the kind's informer is not synced)."""
        informer = self._informers.get(kind)
        if informer is None or not informer.synced.is_set():
            return None
        return informer.cache.get((namespace, name))

    def list_cached(self, kind: ResourceKind, namespace: str) -> list[Obj] | None:
        """Every object of the namespace the kind's shared watch has seen (read-only), or
        None when that watch is not synced (then ask the cluster)."""
        informer = self._informers.get(kind)
        if informer is None or not informer.synced.is_set():
            return None
        return [obj for key, obj in informer.cache.items() if key[0] == namespace]

    async def wait_synced(self, kind: ResourceKind) -> None:
        """Start the kind's informer if needed and wait for its first full list.
        Raises the informer's ApiError when the kind cannot be watched at all."""
        informer = self._ensure_informer(kind)
        await informer.synced.wait()
        if informer.error is not None:
            raise informer.error

    def upstream_watches_started(self, kind: ResourceKind) -> int:
        """How many informers (each: one list+watch loop) were started for ``kind``."""
        return self._informers_started.get(kind, 0)

    def watch_requests(self, kind: ResourceKind) -> int:
        """How many watch HTTP requests the informer issued (grows on every resume)."""
        return self._watch_requests.get(kind, 0)

    def relists(self, kind: ResourceKind) -> int:
        return self._relists.get(kind, 0)

    def subscriber_count(self, kind: ResourceKind) -> int:
        informer = self._informers.get(kind)
        return len(informer.subscribers) if informer else 0

    async def close(self) -> None:
        self._closed = True
        informers = list(self._informers.values())
        self._informers.clear()
        for informer in informers:
            if informer.task is not None:
                informer.task.cancel()
        for informer in informers:
            if informer.task is not None:
                with contextlib.suppress(asyncio.CancelledError):
                    await informer.task
            for sub in list(informer.subscribers):
                sub._offer(_END)
            informer.subscribers.clear()

    # ------------------------------------------------------------ subscriptions

    def _register(self, sub: Subscription) -> None:
        if self._closed:
            sub._offer(_END)
            return
        informer = self._ensure_informer(sub.kind)
        # No await between the snapshot and joining: nothing can slip in between.
        if informer.synced.is_set():
            for key, obj in sorted(informer.cache.items()):
                if sub.matches(key):
                    sub._offer(WatchEvent("ADDED", obj))
        informer.subscribers.add(sub)

    def _unregister(self, sub: Subscription) -> None:
        informer = self._informers.get(sub.kind)
        if informer is not None:
            informer.subscribers.discard(sub)

    def _ensure_informer(self, kind: ResourceKind) -> _Informer:
        informer = self._informers.get(kind)
        if informer is None:
            informer = _Informer(kind)
            self._informers[kind] = informer
            self._informers_started[kind] = self._informers_started.get(kind, 0) + 1
            # A context of its own: the informer outlives the call that started it, whose
            # request id (logs) and span (traces) must not follow its work.
            informer.task = asyncio.create_task(self._run(informer), name=f"watch-hub:{kind.plural}",
                                                context=contextvars.Context())
        return informer

    # ------------------------------------------------------------ fan-out

    def _emit(self, informer: _Informer, event_type: str, obj: Obj) -> None:
        """Offer one event to every matching subscriber, in one step (relists: no
        subscriber may join between the cache swap and its events)."""
        key = _key(obj)
        event = WatchEvent(event_type, obj)
        for sub in list(informer.subscribers):
            if sub.matches(key):
                sub._offer(event)

    async def _fan_out(self, informer: _Informer, event_type: str, obj: Obj) -> None:
        """A live change to every matching subscriber: the same event object for all (it
        is translated and encoded once downstream), offered in batches with a turn of
        the event loop between them, so that with thousands of watchers the woken
        streams start sending early and health checks and other calls are not held up
        behind the whole fan-out. A subscriber that joins meanwhile got the new cache
        already; one that left is skipped."""
        key = _key(obj)
        event = WatchEvent(event_type, obj)
        subscribers = list(informer.subscribers)
        current = informer.subscribers
        for start in range(0, len(subscribers), _FAN_OUT_BATCH):
            if start:
                await asyncio.sleep(0)
            for sub in subscribers[start:start + _FAN_OUT_BATCH]:
                if sub in current and sub.matches(key):
                    sub._offer(event)

    def _apply(self, informer: _Informer, event: WatchEvent) -> tuple[str, Obj] | None:
        """One watch event into the cache, normalised: repeats dropped, ADDED for a known
        object becomes MODIFIED, DELETED for an unknown one is dropped. Returns what to
        deliver (None: nothing). Raises _HistoryGap when the event cannot follow what the
        cache holds."""
        obj = event.object
        version = _resource_version(obj)
        if went_back(version, informer.resource_version, allow_equal=event.type == "BOOKMARK"):
            # Not dropped as stale: a restarted cluster counts from 1 again, and its events
            # are the truth. The cache is what is stale.
            raise _HistoryGap(f"resourceVersion {version} arrived after {informer.resource_version}")
        if version:
            informer.resource_version = version
        if event.type == "BOOKMARK":
            return None
        key = _key(obj)
        known = informer.cache.get(key)
        if known is not None and _uid(known) != _uid(obj):
            # A name that now holds another object, with no DELETED seen in between.
            raise _HistoryGap(f"{key[0]}/{key[1]} changed uid without a DELETED")
        if event.type == "DELETED":
            return ("DELETED", obj) if informer.cache.pop(key, None) is not None else None
        if known == obj:
            return None
        informer.cache[key] = obj
        return ("MODIFIED" if known is not None else "ADDED"), obj

    # ------------------------------------------------------------ the informer loop

    async def _relist(self, informer: _Informer) -> None:
        """List every page, then swap the cache in one step and emit the differences."""
        self._relists[informer.kind] = self._relists.get(informer.kind, 0) + 1
        fresh: dict[Key, Obj] = {}
        continue_token = ""
        resource_version = ""
        while True:
            page = await self._client.list(informer.kind, "", limit=_RELIST_PAGE_SIZE, continue_token=continue_token)
            for obj in page.items:
                fresh[_key(obj)] = obj
            resource_version = page.resource_version or resource_version
            continue_token = page.continue_token
            if not continue_token:
                break
        events = replace_events(informer.cache, fresh)
        # The swap and the fan-out have no await between them: a subscriber joining at any
        # point gets either the old cache and these events, or the new cache alone.
        informer.cache = fresh
        informer.resource_version = resource_version
        for event in events:
            self._emit(informer, event.type, event.object)
        if events and informer.synced.is_set():
            log.info("relisted %s: %d changes delivered", informer.kind.plural, len(events))
        informer.synced.set()

    async def _history_lost(self, informer: _Informer) -> bool:
        """Before resuming: does the cluster still carry the history we saw? One object's
        list is enough to read its current resourceVersion; a cluster that restarted with
        fewer writes (counting from 1 again) is behind us, and a quiet one would otherwise
        never tell."""
        page = await self._client.list(informer.kind, "", limit=1)
        return went_back(page.resource_version, informer.resource_version, allow_equal=True)

    async def _watch_once(self, informer: _Informer) -> int:
        """One upstream watch request; returns how many events it delivered."""
        self._watch_requests[informer.kind] = self._watch_requests.get(informer.kind, 0) + 1
        delivered = 0
        events = self._client.watch(informer.kind, None, informer.resource_version,
                                    timeout_seconds=self._watch_timeout_seconds)
        try:
            async for event in events:
                delivered += 1
                change = self._apply(informer, event)
                if change is not None:
                    await self._fan_out(informer, *change)
        finally:
            aclose = getattr(events, "aclose", None)
            if aclose is not None:
                await aclose()
        return delivered

    def _fail(self, informer: _Informer, error: ApiError) -> None:
        """The kind cannot be watched (forbidden, module absent...): tell everyone, forget the
        informer so a later subscriber tries again."""
        log.warning("watch on %s stopped: %s", informer.kind.plural, error.reason)
        informer.error = error
        informer.synced.set()
        for sub in list(informer.subscribers):
            sub._offer(error)
        informer.subscribers.clear()
        if self._informers.get(informer.kind) is informer:
            del self._informers[informer.kind]

    async def _run(self, informer: _Informer) -> None:
        backoff = _Backoff(self._reconnect_delay, self._max_reconnect_delay)
        need_list = True
        while True:
            try:
                if need_list or await self._history_lost(informer):
                    if not need_list:
                        self._on_restart(informer.kind.plural, "history_lost")
                    need_list = True
                    await self._relist(informer)
                    need_list = False
                delivered = await self._watch_once(informer)
                self._on_restart(informer.kind.plural, "closed")
                if delivered > 0:
                    backoff.reset()
                    continue
                # An empty watch that ended at once: do not spin against the server.
                await asyncio.sleep(backoff.next_delay())
            except _HistoryGap as gap:
                log.info("watch on %s lost the cluster's history (%s); relisting", informer.kind.plural, gap)
                self._on_restart(informer.kind.plural, "history_gap")
                need_list = True
                # Backoff: a server whose versions never increase must not get a relist loop.
                await asyncio.sleep(backoff.next_delay())
            except ApiError as error:
                if error.reason in ("WATCH_EXPIRED", "RESOURCE_EXPIRED"):
                    self._on_restart(informer.kind.plural, "expired")
                    need_list = True
                    continue
                if error.code is Code.UNAVAILABLE and error.reason != "CLUSTER_UNAUTHORIZED":
                    log.info("watch on %s interrupted (%s); relisting", informer.kind.plural, error.reason)
                    self._on_restart(informer.kind.plural, "unavailable")
                    # What answers next may be another cluster (restarted, restored) whose
                    # versions happen to be ahead of ours: only a list tells the truth.
                    need_list = True
                    await asyncio.sleep(backoff.next_delay())
                    continue
                self._fail(informer, error)
                return


def _ignore(_kind: str, _reason: str) -> None:
    pass
