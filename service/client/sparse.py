"""Write a byte stream into a file at its offsets, leaving zero blocks as holes.

Each aligned block is compared with a block of zeros: a ``bytes`` comparison is a
memcmp, so no Python loop walks bytes (a ``memoryview`` comparison would, item by item).
All-zero blocks are skipped; the file is extended with ``ftruncate`` instead, which
makes a hole on every filesystem that has them. The file's size therefore always equals
the end of the bytes handed over so far (minus a pending partial block): after a crash
or a SIGKILL it is exactly where a resumed download continues.
"""

from __future__ import annotations

import os

BLOCK = 64 << 10
_ZERO_BLOCK = bytes(BLOCK)


class SparseWriter:
    """Writes ``[start, ...)`` of a file through ``fd`` (opened for writing, not O_APPEND)."""

    def __init__(self, fd: int, start: int, block: int = BLOCK) -> None:
        if block <= 0 or block > BLOCK:
            raise ValueError(f"block must be in (0, {BLOCK}]")
        self._fd = fd
        self._block = block
        self._zero = _ZERO_BLOCK[:block]
        self._pending = bytearray()        # bytes at self.flushed.., less than up to the next boundary
        self.flushed = start               # file offset where self._pending starts
        self._size = os.fstat(fd).st_size  # the file's length as this writer left it
        self.data_bytes = 0                # bytes written as data (the rest became holes)

    @property
    def position(self) -> int:
        """Offset of the next byte of the stream."""
        return self.flushed + len(self._pending)

    def write(self, data: bytes) -> None:
        if self._pending:
            # Complete the pending block first; it never reaches a boundary by itself.
            need = self._block - self.position % self._block
            self._pending += data[:need]
            data = data[need:]
            if self.position % self._block == 0:
                self._put(bytes(self._pending))
                self._pending.clear()
            if not data:
                return
        end = self.flushed + len(data)
        count = end - end % self._block - self.flushed
        if count > 0:
            self._put(data if count == len(data) else data[:count])
            data = data[count:]
        self._pending += data

    def flush(self) -> None:
        """Put a pending partial block (the stream's tail, or where it broke off) to the file."""
        if self._pending:
            self._put(bytes(self._pending))
            self._pending.clear()

    def _put(self, data: bytes) -> None:
        """``data`` at ``self.flushed``: runs of non-zero blocks as one pwrite each, zero blocks skipped."""
        offset, size = self.flushed, len(data)
        position, run_start = 0, -1
        while position < size:
            end = min(size, position + self._block - (offset + position) % self._block)
            zero = data[position:end] == (self._zero if end - position == self._block else bytes(end - position))
            if zero and run_start >= 0:
                self._pwrite(data, run_start, position)
                run_start = -1
            elif not zero and run_start < 0:
                run_start = position
            position = end
        if run_start >= 0:
            self._pwrite(data, run_start, size)
        self.flushed = offset + size
        if self._size < self.flushed:
            # A zero tail: extend the file without allocating, so its size is where we are.
            os.ftruncate(self._fd, self.flushed)
            self._size = self.flushed

    def _pwrite(self, data: bytes, start: int, end: int) -> None:
        view = memoryview(data)[start:end]
        offset = self.flushed + start
        while view:
            written = os.pwrite(self._fd, view, offset)
            view, offset = view[written:], offset + written
        self.data_bytes += end - start
        self._size = max(self._size, self.flushed + end)
