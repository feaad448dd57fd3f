"""Deterministic, sparse disk contents.

A simulated disk's bytes are a pure function of (content seed, size): zeros, except a
64 KiB block at the start of every 64 MiB stripe whose bytes derive from
sha256(seed, stripe index). A multi-GiB disk therefore costs no memory, and anyone can
recompute the expected checksum of an export independently.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from functools import lru_cache

STRIPE = 64 << 20
BLOCK = 64 << 10
_ZEROS = bytes(1 << 20)


@lru_cache(maxsize=64)
def _written_block(seed: str, index: int) -> bytes:
    digests = (hashlib.sha256(f"{seed}\x00{index}\x00{part}".encode()).digest() for part in range(BLOCK // 32))
    return b"".join(digests)


def _zeros(length: int) -> bytes:
    return _ZEROS[:length] if length <= len(_ZEROS) else bytes(length)


def iter_disk_content(seed: str, size: int, offset: int = 0, length: int | None = None,
                      chunk: int = 1 << 20) -> Iterator[bytes]:
    """The bytes [offset, offset+length) of the disk, in pieces of at most ``chunk`` bytes."""
    if offset < 0 or size < 0 or chunk <= 0:
        raise ValueError("offset, size and chunk must be non-negative (chunk positive)")
    end = size if length is None else min(size, offset + max(length, 0))
    position = offset
    while position < end:
        stripe_start = position - position % STRIPE
        in_stripe = position - stripe_start
        if in_stripe < BLOCK:
            piece_end = min(end, stripe_start + BLOCK, position + chunk)
            block = _written_block(seed, stripe_start // STRIPE)
            yield block[in_stripe:piece_end - stripe_start]
        else:
            piece_end = min(end, stripe_start + STRIPE, position + chunk)
            yield _zeros(piece_end - position)
        position = piece_end


def disk_content(seed: str, size: int, offset: int, length: int) -> bytes:
    """Bytes [offset, offset+length) of a disk of ``size`` bytes (clipped at its end)."""
    return b"".join(iter_disk_content(seed, size, offset, length))


def disk_sha256(seed: str, size: int) -> str:
    """Hex sha256 of the whole disk, computed by streaming (bounded memory)."""
    digest = hashlib.sha256()
    for piece in iter_disk_content(seed, size, chunk=4 << 20):
        digest.update(piece)
    return digest.hexdigest()
