"""A tiny controller-runtime: one work queue and one worker per controller.

Reconciles are level-triggered: a key is enqueued on any change of the object or of an
object it depends on, and the reconciler re-reads everything from the store. A 409
Conflict re-queues the key at once (the next run re-reads); other errors back off.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

from service.embedded_cluster.contracts import Obj, ObjectStore, StatusError, StoreEvent

from .kube import name_of, namespace_of, same_status
from .settings import ControllerSettings

log = logging.getLogger("embedded_cluster.controllers")

Key = tuple[str, str]          # (namespace or "", name)
Mapper = Callable[[StoreEvent], Iterable[Key]]
ERROR_BACKOFF = 0.5


class Reconciler:
    """Base of every simulated controller. Subclasses set ``resource`` and implement ``reconcile``."""

    resource: str = ""

    def __init__(self, store: ObjectStore, settings: ControllerSettings) -> None:
        self.store = store
        self.settings = settings
        self.writes = 0

    def watches(self) -> dict[str, Mapper]:
        """Other resources whose changes re-queue objects of ``resource``."""
        return {}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        """One step; returns seconds until the key must run again, or None to wait for events."""
        raise RuntimeError(f"{type(self).__name__} does not reconcile")

    # Writes go through these so the worker knows a simulated step happened.
    async def write_status(self, resource: str, obj: Obj, new_status: dict[str, Any]) -> Obj:
        if same_status(obj, new_status):
            return obj
        obj = dict(obj)
        obj["status"] = new_status
        self.writes += 1
        return await self.store.update_status(resource, obj)

    async def write(self, resource: str, obj: Obj) -> Obj:
        self.writes += 1
        return await self.store.update(resource, obj)

    async def create(self, resource: str, obj: Obj) -> Obj:
        self.writes += 1
        return await self.store.create(resource, obj)

    async def delete(self, resource: str, namespace: str | None, name: str) -> None:
        self.writes += 1
        await self.store.delete(resource, namespace, name)

    def namespace_keys(self, namespace: str) -> list[Key]:
        return [(namespace_of(o), name_of(o)) for o in self.safe_list(self.resource, namespace or None, read_only=True)]

    def safe_list(self, resource: str, namespace: str | None = None, *, read_only: bool = False) -> list[Obj]:
        """``read_only=True`` for scans that never change what they read: no copies (hot path)."""
        try:
            return self.store.list(resource, namespace, read_only=read_only)
        except StatusError:
            return []   # the resource type is not served (e.g. an optional module's CRD)

    def same_namespace(self) -> Mapper:
        """Re-queue every primary object in the changed object's namespace (small scale: cheap)."""
        return lambda event: self.namespace_keys(namespace_of(event.object))


class Loop:
    """The queue and worker of one reconciler."""

    def __init__(self, reconciler: Reconciler, step_delay: float) -> None:
        self.reconciler = reconciler
        self.step_delay = step_delay
        self.queue: asyncio.Queue[Key] = asyncio.Queue()
        self.queued: set[Key] = set()
        self.not_before: dict[Key, float] = {}
        self.timers: dict[Key, asyncio.TimerHandle] = {}   # at most one pending wake-up per key

    def enqueue(self, key: Key, delay: float = 0.0) -> None:
        if delay > 0:
            loop = asyncio.get_running_loop()
            pending = self.timers.get(key)
            if pending is not None and not pending.cancelled() and pending.when() <= loop.time() + delay:
                return      # an earlier wake-up is already due; it re-reads everything anyway
            if pending is not None:
                pending.cancel()
            self.timers[key] = loop.call_later(delay, self._fire, key)
            return
        if key not in self.queued:
            self.queued.add(key)
            self.queue.put_nowait(key)

    def _fire(self, key: Key) -> None:
        self.timers.pop(key, None)
        self.enqueue(key)

    def cancel_timers(self) -> None:
        for timer in self.timers.values():
            timer.cancel()
        self.timers.clear()

    async def run(self) -> None:
        while True:
            key = await self.queue.get()
            self.queued.discard(key)
            wait = self.not_before.get(key, 0.0) - time.monotonic()
            if wait > 0:
                self.enqueue(key, wait)
                continue
            await self._reconcile(key)

    async def _reconcile(self, key: Key) -> None:
        before = self.reconciler.writes
        try:
            again = await self.reconciler.reconcile(*key)
        except StatusError as err:
            if err.code == 409:
                again = 0.0
            elif err.code == 404:
                again = None      # the object went away under us; its DELETED event re-queues dependants
            else:
                log.warning("reconcile %s %s/%s: %s %s", self.reconciler.resource, *key, err.code, err.message)
                again = ERROR_BACKOFF
        except Exception:
            log.exception("reconcile %s %s/%s failed", self.reconciler.resource, *key)
            again = ERROR_BACKOFF
        if self.reconciler.writes != before and self.step_delay > 0:
            self.not_before[key] = time.monotonic() + self.step_delay
        else:
            self.not_before.pop(key, None)
        if again is not None:
            self.enqueue(key, again)
