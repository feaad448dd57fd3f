"""Exports: ExportDisk and ExportDiskSnapshot stream a volume's bytes.

Checks: the request (names, ttl, range), the caps on concurrent exports (per caller and
global: RESOURCE_EXHAUSTED with a retry hint), the target (it exists; a disk is not used
by a running VM, a snapshot is Ready). Write-ahead: the EXPORT_* operation is committed
(its id is in the call's audit event) before the DataExport is written. Resource: a
DataExport (ttl, ``publish: false``) named after the operation. Status: the operation is
RUNNING while the DataExport gets Ready (an expired one is re-created; a refusal such as
VirtualDiskInUse fails the call) and while the bytes flow, with ``transfer`` updated as
they do. Result: the stream (``ExportStart``, data and holes, ``ExportEnd``) and the
operation's final ``transfer``: bytes, duration, digests and outcome (completed,
cancelled by the caller, failed). The DataExport is deleted however the stream ends.

A crash leaves the operation unfinished with no stream behind it: the reconciler's
``sweep`` fails it and deletes its DataExport once it has not moved for a while.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import contextlib
import hashlib
import logging
import time
import uuid
from collections import OrderedDict
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass, replace
from typing import Any

from service.cluster.consistency import export_blocker
from service.cluster.kinds import DATA_EXPORT, VIRTUAL_DISK, VIRTUAL_DISK_SNAPSHOT
from service.cluster.translate import conditions_from_resource, data_export_manifest, metadata, phase, status
from service.core import contract
from service.core import validation as v
from service.core.capabilities.disk_snapshots import attached_vms
from service.core.capabilities.registry import Call, Deps, Registry
from service.core.contract import Method
from service.core.domain import (
    ExportData,
    ExportEnd,
    ExportHole,
    ExportItem,
    ExportStart,
    ExportTransfer,
    Operation,
    OperationError,
    OperationState,
    OperationType,
    ResourceRef,
    TransferOutcome,
    VolumeMode,
    utcnow,
)
from service.core.errors import (
    ApiError,
    Code,
    FieldViolation,
    PreconditionViolation,
    failed_precondition,
    unavailable,
)
from service.core.export_bytes import ByteSpan, content_etag, resolve_span, split_holes
from service.core.export_settings import ExportSettings
from service.core.idempotency import request_document, request_hash
from service.core.op_updates import Change, Mutation
from service.core.ports import BlockEndpoint, BlockReader, ResourceKind
from service.core.requests import ExportRequest
from service.core.slots import CallerSlots

log = logging.getLogger(__name__)

MIN_TTL_SECONDS = 1.0
MAX_TTL_SECONDS = 24 * 3600.0
ETAG_MAX = 256
MAX_PIECE = 4 << 20
MAX_HOLE = 1 << 30     # the longest hole one message announces


@dataclass(frozen=True)
class _Target:
    method: Method[ExportRequest, ExportItem]
    op_type: OperationType
    kind: ResourceKind


DISK = _Target(contract.EXPORT_DISK, OperationType.EXPORT_DISK, VIRTUAL_DISK)
SNAPSHOT = _Target(contract.EXPORT_DISK_SNAPSHOT, OperationType.EXPORT_DISK_SNAPSHOT, VIRTUAL_DISK_SNAPSHOT)


def check(req: ExportRequest) -> None:
    """Every field violation at once (INVALID_ARGUMENT)."""
    violations = v.namespace(req.namespace) + v.dns1123_subdomain("name", req.name)
    if req.ttl_seconds is not None and not MIN_TTL_SECONDS <= req.ttl_seconds <= MAX_TTL_SECONDS:
        violations.append(FieldViolation("ttl", f"must be between {MIN_TTL_SECONDS:g}s and {MAX_TTL_SECONDS:g}s"))
    if req.offset < 0:
        violations.append(FieldViolation("range.offset", "must not be negative"))
    if req.length is not None and req.length <= 0:
        violations.append(FieldViolation("range.length", "must be positive when set"))
    if req.suffix_length is not None and (req.suffix_length <= 0 or req.offset or req.length is not None):
        violations.append(FieldViolation("range", "a suffix range is a positive length alone"))
    if len(req.if_etag) > ETAG_MAX or not req.if_etag.isprintable():
        violations.append(FieldViolation("if_etag", f"must be printable and at most {ETAG_MAX} characters"))
    v.raise_if_any(violations)


# Upstream failures an export picks up from where it stopped.
_RESUMABLE = frozenset({"EXPORT_INTERRUPTED", "EXPORT_GONE", "EXPORTER_UNAVAILABLE"})


def _transfer(mutate_transfer: Callable[[ExportTransfer], ExportTransfer], *, state: OperationState | None = None,
              phase_name: str = "", reason: str = "Progress", message: str = "",
              error: OperationError | None = None) -> Mutation:
    def mutate(op: Operation) -> Change | None:
        op.transfer = mutate_transfer(op.transfer or ExportTransfer())
        if state is not None:
            op.state = state
        if phase_name:
            op.phase = phase_name
        if error is not None:
            op.error = error
        return Change(reason, message)

    return mutate


def _ready(obj: dict[str, Any]) -> tuple[str, str, str]:
    """(status, reason, message) of the DataExport's Ready condition."""
    ready = next((c for c in conditions_from_resource(obj) if c.type == "Ready"), None)
    return (ready.status, ready.reason, ready.message) if ready else ("Unknown", "", "")


def _endpoint(obj: dict[str, Any]) -> BlockEndpoint:
    st = status(obj)
    ca = st.get("ca")
    try:
        ca_pem = base64.b64decode(str(ca), validate=True) if ca else None
    except (binascii.Error, ValueError):
        raise unavailable("the DataExport published an unreadable CA", reason="EXPORT_CA_INVALID") from None
    return BlockEndpoint(url=f"{str(st.get('url', '')).rstrip('/')}/api/v1/block", ca_pem=ca_pem)


class Exports:
    def __init__(self, deps: Deps, blocks: BlockReader, settings: ExportSettings) -> None:
        self._deps = deps
        self._blocks = blocks
        self.settings = settings
        self._slots = CallerSlots(total=settings.max_concurrent, per_caller=settings.max_per_caller,
                                  what="exports", reason="TOO_MANY_EXPORTS",
                                  retry_after_seconds=settings.retry_after_seconds)
        self._digests: OrderedDict[str, str] = OrderedDict()
        self._live: set[str] = set()            # operation ids streaming in this replica
        self._cleanups: set[asyncio.Task[None]] = set()

    # ------------------------------------------------------------ the call

    async def open(self, call: Call, req: ExportRequest, target: _Target) -> AsyncIterator[ExportItem]:
        """Everything that can refuse the call happens here, while it is audited: the
        checks, the caps, the preconditions, the DataExport getting Ready."""
        check(req)
        subject = call.ctx.caller.subject
        self._slots.take(subject)
        try:
            source = await self._precondition(target, req)
            call.audit.details = {"range": req.ranged, "expand_holes": req.expand_holes}
            op = await self._record(call, req, target, source)
        except BaseException:
            self._slots.give_back(subject)
            raise
        # From here the stream owns the slot and the DataExport: finish() gives both back.
        stream = _ExportStream(self, op, req, target, subject, source)
        try:
            await stream.prepare()
        except BaseException as exc:
            await stream.finish(exc)
            raise
        return stream

    async def _precondition(self, target: _Target, req: ExportRequest) -> dict[str, Any]:
        reads = self._deps.reads
        obj = await reads.require(target.kind, req.namespace, req.name, "name")
        if target.kind is VIRTUAL_DISK:
            user = export_blocker(obj, await attached_vms(reads, obj))
            if user is not None:
                raise failed_precondition("DISK_IN_USE", (
                    f"VirtualDisk {req.name!r} is in use by the running virtual machine {user!r}: "
                    "stop the virtual machine (or export a snapshot of the disk) and retry"),
                    [PreconditionViolation("VM_RUNNING", f"virtualmachines/{user}",
                                           f"virtual machine {user!r} is running with this disk attached")])
        elif phase(obj) != "Ready":
            raise failed_precondition("SNAPSHOT_NOT_READY", (
                f"VirtualDiskSnapshot {req.name!r} is {phase(obj) or 'not ready'}: only a Ready snapshot "
                "can be exported"), [PreconditionViolation("NOT_READY", f"virtualdisksnapshots/{req.name}",
                                                           f"phase {phase(obj) or 'unknown'}")])
        return obj

    async def _record(self, call: Call, req: ExportRequest, target: _Target,
                      source: dict[str, Any]) -> Operation:
        caller = call.ctx.caller
        meta = metadata(source)
        op = Operation(
            id=str(uuid.uuid4()), type=target.op_type, namespace=req.namespace,
            target=ResourceRef(target.kind.api_version, target.kind.kind, req.name, req.namespace,
                               str(meta.get("uid", ""))),
            actor=caller.subject, request_hash=request_hash(req), request=request_document(req))
        stored = await self._deps.operations.create(op, audit=call.audit.accepted(op))
        call.audit.written()
        return stored

    # ------------------------------------------------------------ what the stream uses

    def etag_of(self, target: _Target, source: dict[str, Any]) -> str:
        meta = metadata(source)
        version = "" if target.kind is VIRTUAL_DISK_SNAPSHOT else str(meta.get("resourceVersion", ""))
        return content_etag(target.kind.kind, str(meta.get("uid", "")), version)

    async def known_digest(self, etag: str) -> str:
        """The whole-image digest of this content, if an earlier complete pass (here, or on
        another replica before a restart: the operations table) computed it."""
        digest = self._digests.get(etag, "")
        if not digest:
            try:
                digest = await self._deps.operations.export_digest(etag)
            except ApiError:   # an optimisation only: without it the stream hashes
                digest = ""
            if digest:
                self.remember_digest(etag, digest)
        return digest

    def remember_digest(self, etag: str, digest: str) -> None:
        self._digests[etag] = digest
        self._digests.move_to_end(etag)
        while len(self._digests) > self.settings.digest_memory:
            self._digests.popitem(last=False)

    @property
    def blocks(self) -> BlockReader:
        return self._blocks

    @property
    def deps(self) -> Deps:
        return self._deps

    def went_live(self, operation_id: str) -> None:
        self._live.add(operation_id)

    def ended(self, operation_id: str, subject: str) -> None:
        self._live.discard(operation_id)
        self._slots.give_back(subject)

    def in_background(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(work)
        self._cleanups.add(task)
        task.add_done_callback(self._cleanups.discard)
        return task

    async def drain(self) -> None:
        """Let every started cleanup finish (the gateway stopping)."""
        if self._cleanups:
            await asyncio.gather(*list(self._cleanups), return_exceptions=True)

    # ------------------------------------------------------------ after a crash

    async def sweep(self, op: Operation) -> None:
        """An unfinished export with no stream behind it (the gateway stopped midway):
        FAILED, and its DataExport deleted."""
        if op.id in self._live:
            return
        idle = (utcnow() - op.update_time).total_seconds()
        if idle < self.settings.stale_after:
            return
        error = OperationError(Code.ABORTED.value, "EXPORT_STREAM_LOST",
                               "the export stream ended without the gateway recording its end (a restart?)")
        await self._deps.writer.update(op.id, _transfer(
            lambda t: replace(t, outcome=TransferOutcome.FAILED), state=OperationState.FAILED,
            phase_name="Failed", reason=error.reason, message=error.message, error=error))
        if op.resource is not None and op.resource.name:
            await self.delete_export(op.namespace, op.resource.name)

    async def delete_export(self, namespace: str, name: str) -> None:
        try:
            await self._deps.cluster.delete(DATA_EXPORT, namespace, name)
        except ApiError as exc:
            if exc.code is not Code.NOT_FOUND:
                # Not retried: an unread DataExport expires after its ttl by itself.
                log.warning("could not delete DataExport %s/%s: %s", namespace, name, exc.reason)


class _ExportStream:
    """One export in flight: ``prepare`` gets the DataExport Ready; iterating yields the
    items; ``aclose`` (or the end) records the outcome and deletes the DataExport, also
    when iteration never started."""

    def __init__(self, exports: Exports, op: Operation, req: ExportRequest, target: _Target, subject: str,
                 source: dict[str, Any]) -> None:
        self._exports = exports
        self._settings = exports.settings
        self._deps = exports.deps
        self._op = op
        self._req = req
        self._target = target
        self._subject = subject
        self._source = source
        self._export_name = ""
        self._attempts = 0
        self._endpoint: BlockEndpoint | None = None
        self._start: ExportStart | None = None
        self._span = ByteSpan(0, 0, False)
        self._iterator: AsyncGenerator[ExportItem, None] | None = None
        self._sent = 0
        self._holes = 0
        self._began = time.monotonic()
        self._finished = False
        exports.went_live(op.id)

    # ------------------------------------------------------------ getting ready

    async def prepare(self) -> None:
        self._endpoint = await self._ready_export()
        size = await self._exports.blocks.size(self._endpoint)
        etag = self._exports.etag_of(self._target, self._source)
        self._span = resolve_span(self._req, size, etag)
        known = await self._exports.known_digest(etag)
        self._start = ExportStart(operation_id=self._op.id, size=size, offset=self._span.offset,
                                  length=self._span.length, etag=etag, volume_mode=VolumeMode.BLOCK,
                                  sha256=known, ranged=self._span.ranged)
        span = self._span
        await self._deps.writer.update(self._op.id, _transfer(
            lambda t: replace(t, size=size, offset=span.offset, length=span.length, etag=etag, sha256=known),
            phase_name="Transferring", reason="Transferring",
            message=f"sending bytes {span.offset}-{span.end} of {size}"))

    async def _ready_export(self) -> BlockEndpoint:
        """A new DataExport, Ready; one that expires first is replaced (a bounded number of
        times). Any earlier one of this stream is deleted first."""
        ttl = self._req.ttl_seconds or self._settings.default_ttl_seconds
        deadline = time.monotonic() + self._settings.ready_timeout
        for _ in range(self._settings.recreate_attempts):
            if self._export_name:
                await self._exports.delete_export(self._op.namespace, self._export_name)
            self._attempts += 1
            ready = await self._wait_ready(await self._create(ttl, self._attempts), deadline)
            if ready is not None:
                return _endpoint(ready)
            log.info("DataExport %s expired before it was ready; re-creating it", self._export_name)
        raise ApiError(Code.ABORTED, "EXPORT_EXPIRED", (
            f"the DataExport expired {self._settings.recreate_attempts} times before it was ready; "
            "retry with a longer ttl"))

    async def _create(self, ttl: float, attempt: int) -> dict[str, Any]:
        self._export_name = f"gw-export-{self._op.id}" + (f"-{attempt}" if attempt > 1 else "")
        manifest = data_export_manifest(
            namespace=self._op.namespace, name=self._export_name, target_kind=self._target.kind.kind,
            target_name=self._req.name, ttl_seconds=ttl, operation_id=self._op.id, actor=self._op.actor)
        # A cluster without the export module answers FAILED_PRECONDITION MODULE_NOT_ENABLED
        # (service.cluster.errors): the type is not served.
        obj = await self._deps.cluster.create(DATA_EXPORT, self._op.namespace, manifest)
        ref = ResourceRef(DATA_EXPORT.api_version, DATA_EXPORT.kind, self._export_name, self._op.namespace,
                          str(metadata(obj).get("uid", "")))

        def running(op: Operation) -> Change | None:
            op.resource = ref
            op.state = OperationState.RUNNING
            if op.phase != "Transferring":   # a replacement midway does not stop the transfer
                op.phase = "WaitingForExport"
            return Change("DataExportCreated", f"DataExport {self._export_name} created; waiting for it to be ready")

        await self._deps.writer.update(self._op.id, running)
        return obj

    async def _wait_ready(self, obj: dict[str, Any], deadline: float) -> dict[str, Any] | None:
        """The Ready DataExport, or None when it expired first. Any other refusal the
        DataExport reports (a disk that became in use) fails the call, naming it."""
        delay = 0.02
        reason, message = "", ""
        while True:
            state, reason, message = _ready(obj)
            if state == "True" and status(obj).get("url"):
                return obj
            if reason == "Expired":
                return None
            if reason == "VirtualDiskInUse":
                raise failed_precondition("DISK_IN_USE", message or f"VirtualDisk {self._req.name!r} is in use")
            if reason == "TargetNotFound":
                raise ApiError(Code.NOT_FOUND, "RESOURCE_NOT_FOUND", message or "the export's target is gone")
            if time.monotonic() >= deadline:
                raise ApiError(Code.DEADLINE_EXCEEDED, "EXPORT_NOT_READY", (
                    f"the DataExport was not ready after {self._settings.ready_timeout:g}s"
                    + (f" ({reason}: {message})" if reason else "")))
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
            try:
                obj = await self._deps.cluster.get(DATA_EXPORT, self._op.namespace, self._export_name)
            except ApiError as exc:
                if exc.code is Code.NOT_FOUND:   # deleted by its TTL controller: expired
                    return None
                raise

    # ------------------------------------------------------------ streaming

    def __aiter__(self) -> _ExportStream:
        return self

    async def __anext__(self) -> ExportItem:
        if self._iterator is None:
            self._iterator = self._items()
        try:
            return await anext(self._iterator)
        except StopAsyncIteration:   # the end: finish() already ran inside _items
            raise
        except BaseException as exc:
            await self.finish(exc)
            raise

    async def _items(self) -> AsyncGenerator[ExportItem, None]:
        assert self._start is not None and self._endpoint is not None
        start, span, req = self._start, self._span, self._req
        yield start
        covers_all = span.offset == 0 and span.length == start.size
        whole = hashlib.sha256() if not start.sha256 and (covers_all or req.whole_image_sha256) else None
        # Covering everything, the range's digest is the whole volume's: hash once, or not
        # at all when an earlier complete pass of the same content (same entity tag) has.
        ranged: Any = whole if covers_all else hashlib.sha256()
        read_from, read_to = (0, start.size) if whole is not None else (span.offset, span.end)
        piece_size = min(max(self._settings.piece, 4096), MAX_PIECE)
        next_save = time.monotonic() + self._settings.progress_interval
        position = read_from
        # SHA-256 is about half the gateway's CPU per byte. It runs inline: a worker thread
        # measured no faster on two cores and cost 10% more CPU (bench/README.md).
        hole: ExportHole | None = None      # a zero run not sent yet
        async with contextlib.aclosing(self._upstream(read_from, read_to, piece_size)) as pieces:
            async for piece in pieces:
                if whole is not None:
                    whole.update(piece)
                lo, hi = max(position, span.offset), min(position + len(piece), span.end)
                if lo < hi:
                    whole_piece = (lo, hi) == (position, position + len(piece))
                    part = piece if whole_piece else piece[lo - position:hi - position]
                    if ranged is not whole and ranged is not None:
                        ranged.update(part)
                    if req.expand_holes:
                        self._sent += len(part)
                        yield ExportData(lo, part)
                    else:
                        for item in split_holes(part, lo, self._settings.hole_block):
                            if isinstance(item, ExportHole):
                                # Adjacent holes become one message (a zero run spans pieces),
                                # up to MAX_HOLE so the caller still sees progress.
                                if hole is not None and hole.length + item.length <= MAX_HOLE:
                                    hole = ExportHole(hole.offset, hole.length + item.length)
                                    continue
                                if hole is not None:
                                    yield self._count_hole(hole)
                                hole = item
                                continue
                            if hole is not None:
                                yield self._count_hole(hole)
                                hole = None
                            self._sent += len(item.data)
                            yield item
                position += len(piece)
                if time.monotonic() >= next_save:
                    next_save = time.monotonic() + self._settings.progress_interval
                    await self._save_progress()
        if hole is not None:
            yield self._count_hole(hole)
        digest = start.sha256 or (whole.hexdigest() if whole is not None else "")
        if whole is not None:
            self._exports.remember_digest(start.etag, digest)
        range_digest = ranged.hexdigest() if ranged is not None else digest
        end = ExportEnd(size=start.size, offset=span.offset, length=span.length, sha256=digest,
                        range_sha256=range_digest, hole_bytes=self._holes)
        await self.finish(None, end)
        yield end

    def _count_hole(self, hole: ExportHole) -> ExportHole:
        self._holes += hole.length
        self._sent += hole.length
        return hole

    async def _upstream(self, start: int, end: int, piece: int) -> AsyncGenerator[bytes, None]:
        """Bytes [start, end) in pieces. A connection that breaks, or an export that expires,
        midway is picked up again where it stopped (a new DataExport if the old one is gone):
        the caller sees one unbroken stream. Giving up takes ``upstream_retries`` failures in
        a row with no byte in between."""
        assert self._endpoint is not None
        position, failures = start, 0
        while position < end:
            try:
                async with self._exports.blocks.read(self._endpoint, position, end - position, piece) as pieces:
                    async for data in pieces:
                        position += len(data)
                        failures = 0
                        yield data
            except ApiError as exc:
                failures += 1
                if exc.reason not in _RESUMABLE or failures > self._settings.upstream_retries:
                    raise
                log.info("export %s: upstream %s at byte %d; resuming (%d)", self._op.id, exc.reason, position,
                         failures)
                if exc.reason == "EXPORT_GONE":
                    self._endpoint = await self._ready_export()
                else:
                    await asyncio.sleep(min(0.1 * 2 ** failures, 2.0))

    async def _save_progress(self) -> None:
        sent, holes, elapsed = self._sent, self._holes, time.monotonic() - self._began
        try:
            await self._deps.writer.update(self._op.id, _transfer(
                lambda t: replace(t, bytes_sent=sent, hole_bytes=holes, duration_seconds=elapsed)))
        except ApiError as exc:   # progress is best effort; the end is recorded for sure
            log.info("export progress not saved: %s", exc.reason)

    # ------------------------------------------------------------ the end

    async def aclose(self) -> None:
        if self._iterator is not None:
            with contextlib.suppress(Exception):
                await self._iterator.aclose()
        await self.finish(asyncio.CancelledError())

    async def finish(self, exc: BaseException | None, end: ExportEnd | None = None) -> None:
        """Record how the stream ended and delete the DataExport; once. Runs as its own
        task, shielded: a caller that goes away must not cut the cleanup short."""
        if self._finished:
            return
        self._finished = True
        await asyncio.shield(self._exports.in_background(self._finish(exc, end)))

    async def _finish(self, exc: BaseException | None, end: ExportEnd | None) -> None:
        sent, holes, elapsed = self._sent, self._holes, time.monotonic() - self._began
        if end is not None:
            outcome, state, phase_name = TransferOutcome.COMPLETED, OperationState.SUCCEEDED, "Completed"
            error = None
            message = f"{sent} bytes in {elapsed:.2f}s"
        elif isinstance(exc, ApiError):
            outcome, state, phase_name = TransferOutcome.FAILED, OperationState.FAILED, "Failed"
            error = OperationError(exc.code.value, exc.reason, exc.message)
            message = exc.message
        elif exc is None or isinstance(exc, asyncio.CancelledError | GeneratorExit | ConnectionError):
            outcome, state, phase_name = TransferOutcome.CANCELLED, OperationState.CANCELLED, "Cancelled"
            error = OperationError("CANCELLED", "CLIENT_CANCELLED", f"the caller went away after {sent} bytes")
            message = error.message
        else:
            outcome, state, phase_name = TransferOutcome.FAILED, OperationState.FAILED, "Failed"
            error = OperationError(Code.INTERNAL.value, "INTERNAL", "the export failed unexpectedly")
            message = error.message
            log.error("export %s failed unexpectedly", self._op.id, exc_info=exc)

        def final(t: ExportTransfer) -> ExportTransfer:
            done = replace(t, bytes_sent=sent, hole_bytes=holes, duration_seconds=elapsed, outcome=outcome)
            return replace(done, sha256=end.sha256, range_sha256=end.range_sha256) if end is not None else done

        try:
            await self._deps.writer.update(self._op.id, _transfer(
                final, state=state, phase_name=phase_name, reason=error.reason if error else "Completed",
                message=message, error=error))
        except ApiError as failure:
            log.warning("export %s outcome not recorded: %s (the reconciler sweeps it)", self._op.id, failure.reason)
        finally:
            if self._export_name:
                await self._exports.delete_export(self._op.namespace, self._export_name)
            self._exports.ended(self._op.id, self._subject)


def register(registry: Registry, deps: Deps) -> None:
    if deps.blocks is None:
        return   # no block reader composed: the methods answer UNIMPLEMENTED
    exports = Exports(deps, deps.blocks, deps.export_settings)
    for target in (DISK, SNAPSHOT):
        registry.on_stream(target.method, _opener(exports, target))
        registry.sweeps[target.op_type] = exports.sweep
    registry.closers.append(exports.drain)


def _opener(exports: Exports, target: _Target) -> Callable[[Call, ExportRequest], Awaitable[AsyncIterator[ExportItem]]]:
    async def open_stream(call: Call, req: ExportRequest) -> AsyncIterator[ExportItem]:
        return await exports.open(call, req, target)

    return open_stream
