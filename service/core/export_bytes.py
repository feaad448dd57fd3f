"""Pure byte-level rules of an export: which range a request gets, the content's entity
tag, and where the zero-filled regions (holes) of a piece are.

Holes are found per aligned block by comparing the block with a block of zeros: a
``bytes`` comparison is a memcmp (tens of GB/s), so no Python loop ever walks bytes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass

from service.core.domain import ExportData, ExportHole
from service.core.errors import ApiError, Code
from service.core.requests import ExportRequest

HOLE_BLOCK = 64 << 10
_ZEROS = bytes(4 << 20)


@dataclass(frozen=True)
class ByteSpan:
    offset: int
    length: int
    ranged: bool   # a range was asked for and applies (REST: 206 Partial Content)

    @property
    def end(self) -> int:
        return self.offset + self.length


def out_of_range(size: int, message: str) -> ApiError:
    """OUT_OF_RANGE (REST 416 with ``Content-Range: bytes */size``)."""
    return ApiError(Code.OUT_OF_RANGE, "RANGE_NOT_SATISFIABLE", message, metadata={"size": str(size)})


def resolve_span(req: ExportRequest, size: int, etag: str) -> ByteSpan:
    """The bytes a request gets from a volume of ``size`` bytes. A range for other
    content (``if_etag`` differs) gets everything, as HTTP's If-Range says; a range that
    starts at or past the end is OUT_OF_RANGE; one that runs past it is clipped."""
    if not req.ranged or (req.if_etag and req.if_etag != etag):
        return ByteSpan(0, size, False)
    if req.suffix_length is not None:
        if size == 0:
            raise out_of_range(size, "the volume is empty: no suffix range can be served")
        start = max(0, size - req.suffix_length)
        return ByteSpan(start, size - start, True)
    if req.offset >= size:
        raise out_of_range(size, f"offset {req.offset} is at or past the end of the volume ({size} bytes)")
    end = size if req.length is None else min(size, req.offset + req.length)
    return ByteSpan(req.offset, end - req.offset, True)


def content_etag(kind: str, uid: str, version: str) -> str:
    """A strong entity tag for the bytes of one object: a snapshot's bytes never change
    (``version`` empty: its uid is enough); a disk's are pinned to its resourceVersion,
    which any attach, detach or resize changes."""
    digest = hashlib.sha256(f"{kind}\x00{uid}\x00{version}".encode()).hexdigest()[:32]
    return f'"{digest}"'


def is_zero(data: bytes) -> bool:
    step = len(_ZEROS)
    if len(data) <= step:
        return data == _ZEROS[:len(data)]
    return all(is_zero(data[i:i + step]) for i in range(0, len(data), step))


def split_holes(data: bytes, offset: int, block: int = HOLE_BLOCK) -> Iterator[ExportData | ExportHole]:
    """``data`` (the volume's bytes at ``offset``) as data and hole items, in order, with
    no gaps: every aligned ``block`` of zeros (and a zero tail of the piece) is a hole."""
    size = len(data)
    if size == 0:
        return
    if is_zero(data):
        yield ExportHole(offset, size)
        return
    run_start, run_zero = 0, False
    position = 0
    while position < size:
        boundary = min(size, position + block - (offset + position) % block)
        zero = data[position:boundary] == _ZEROS[:boundary - position]
        if position == 0:
            run_zero = zero
        elif zero != run_zero:
            yield _item(data, offset, run_start, position, run_zero)
            run_start, run_zero = position, zero
        position = boundary
    yield _item(data, offset, run_start, size, run_zero)


def _item(data: bytes, offset: int, start: int, end: int, zero: bool) -> ExportData | ExportHole:
    if zero:
        return ExportHole(offset + start, end - start)
    return ExportData(offset + start, data if start == 0 and end == len(data) else data[start:end])
