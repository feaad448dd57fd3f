"""The Deckhouse Virtualization Platform's controllers, simulated (as kwok/moto do), plus the DataExport
exporter. They run in the API server's process and use its ObjectStore directly; every write is
admitted like an HTTP write."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from service.embedded_cluster.contracts import ObjectStore, StoreEvent

from .addresses import AddressReconciler
from .dataexport import DataExportReconciler
from .disk_snapshots import DiskSnapshotReconciler
from .disks import DiskReconciler
from .exporter import Exporter
from .images import ImageReconciler
from .kube import name_of, namespace_of
from .machines import MachineReconciler
from .runtime import Loop, Mapper, Reconciler
from .settings import ControllerSettings
from .snapshot_operations import SnapshotOperationReconciler
from .vm_operations import MachineOperationReconciler
from .vm_snapshots import MachineSnapshotReconciler

__all__ = ["ControllerManager", "ControllerSettings"]


class ControllerManager:
    def __init__(self, store: ObjectStore, settings: ControllerSettings) -> None:
        self.store = store
        self.settings = settings
        reconcilers: list[Reconciler] = [
            ImageReconciler(store, settings, cluster_scoped=False),
            ImageReconciler(store, settings, cluster_scoped=True),
            AddressReconciler(store, settings, mac=False),
            AddressReconciler(store, settings, mac=True),
            DiskReconciler(store, settings),
            MachineReconciler(store, settings),
            DiskSnapshotReconciler(store, settings),
            MachineSnapshotReconciler(store, settings),
            MachineOperationReconciler(store, settings),
            SnapshotOperationReconciler(store, settings),
        ]
        # The storage-volume-data-manager module: DataExports and the exporter serving them.
        self._exporter = Exporter(store, settings) if settings.export_module else None
        if settings.export_module:
            reconcilers.append(DataExportReconciler(store, settings))
        self._loops: list[tuple[Loop, dict[str, Mapper]]] = [
            (Loop(r, settings.step_delay), r.watches()) for r in reconcilers]
        self._tasks: list[asyncio.Task[None]] = []
        self._subscription: AsyncIterator[StoreEvent] | None = None

    async def start(self) -> None:
        if self._tasks:
            return
        self._subscription = self.store.subscribe()      # before listing: no change falls in between
        self._tasks = [asyncio.create_task(loop.run(), name=f"reconcile-{loop.reconciler.resource}")
                       for loop, _ in self._loops]
        self._tasks.append(asyncio.create_task(self._dispatch(), name="controller-events"))
        self._tasks.append(asyncio.create_task(self._resync(), name="controller-resync"))
        self._enqueue_all()

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for loop, _ in self._loops:
            loop.cancel_timers()
        await self._close_subscription()

    def exporter_routes(self) -> list[web.RouteDef]:
        return self._exporter.routes() if self._exporter is not None else []

    async def _close_subscription(self) -> None:
        subscription, self._subscription = self._subscription, None
        close = getattr(subscription, "aclose", None)
        if close is not None:
            with contextlib.suppress(Exception):
                await close()

    async def _dispatch(self) -> None:
        while True:
            if self._subscription is None:
                self._subscription = self.store.subscribe()
                self._enqueue_all()
            async for event in self._subscription:
                self._route(event)
            # The store closed a subscription that fell behind: subscribe again and relist.
            self._subscription = None

    async def _resync(self) -> None:
        while True:
            await asyncio.sleep(self.settings.resync_period)
            self._enqueue_all()

    def _route(self, event: StoreEvent) -> None:
        for loop, watches in self._loops:
            if event.resource == loop.reconciler.resource:
                loop.enqueue((namespace_of(event.object), name_of(event.object)))
            mapper = watches.get(event.resource)
            if mapper is not None:
                for key in mapper(event):
                    loop.enqueue(key)

    def _enqueue_all(self) -> None:
        for loop, _ in self._loops:
            for obj in loop.reconciler.safe_list(loop.reconciler.resource):
                loop.enqueue((namespace_of(obj), name_of(obj)))
