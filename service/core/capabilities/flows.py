"""The write-ahead flows every capability runs through (the Cosmic Python unit of work:
one transaction boundary, the operation row, before anything reaches the cluster).

Create: check the request; a replayed ``request_id`` returns its operation; check the
preconditions; commit the PENDING operation (with the full request); write the resource;
follow it. When the cluster is unavailable (during the checks or the write) the call
fails UNAVAILABLE with a retry hint *and* the operation id: the request is recorded, the
reconciler finishes it once the cluster answers (``replay``), and a retry with the same
request_id returns that operation. Caller errors from the cluster (invalid, conflict,
forbidden) mark the operation FAILED and are raised as they are.

Delete: the same, with the "still in use" check as its precondition.
"""

from __future__ import annotations

import dataclasses
import secrets
import string
import typing
import uuid
from dataclasses import replace
from enum import Enum
from typing import Any, TypeVar

from service.cluster.kinds import LABEL_OPERATION_ID
from service.cluster.translate import metadata
from service.core import validation as v
from service.core.audit import AuditedCall
from service.core.capabilities.shape import Creates, Deletes, Plan, Reads, WaitsOnSource, labels_of
from service.core.domain import Caller, Operation, OperationError, OperationState, ResourceRef
from service.core.errors import ApiError, Code, failed_precondition, not_found
from service.core.idempotency import create_once, find_replay, request_document, request_hash
from service.core.op_updates import Change, Mutation, OperationWriter
from service.core.ports import ResourceKind
from service.core.progress import add_warning, fail, follow_resource

Req = TypeVar("Req")

SUFFIX_ALPHABET = string.ascii_lowercase + string.digits
SUFFIX_LENGTH = 5
# Failures the cluster may recover from: the operation stays PENDING and is retried.
RETRYABLE = frozenset({Code.UNAVAILABLE, Code.DEADLINE_EXCEEDED, Code.INTERNAL, Code.RESOURCE_EXHAUSTED})
RETRY_WARNING = "the cluster was unavailable when this operation was requested; the gateway retries in the background"


def generated_name(prefix: str) -> str:
    return prefix + "".join(secrets.choice(SUFFIX_ALPHABET) for _ in range(SUFFIX_LENGTH))


def operation_error(exc: ApiError) -> OperationError:
    return OperationError(exc.code.value, exc.reason, exc.message)


def request_from_document(cls: type[Req], doc: dict[str, Any]) -> Req:
    """The request a stored operation holds (``request_document``), as its dataclass again
    (nested dataclasses, tuples of them and enums included)."""
    value: Req = _coerce(cls, doc)
    return value


def _coerce(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    if isinstance(hint, type) and dataclasses.is_dataclass(hint) and isinstance(value, dict):
        hints = typing.get_type_hints(hint)
        fields = {f.name for f in dataclasses.fields(hint)}
        return hint(**{k: _coerce(hints[k], v) for k, v in value.items() if k in fields})
    if isinstance(hint, type) and issubclass(hint, Enum):
        return hint(value)
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin is tuple and args and isinstance(value, list):
        return tuple(_coerce(args[0], item) for item in value)
    if args and origin is not dict and origin is not list:  # X | None
        concrete = [a for a in args if a is not type(None)]
        if len(concrete) == 1:
            return _coerce(concrete[0], value)
    return value


def with_operation(exc: ApiError, op: Operation, *, retried: bool = True) -> ApiError:
    """The error, telling the caller which operation holds the request."""
    if not retried:
        return replace(exc, metadata={**exc.metadata, "operation_id": op.id})
    return replace(exc, metadata={**exc.metadata, "operation_id": op.id},
                   message=f"{exc.message}; the request is recorded as operation {op.id} and will be retried")


def _follow_created(cap: Creates[Any], obj: dict[str, Any]) -> Mutation:
    """The create call's answer: applied only while the operation is still PENDING, since
    the watch may already have delivered a newer version of the object."""
    follow = cap.follow(obj)

    def mutate(op: Operation) -> Change | None:
        return follow(op) if op.state is OperationState.PENDING else None

    return mutate


class WriteAhead:
    def __init__(self, *, writer: OperationWriter, reads: Reads) -> None:
        self._writer = writer
        self._operations = writer.operations
        self._reads = reads
        self._cluster = reads.cluster

    # ------------------------------------------------------------ create

    async def create(self, cap: Creates[Req], caller: Caller, req: Req,
                     audited: AuditedCall | None = None) -> Operation:
        cap.check(req)
        request_id = str(getattr(req, "request_id", ""))
        digest = request_hash(req)
        replay = await find_replay(self._operations, caller.subject, request_id, digest, cap.op_type)
        if replay is not None:
            return await self._replayed(cap, replay)
        name = cap.name_for(req)
        try:
            plan = await cap.plan(self._reads, req, name)
        except ApiError as exc:
            if exc.code not in RETRYABLE:
                raise
            # Accepted but not yet checked: record it so nothing is lost; the reconciler
            # runs the checks and the write once the cluster answers.
            deferred = Plan(name=name, target=cap.target_of(req), warnings=[RETRY_WARNING])
            op, _ = await self._record(cap, caller, req, digest, deferred, audited)
            raise with_operation(exc, op) from None
        op, fresh = await self._record(cap, caller, req, digest, plan, audited)
        if not fresh:
            return op  # a concurrent replay of the same key won the race
        try:
            return await self.write(cap, op)
        except ApiError as exc:
            raise await self.recorded_failure(exc, op) from None

    async def _replayed(self, cap: Creates[Any], op: Operation) -> Operation:
        """A replayed request's operation, honest about its resource: a SUCCEEDED create
        whose resource is gone (deleted since, or lost with the cluster) says so in a
        warning of the answer (the stored operation is final and stays as it was)."""
        if op.state is not OperationState.SUCCEEDED or op.resource is None or not op.resource.name:
            return op
        try:
            current = await self._reads.fresh(cap.kind, op.namespace, op.resource.name)
        except ApiError as exc:
            if exc.code not in RETRYABLE:
                raise
            return replace(op, warnings=[*op.warnings, f"{cap.kind.kind} {op.resource.name!r} could not be "
                                         "checked now (the cluster is unavailable); it may no longer exist"])
        uid = str(metadata(current).get("uid", "")) if current is not None else ""
        if current is not None and (not op.resource.uid or uid == op.resource.uid):
            return op
        gone = "no longer exists" if current is None else "was replaced by another object of that name"
        return replace(op, warnings=[*op.warnings, f"{cap.kind.kind} {op.resource.name!r} created by this "
                                     f"operation {gone}: this is the record of the original request, "
                                     "not a new resource"])

    async def _record(self, cap: Creates[Req], caller: Caller, req: Req, digest: str,
                      plan: Plan, audited: AuditedCall | None) -> tuple[Operation, bool]:
        """The write-ahead row, with the call's audit event: committed before anything is
        written to the cluster."""
        request_id = str(getattr(req, "request_id", ""))
        op = Operation(
            id=str(uuid.uuid4()), type=cap.op_type, namespace=plan.target.namespace,
            target=plan.target, actor=caller.subject, request_hash=digest,
            resource=ResourceRef(cap.kind.api_version, cap.kind.kind, plan.name, plan.target.namespace),
            warnings=list(plan.warnings), results=list(plan.results), request_id=request_id or None,
            request={**request_document(req), "name": plan.name, **plan.resolved},
        )
        stored, fresh = await create_once(self._operations, op, audited)
        if fresh:
            self._writer.remember(stored)
        return stored, fresh

    async def write(self, cap: Creates[Any], op: Operation) -> Operation:
        """Create the resource of a PENDING operation and follow it.

        Idempotent: a resource of that name carrying this operation's label is adopted.
        A caller error marks the operation FAILED and is raised; a retryable one leaves it
        PENDING (the reconciler retries) and is raised."""
        try:
            obj = await self._cluster.create(cap.kind, op.namespace, cap.manifest(op))
        except ApiError as exc:
            if exc.code in RETRYABLE:
                raise
            if exc.code == Code.ALREADY_EXISTS and op.resource is not None:
                adopted = await self._ours(cap.kind, op)
                if adopted is not None:
                    return await self._writer.update(op.id, _follow_created(cap, adopted))
            await self._writer.update(op.id, fail(operation_error(exc)))
            raise
        updated = await self._writer.update(op.id, _follow_created(cap, obj))
        if updated.state is OperationState.CANCELLED:
            # Called off while the write was in flight: take the resource back.
            await self.remove_quietly(cap.kind, op.namespace, str(metadata(obj).get("name", "")))
        return updated

    async def _ours(self, kind: ResourceKind, op: Operation) -> dict[str, Any] | None:
        assert op.resource is not None
        existing = await self._reads.fresh(kind, op.namespace, op.resource.name)
        if existing is not None and labels_of(existing).get(LABEL_OPERATION_ID) == op.id:
            return existing
        return None

    async def recorded_failure(self, exc: ApiError, op: Operation) -> ApiError:
        """The error to raise for a call whose operation is already recorded: it names the
        operation (FAILED for caller errors; still PENDING, and retried, for outages)."""
        if exc.code in RETRYABLE:
            await self._writer.update(op.id, add_warning(RETRY_WARNING))
            return with_operation(exc, op, retried=True)
        return with_operation(exc, op, retried=False)

    async def replay(self, cap: Creates[Any], op: Operation) -> None:
        """The reconciler's second chance for a PENDING operation whose resource was never
        written: run the preconditions again from the stored request, then the write."""
        assert op.resource is not None
        req = request_from_document(cap.request, op.request)
        try:
            plan = await cap.plan(self._reads, req, op.resource.name)
        except ApiError as exc:
            if exc.code in RETRYABLE:
                raise
            # The request that recorded the operation may have written the resource while
            # this replay was checking (a slow request, not a crashed one): the name is then
            # "taken" by our own resource, which is adopted, not failed.
            ours = await self._ours(cap.kind, op) if exc.code is Code.ALREADY_EXISTS else None
            if ours is not None:
                await self._writer.update(op.id, _follow_created(cap, ours))
                return
            await self._writer.update(op.id, _fail_unless_written(operation_error(exc)))
            return
        op = await self._writer.update(op.id, _resolved(plan))
        if op.resource is None or op.resource.uid or op.done:
            return  # the watch got there first
        try:
            # The stored request is immutable; what the checks decided rides along to the manifest.
            await self.write(cap, replace(op, request={**op.request, **plan.resolved}))
        except ApiError as exc:
            if exc.code in RETRYABLE:
                raise
            # A caller error: write() stored it on the operation (FAILED).

    async def refresh(self, cap: Creates[Any], op: Operation) -> None:
        """Re-read a RUNNING operation's resource and apply it (a missed watch event)."""
        assert op.resource is not None
        obj = await self._reads.fresh(cap.kind, op.namespace, op.resource.name)
        if obj is not None and op.resource.uid and metadata(obj).get("uid") != op.resource.uid:
            obj = None  # a new object under the old name: ours is gone
        if obj is not None and isinstance(cap, WaitsOnSource):
            lost = await cap.source_lost(self._reads, op, obj)
            if lost is not None:
                await self._writer.update(op.id, fail(lost))
                return
        await self._writer.update(op.id, cap.follow(obj))

    # ------------------------------------------------------------ delete

    async def delete(self, cap: Deletes, caller: Caller, req: Any, audited: AuditedCall | None = None) -> Operation:
        v.raise_if_any(v.namespace(req.namespace) + v.dns1123_subdomain("name", req.name)
                       + v.request_id(req.request_id))
        digest = request_hash(req)
        request_id = str(getattr(req, "request_id", ""))
        replay = await find_replay(self._operations, caller.subject, request_id, digest, cap.op_type)
        if replay is not None:
            return replay
        current = await self._reads.fresh(cap.kind, req.namespace, req.name)
        if current is None:
            raise not_found(cap.kind.kind, req.name, req.namespace)
        users = await cap.users(self._reads, req.namespace, req.name)
        if users:
            raise failed_precondition(
                "IN_USE", f"{cap.kind.kind} {req.name!r} is still in use by "
                + ", ".join(u.subject for u in users) + "; delete or finish those first", users)
        ref = ResourceRef(cap.kind.api_version, cap.kind.kind, req.name, req.namespace,
                          str(metadata(current).get("uid", "")))
        op = Operation(
            id=str(uuid.uuid4()), type=cap.op_type, namespace=req.namespace, target=ref, actor=caller.subject,
            request_hash=digest, resource=ref, request_id=request_id or None, request=request_document(req),
            phase="Pending",
        )
        op, fresh = await create_once(self._operations, op, audited)
        if not fresh:
            return op
        self._writer.remember(op)
        try:
            return await self.remove(cap.kind, op)
        except ApiError as exc:
            raise await self.recorded_failure(exc, op) from None

    async def remove(self, kind: ResourceKind, op: Operation) -> Operation:
        """Delete the resource of a PENDING/RUNNING delete operation; SUCCEEDED once it is gone."""
        assert op.resource is not None
        try:
            await self._cluster.delete(kind, op.namespace, op.resource.name)
        except ApiError as exc:
            if exc.code in RETRYABLE:
                raise
            if exc.code != Code.NOT_FOUND:
                await self._writer.update(op.id, fail(operation_error(exc)))
                raise
        return await self.follow_deletion(kind, op)

    async def follow_deletion(self, kind: ResourceKind, op: Operation) -> Operation:
        assert op.resource is not None
        obj = await self._reads.fresh(kind, op.namespace, op.resource.name)
        if obj is not None and op.resource.uid and metadata(obj).get("uid") != op.resource.uid:
            obj = None  # a new object under the old name: ours is gone
        return await self._writer.update(op.id, follow_resource(kind, obj, deleting=True))

    async def remove_quietly(self, kind: ResourceKind, namespace: str, name: str) -> None:
        """Delete the object; already gone is fine."""
        try:
            await self._cluster.delete(kind, namespace, name)
        except ApiError as exc:
            if exc.code is not Code.NOT_FOUND:
                raise


def _fail_unless_written(error: OperationError) -> Mutation:
    """FAILED, unless the resource was written meanwhile (then the watch decides)."""
    failed = fail(error)

    def mutate(op: Operation) -> Change | None:
        if op.resource is not None and op.resource.uid:
            return None
        return failed(op)

    return mutate


def _resolved(plan: Plan) -> Mutation:
    """A replayed plan's findings: the target's uid, new warnings and results."""

    def mutate(op: Operation) -> Change | None:
        changed = False
        if plan.target.uid and op.target.uid != plan.target.uid:
            op.target = replace(op.target, uid=plan.target.uid)
            changed = True
        for warning in plan.warnings:
            if warning not in op.warnings:
                op.warnings = [*op.warnings, warning]
                changed = True
        if plan.results and op.results != plan.results:
            op.results = list(plan.results)
            changed = True

        return Change("TargetResolved") if changed else None

    return mutate
