"""Deterministic, sparse disk contents.

A simulated disk's bytes are a pure function of (content seed, size): zeros, except a
64 KiB block at the start of every 64 MiB stripe whose bytes derive from
sha256(seed, stripe index). A multi-GiB disk therefore costs no memory, and anyone can
recompute the expected checksum of an export independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from functools import lru_cache
from typing import TypeVar

STRIPE = 64 << 20
BLOCK = 64 << 10
DEFAULT_CHUNK = 1 << 20
MAX_CHUNK = 64 << 20            # the largest piece the zero buffers are made for
_HASH_CHUNK = 16 << 20          # hashlib releases the GIL and runs at full speed on big pieces

_Piece = TypeVar("_Piece", bytes, memoryview)


@lru_cache(maxsize=64)
def _written_block(seed: str, index: int) -> bytes:
    digests = (hashlib.sha256(f"{seed}\x00{index}\x00{part}".encode()).digest() for part in range(BLOCK // 32))
    return b"".join(digests)


def _written_view(seed: str, index: int) -> memoryview:
    return memoryview(_written_block(seed, index))


@lru_cache(maxsize=8)
def _cached_zeros(length: int) -> bytes:
    return bytes(length)


def _zeros(length: int) -> bytes:
    # Nearly every zero piece has one of two lengths (chunk, chunk - BLOCK): cached, they cost nothing.
    return _cached_zeros(length) if length <= MAX_CHUNK else bytes(length)


@lru_cache(maxsize=4)
def _zero_view(length: int) -> memoryview:
    """One shared, immutable zero buffer per chunk size; pieces are zero-copy slices of it."""
    return memoryview(bytes(length))


def _check(offset: int, size: int, chunk: int) -> None:
    if offset < 0 or size < 0 or chunk <= 0:
        raise ValueError("offset, size and chunk must be non-negative (chunk positive)")


def _pieces(seed: str, size: int, offset: int, length: int | None, chunk: int,
            zeros: Callable[[int], _Piece], block: Callable[[str, int], _Piece]) -> Iterator[_Piece]:
    _check(offset, size, chunk)
    end = size if length is None else min(size, offset + max(length, 0))
    position = offset
    while position < end:
        stripe_start = position - position % STRIPE
        in_stripe = position - stripe_start
        if in_stripe < BLOCK:
            piece_end = min(end, stripe_start + BLOCK, position + chunk)
            yield block(seed, stripe_start // STRIPE)[in_stripe:piece_end - stripe_start]
        else:
            piece_end = min(end, stripe_start + STRIPE, position + chunk)
            yield zeros(piece_end - position)
        position = piece_end


def iter_disk_content(seed: str, size: int, offset: int = 0, length: int | None = None,
                      chunk: int = DEFAULT_CHUNK) -> Iterator[bytes]:
    """The bytes [offset, offset+length) of the disk, in pieces of at most ``chunk`` bytes."""
    return _pieces(seed, size, offset, length, chunk, _zeros, _written_block)


def iter_disk_views(seed: str, size: int, offset: int = 0, length: int | None = None,
                    chunk: int = DEFAULT_CHUNK) -> Iterator[memoryview]:
    """The same pieces as ``iter_disk_content``, as read-only views of shared immutable buffers:
    nothing is allocated or copied per piece (for the exporter and hashing). ``chunk`` is at
    most MAX_CHUNK: a zero buffer of that size is kept."""
    _check(offset, size, chunk)
    if chunk > MAX_CHUNK:
        raise ValueError(f"chunk must be at most {MAX_CHUNK} bytes")
    zero = _zero_view(chunk)
    return _pieces(seed, size, offset, length, chunk, lambda n: zero[:n], _written_view)


def disk_content(seed: str, size: int, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of a disk of ``size`` bytes (clipped at its end)."""
    return b"".join(iter_disk_views(seed, size, offset, length))


@lru_cache(maxsize=64)
def disk_sha256(seed: str, size: int) -> str:
    """Hex sha256 of the whole disk, computed by streaming (bounded memory). Cached: hashing
    is bound by sha256 itself (about 1 GiB/s), and tests ask for the same disk repeatedly."""
    digest = hashlib.sha256()
    for piece in iter_disk_views(seed, size, chunk=_HASH_CHUNK):
        digest.update(piece)
    return digest.hexdigest()
