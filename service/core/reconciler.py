"""The operation reconciler (controller-runtime style): level-driven, idempotent, one
reconcile function per kind, dispatched through the capability registry.

Two inputs: the watch hub (every change of each kind an operation writes, matched to
its operation by the operation-id label) and a periodic resync of every unfinished
operation, which is how work survives a crash or an outage: a PENDING operation whose
resource was never written is replayed from its stored request (adopting the resource
if it exists with our label), a RUNNING one is re-read (gone: FAILED, or SUCCEEDED for
a delete). With a ``Leadership`` only the leader acts; events seen while not leading are
skipped and the first resync after taking over catches up.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from datetime import timedelta
from typing import Any

from service.cluster.kinds import LABEL_OPERATION_ID
from service.cluster.translate import metadata
from service.core.capabilities.flows import WriteAhead
from service.core.capabilities.registry import Registry
from service.core.domain import Operation, OperationFilter, OperationState, OperationType, utcnow
from service.core.errors import ApiError, Code
from service.core.op_updates import OperationWriter
from service.core.ports import Leadership, ResourceKind, WatchEvent, WatchSource
from service.core.progress import follow_resource
from service.core.workqueue import WorkQueue, cancel_all

log = logging.getLogger(__name__)

WATCH_RETRY_SECONDS = 1.0
# Objects followed at once (each handling is a database write or two).
EVENT_WORKERS = 32
# How many finished operation ids the watch path remembers (events after the end skip the store).
FINISHED_MEMORY = 10_000


class Reconciler:
    def __init__(self, *, writer: OperationWriter, flows: WriteAhead, registry: Registry, hub: WatchSource,
                 resync_interval: float, pending_grace: float, leader: Leadership | None = None) -> None:
        self._writer = writer
        self._operations = writer.operations
        self._flows = flows
        self._registry = registry
        self._hub = hub
        self._resync_interval = resync_interval
        # A PENDING operation younger than this is still being handled by its request.
        self._pending_grace = timedelta(seconds=pending_grace)
        self._quiet_period = timedelta(seconds=resync_interval)
        self._leader = leader
        self._tasks: list[asyncio.Task[None]] = []
        self._finished: OrderedDict[str, None] = OrderedDict()
        self._events: WorkQueue[tuple[ResourceKind, str, str, str], WatchEvent] = WorkQueue(
            self._handle_queued, workers=EVENT_WORKERS, name="reconciler-events")

    def _remember_finished(self, operation_id: str) -> None:
        self._finished[operation_id] = None
        if len(self._finished) > FINISHED_MEMORY:
            self._finished.popitem(last=False)

    @property
    def active(self) -> bool:
        return self._leader is None or self._leader.is_leader

    async def start(self) -> None:
        if self._tasks:
            return
        self._events.start()
        self._tasks = [asyncio.create_task(self._watch_loop(kind), name=f"reconciler-watch-{kind.plural}")
                       for kind in self._registry.followed_kinds()]
        self._tasks.append(asyncio.create_task(self._resync_loop(), name="reconciler-resync"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        await cancel_all(tasks)
        await self._events.stop()

    # ------------------------------------------------------------ loops

    async def _watch_loop(self, kind: ResourceKind) -> None:
        while True:
            try:
                async with self._hub.subscribe(kind) as events:
                    async for event in events:
                        if self.active:
                            # Keyed by object (uid included: a new object of the same name is
                            # another key, so the old one's deletion is not collapsed away).
                            meta = metadata(event.object)
                            self._events.put((kind, str(meta.get("namespace", "")), str(meta.get("name", "")),
                                              str(meta.get("uid", ""))), event)
            except ApiError as exc:
                log.warning("reconciler watch of %s interrupted: %s", kind.plural, exc.reason)
            await asyncio.sleep(WATCH_RETRY_SECONDS)

    async def _handle_queued(self, key: tuple[ResourceKind, str, str, str], event: WatchEvent) -> None:
        await self._guarded(self.handle_event(key[0], event))

    async def _resync_loop(self) -> None:
        while True:
            if self.active:
                await self._guarded(self.resync_once())
            await asyncio.sleep(self._resync_interval)

    @staticmethod
    async def _guarded(step: Any) -> None:
        try:
            await step
        except ApiError as exc:
            log.info("reconcile step deferred: %s/%s", exc.code, exc.reason)
        except Exception:
            log.exception("reconcile step failed")

    # ------------------------------------------------------------ events

    async def handle_event(self, kind: ResourceKind, event: WatchEvent) -> None:
        obj = event.object
        meta = metadata(obj)
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        operation_id = str((labels or {}).get(LABEL_OPERATION_ID, ""))
        gone = event.type == "DELETED"
        if operation_id and operation_id not in self._finished:
            current = None if gone else obj

            def follow(op: Operation) -> Any:
                cap = self._registry.creates.get(op.type)
                return cap.follow(current)(op) if cap is not None and cap.kind == kind else None

            try:
                # One read under the writer's lock decides; a finished operation is
                # remembered so the resource's later events cost no database round trip.
                op = await self._writer.update(operation_id, follow)
            except ApiError as exc:
                if exc.code is not Code.NOT_FOUND:
                    raise
            else:
                if op.done:
                    self._remember_finished(op.id)
        if gone or meta.get("deletionTimestamp"):
            for delete_type in self._delete_types(kind):
                for delete_op in await self._open_deletes(delete_type, namespace, name):
                    await self._writer.update(delete_op.id, follow_resource(kind, None if gone else obj,
                                                                            deleting=True))

    def _delete_types(self, kind: ResourceKind) -> list[OperationType]:
        return [t for t, cap in self._registry.deletes.items() if cap.kind == kind]

    async def _open_deletes(self, op_type: OperationType, namespace: str, name: str) -> list[Operation]:
        flt = OperationFilter(namespace=namespace, type=op_type, target_name=name)
        page = await self._operations.list_page(flt, 50, "")
        return [op for op in page.items if not op.done]

    # ------------------------------------------------------------ resync

    async def resync_once(self) -> None:
        for op in await self._operations.unfinished():
            await self._guarded(self.reconcile(op))

    async def reconcile(self, op: Operation) -> None:
        pending = op.state is OperationState.PENDING
        age = utcnow() - (op.create_time if pending else op.update_time)
        # Fresh PENDING ones belong to their request; recently updated RUNNING ones to the
        # watch (re-reading them could apply an older object over a newer event).
        if age < (self._pending_grace if pending else self._quiet_period):
            return
        sweep = self._registry.sweeps.get(op.type)
        if sweep is not None:
            await sweep(op)
            return
        creates = self._registry.creates.get(op.type)
        if creates is not None:
            if pending and (op.resource is None or not op.resource.uid):
                await self._flows.replay(creates, op)
            else:
                await self._flows.refresh(creates, op)
            return
        deletes = self._registry.deletes.get(op.type)
        if deletes is not None:
            if pending:
                await self._flows.remove(deletes.kind, op)
            else:
                await self._flows.follow_deletion(deletes.kind, op)
