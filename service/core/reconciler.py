"""The operation reconciler (controller-runtime style): level-driven, idempotent.

Two inputs: the watch hub (every change of a kind the gateway writes, matched to its
operation by the operation-id label) and a periodic resync of every unfinished
operation, which is how work survives a crash or an outage: a PENDING operation whose
resource was never written is replayed from its stored request (adopting the resource
if it exists with our label), a RUNNING one is re-read (gone: FAILED, or SUCCEEDED for
a delete). With a ``Leadership`` only the leader acts; events seen while not leading are
skipped and the first resync after taking over catches up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from dataclasses import replace
from datetime import timedelta
from typing import Any

from service.cluster.kinds import LABEL_OPERATION_ID, VIRTUAL_DISK_SNAPSHOT
from service.cluster.translate import metadata
from service.core import disk_snapshot_steps as steps
from service.core.domain import Operation, OperationFilter, OperationState, OperationType, utcnow
from service.core.errors import ApiError, Code
from service.core.op_updates import Change, Mutation, OperationWriter
from service.core.ports import ClusterClient, Leadership, WatchEvent, WatchSource
from service.core.progress import add_warning, fail, follow_resource

log = logging.getLogger(__name__)

WATCH_RETRY_SECONDS = 1.0


# How many finished operation ids the watch path remembers (events after the end skip the store).
FINISHED_MEMORY = 10_000


class Reconciler:
    def __init__(self, *, writer: OperationWriter, cluster: ClusterClient, hub: WatchSource,
                 resync_interval: float, pending_grace: float, leader: Leadership | None = None) -> None:
        self._writer = writer
        self._operations = writer.operations
        self._cluster = cluster
        self._hub = hub
        self._resync_interval = resync_interval
        # A PENDING operation younger than this is still being handled by its request.
        self._pending_grace = timedelta(seconds=pending_grace)
        self._quiet_period = timedelta(seconds=resync_interval)
        self._leader = leader
        self._tasks: list[asyncio.Task[None]] = []
        self._finished: OrderedDict[str, None] = OrderedDict()

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
        self._tasks = [asyncio.create_task(self._watch_loop(), name="reconciler-watch"),
                       asyncio.create_task(self._resync_loop(), name="reconciler-resync")]

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    # ------------------------------------------------------------ loops

    async def _watch_loop(self) -> None:
        while True:
            try:
                async with self._hub.subscribe(VIRTUAL_DISK_SNAPSHOT) as events:
                    async for event in events:
                        if self.active:
                            await self._guarded(self.handle_event(event))
            except ApiError as exc:
                log.warning("reconciler watch interrupted: %s", exc.reason)
            await asyncio.sleep(WATCH_RETRY_SECONDS)

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

    async def handle_event(self, event: WatchEvent) -> None:
        obj = event.object
        meta = metadata(obj)
        namespace, name = str(meta.get("namespace", "")), str(meta.get("name", ""))
        labels = meta.get("labels") if isinstance(meta.get("labels"), dict) else {}
        operation_id = str((labels or {}).get(LABEL_OPERATION_ID, ""))
        gone = event.type == "DELETED"
        if operation_id and operation_id not in self._finished:
            follow = follow_resource(VIRTUAL_DISK_SNAPSHOT, None if gone else obj, deleting=False)
            try:
                # One read under the writer's lock decides; a finished operation is
                # remembered so the snapshot's later events cost no database round trip.
                op = await self._writer.update(
                    operation_id, lambda op: follow(op) if op.type is OperationType.CREATE_DISK_SNAPSHOT else None)
            except ApiError as exc:
                if exc.code is not Code.NOT_FOUND:
                    raise
            else:
                if op.done:
                    self._remember_finished(op.id)
        if gone or meta.get("deletionTimestamp"):
            for delete_op in await self._open_deletes(namespace, name):
                current = None if gone else obj
                await self._writer.update(delete_op.id, follow_resource(VIRTUAL_DISK_SNAPSHOT, current,
                                                                        deleting=True))

    async def _open_deletes(self, namespace: str, name: str) -> list[Operation]:
        flt = OperationFilter(namespace=namespace, type=OperationType.DELETE_DISK_SNAPSHOT, target_name=name)
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
        if op.type is OperationType.CREATE_DISK_SNAPSHOT:
            if pending and (op.resource is None or not op.resource.uid):
                await self._replay_create(op)
            else:
                await self._follow_create(op)
        elif op.type is OperationType.DELETE_DISK_SNAPSHOT:
            if pending:
                await steps.delete_snapshot(self._cluster, self._writer, op)
            else:
                await steps.follow_deletion(self._cluster, self._writer, op)

    async def _follow_create(self, op: Operation) -> None:
        assert op.resource is not None
        try:
            obj: dict[str, Any] | None = await self._cluster.get(VIRTUAL_DISK_SNAPSHOT, op.namespace,
                                                                 op.resource.name)
        except ApiError as exc:
            if exc.code != Code.NOT_FOUND:
                raise
            obj = None
        await self._writer.update(op.id, follow_resource(VIRTUAL_DISK_SNAPSHOT, obj, deleting=False))

    async def _replay_create(self, op: Operation) -> None:
        """Run the request's checks and the create again, from the stored request."""
        try:
            disk = await steps.read_disk(self._cluster, self._hub, op.namespace, op.target.name)
        except ApiError as exc:
            if exc.code in steps.RETRYABLE:
                raise
            await self._writer.update(op.id, fail(steps.operation_error(exc)))
            return
        disk_uid = str(metadata(disk).get("uid", ""))
        if op.target.uid != disk_uid:
            op = await self._writer.update(op.id, _set_target_uid(disk_uid))
        if op.resource is None or op.resource.uid:
            return  # the watch got there first
        warning = await steps.consistency_check(self._cluster, self._hub, disk,
                                                bool(op.request.get("required_consistency", True)))
        if warning:
            op = await self._writer.update(op.id, add_warning(warning))
        try:
            await steps.write_snapshot(self._cluster, self._writer, op)
        except ApiError as exc:
            if exc.code in steps.RETRYABLE:
                raise
            # A caller error: write_snapshot stored it on the operation (FAILED).


def _set_target_uid(uid: str) -> Mutation:
    def mutate(op: Operation) -> Change | None:
        op.target = replace(op.target, uid=uid)
        return Change("TargetResolved")

    return mutate
