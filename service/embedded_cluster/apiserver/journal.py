"""The store's write-ahead journal: every change is one checksummed line appended with a
single write() before the change is applied in memory, so a killed process loses nothing
that anyone saw (the page cache outlives the process). Writers wait for an fdatasync
before they answer (a power loss loses nothing acknowledged); one fdatasync, run off the
event loop, covers every change made while the previous one ran (group commit). When a
segment outgrows the snapshot, the state is snapshotted (temp file + fsync + rename) and
the older segments deleted."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable
from pathlib import Path

from service.embedded_cluster.apiserver.recovery import FORMAT, SNAPSHOT, Restored, segment_name, segments
from service.embedded_cluster.apiserver.statefiles import encode_record, fsync_dir, write_all, write_atomic
from service.embedded_cluster.contracts import Obj, StatusError

log = logging.getLogger(__name__)

# Versions are leased in blocks: a block is made durable (one blocking fdatasync per block)
# before its first version is handed out, so no version is reused after a power loss.
LEASE_BLOCK = 1024
COMPACT_BYTES = 4 << 20
# The store's state at one version: (resourceVersion, objects per resource). The objects
# are the stored ones, which the store replaces and never changes in place.
Source = Callable[[], tuple[int, dict[str, list[Obj]]]]


class Journal:
    def __init__(self, directory: Path, restored: Restored, *, compact_bytes: int = COMPACT_BYTES) -> None:
        self.directory = directory
        self.restored = restored
        self._compact_bytes = compact_bytes
        self._lease = restored.resource_version
        self._source: Source | None = None
        self._snapshot_bytes = 0
        if not restored.fresh:   # a known starting point: the loaded state as one snapshot, no segments
            self._snapshot_bytes = _write_snapshot(directory, restored.resource_version, self._lease,
                                                   {r: list(o.values()) for r, o in restored.objects.items()},
                                                   segments(directory))
        self._fd = self._open_segment(restored.resource_version + 1)
        self._segment_bytes = 0
        self._retired: list[int] = []   # segments' fds awaiting their last sync
        self._dir_dirty = True
        self._written = self._synced = 0
        self._flusher: asyncio.Task[None] | None = None
        self._compactor: asyncio.Task[None] | None = None
        self._failure = ""
        self._closed = False

    def attach(self, source: Source) -> None:
        self._source = source

    # ----- the write path ------------------------------------------------------------

    def append(self, rv: int, event_type: str, resource: str, obj: Obj) -> None:
        """Record one change before it is applied; StatusError (nothing applied) when it cannot be."""
        self._check_usable()
        if rv > self._lease:
            self._extend_lease(rv - 1 + LEASE_BLOCK)
        if event_type == "DELETED":   # its key is all a replay needs
            meta = obj["metadata"]
            obj = {"metadata": {k: meta[k] for k in ("name", "namespace", "uid", "resourceVersion") if k in meta}}
        self._write(encode_record({"rv": rv, "type": event_type, "resource": resource, "object": obj}))
        self._written += 1

    async def durable(self) -> None:
        """Return once every change appended so far is on disk."""
        target = self._written
        while self._synced < target:
            if self._failure:
                raise self._unavailable()
            if self._flusher is None:
                self._flusher = asyncio.create_task(self._flush())
            # Shielded: a caller that gives up must not cancel the sync others wait for.
            await asyncio.shield(self._flusher)

    async def close(self) -> None:
        """Sync, then leave one snapshot and no segments behind (a quick, exact next start)."""
        if self._closed:
            return
        with contextlib.suppress(StatusError):
            await self.durable()
        if self._compactor is not None:
            await asyncio.gather(self._compactor, return_exceptions=True)
        self._closed = True
        try:
            if self._source is not None and not self._failure:
                rv, objects = self._source()
                await asyncio.to_thread(_write_snapshot, self.directory, rv, rv, objects, segments(self.directory))
        except (OSError, ValueError) as err:
            log.error("could not write the final snapshot (the journal is kept): %s", err)
        finally:
            for fd in [*self._retired, self._fd]:
                os.close(fd)
            self._retired = []

    # ----- internals -----------------------------------------------------------------

    def _check_usable(self) -> None:
        if self._closed:
            raise StatusError(503, "ServiceUnavailable", "the API server is shutting down")
        if self._failure:
            raise self._unavailable()

    def _unavailable(self) -> StatusError:
        return StatusError(503, "ServiceUnavailable", f"the state journal is unusable: {self._failure}")

    def _write(self, data: bytes) -> None:
        try:
            write_all(self._fd, data)
        except OSError as err:
            try:   # never leave half a record in front of the next one
                os.ftruncate(self._fd, self._segment_bytes)
            except OSError as truncate_error:
                self._failure = f"a partial record could not be removed: {truncate_error}"
            raise StatusError(500, "InternalError", f"persisting the change failed: {err}") from None
        self._segment_bytes += len(data)

    def _extend_lease(self, lease: int) -> None:
        self._write(encode_record({"lease": lease}))
        try:
            # Blocking, once per LEASE_BLOCK changes: cheaper than a trip to a thread.
            os.fdatasync(self._fd)
            if self._dir_dirty:   # a new segment's name must be durable for its lease to be
                fsync_dir(self.directory)
                self._dir_dirty = False
        except OSError as err:
            self._failure = f"syncing a lease failed: {err}"
            raise self._unavailable() from None
        self._lease = lease

    def _open_segment(self, first_rv: int) -> int:
        return os.open(self.directory / segment_name(first_rv), os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_TRUNC,
                       0o600)

    async def _flush(self) -> None:
        target, fds, retired = self._written, [*self._retired, self._fd], self._retired
        self._retired = []
        directory = self.directory if self._dir_dirty else None
        self._dir_dirty = False
        try:
            await asyncio.to_thread(_sync, fds, retired, directory)
            self._synced = max(self._synced, target)
        except OSError as err:
            # After a failed fsync the kernel may have dropped the pages: nothing written can be trusted.
            self._failure = f"fdatasync failed: {err}"
            raise self._unavailable() from None
        finally:
            self._flusher = None
        self._maybe_compact()

    def _maybe_compact(self) -> None:
        if (self._compactor is None and self._source is not None and not self._closed
                and self._segment_bytes > max(self._compact_bytes, self._snapshot_bytes)):
            self._compactor = asyncio.create_task(self._compact())

    async def _compact(self) -> None:
        assert self._source is not None
        try:
            rv, objects = self._source()
            older = segments(self.directory)
            # Changes from here on go to a new segment; the snapshot covers everything before.
            fd = self._open_segment(rv + 1)
            self._retired.append(self._fd)
            self._fd, self._segment_bytes, self._dir_dirty = fd, 0, True
            self._snapshot_bytes = await asyncio.to_thread(_write_snapshot, self.directory, rv, self._lease,
                                                           objects, older)
        except (OSError, ValueError, RuntimeError) as err:
            log.warning("compacting the state journal failed (its segments stay valid): %s", err)
        finally:
            self._compactor = None


def _sync(fds: list[int], close: list[int], directory: Path | None) -> None:
    try:
        for fd in fds:
            os.fdatasync(fd)
        if directory is not None:
            fsync_dir(directory)   # a new segment's name must survive too
    finally:
        for fd in close:
            os.close(fd)


def _write_snapshot(directory: Path, rv: int, lease: int, objects: dict[str, list[Obj]], older: list[Path]) -> int:
    """Write the snapshot durably, then delete the segments it covers; returns its size."""
    data = encode_record({"format": FORMAT, "resourceVersion": rv, "lease": lease, "objects": objects})
    write_atomic(directory / SNAPSHOT, data)
    for path in older:
        path.unlink(missing_ok=True)
    if older:
        fsync_dir(directory)
    return len(data)
