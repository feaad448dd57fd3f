"""The deterministic disk contents: the bytes never change, the zero-copy views and the fast
checksum produce exactly them, and the exporter's chunk size is configurable."""

from __future__ import annotations

import hashlib

import pytest

from service.embedded_cluster.controllers.content import (
    BLOCK,
    MAX_CHUNK,
    STRIPE,
    disk_content,
    disk_sha256,
    iter_disk_content,
    iter_disk_views,
)
from service.embedded_cluster.server import EmbeddedClusterConfig

# Digests computed before the zero-copy rewrite: the content function must never change,
# since the gateway's tests and users recompute expected checksums from it.
GOLDEN = [("Blank:golden", 3 * STRIPE + 12345, "9887283f481a1435360b5675595bcdaee383bcc1f80e38df56ae77271c76e02e"),
          ("x", BLOCK + 7, "d1d7fec00328bc2aaac78c2a311bfe966acb6d2a65a8f3e472e7e580305f89d0"),
          ("VirtualImage:img:u1", 1 << 30, "d5de48484bf170687b6c63605cc437cbe9d43c8520b0dc1e9733597e0505922b")]
SIZES = [0, 1, BLOCK - 1, BLOCK, BLOCK + 1, STRIPE - 1, STRIPE, STRIPE + BLOCK + 7, 2 * STRIPE + 3]
RANGES = [(0, 10), (BLOCK - 3, 6), (STRIPE - 100, 200 + BLOCK), (5, 3 * STRIPE), (2 * STRIPE, 0), (STRIPE, 1)]
# Tiny chunks only over short ranges: millions of pieces would add time, not coverage.
PIECES = [(chunk, offset, length) for chunk in (7, 4096, BLOCK + 3, 1 << 20, 4 << 20) for offset, length in RANGES
          if chunk >= BLOCK or length <= 4 * BLOCK]


@pytest.mark.parametrize(("seed", "size", "digest"), GOLDEN)
def test_content_is_the_same_as_ever(seed: str, size: int, digest: str) -> None:
    disk_sha256.cache_clear()
    assert disk_sha256(seed, size) == digest


@pytest.mark.parametrize("size", SIZES)
def test_fast_checksum_equals_hashing_the_plain_bytes(size: int) -> None:
    plain = hashlib.sha256()
    for piece in iter_disk_content("seed", size, chunk=(1 << 20) + 1):
        plain.update(piece)
    assert disk_sha256("seed", size) == plain.hexdigest()
    assert disk_sha256("seed", size) == hashlib.sha256(disk_content("seed", size, 0, size)).hexdigest()


@pytest.mark.parametrize(("chunk", "offset", "length"), PIECES)
def test_views_and_bytes_are_the_same_pieces(chunk: int, offset: int, length: int) -> None:
    size = 2 * STRIPE + 3
    as_bytes = list(iter_disk_content("seed", size, offset, length, chunk))
    as_views = list(iter_disk_views("seed", size, offset, length, chunk))
    assert [len(p) for p in as_bytes] == [len(v) for v in as_views]
    assert all(0 < len(p) <= chunk for p in as_bytes)
    assert all(isinstance(p, bytes) for p in as_bytes)
    assert b"".join(as_views) == b"".join(as_bytes) == disk_content("seed", size, offset, length)


def test_zero_pieces_are_slices_of_one_buffer() -> None:
    views = list(iter_disk_views("seed", STRIPE, BLOCK, 8 << 20, chunk=1 << 20))
    assert len(views) == 8 and all(v.readonly for v in views)
    assert len({id(v.obj) for v in views}) == 1      # no allocation per piece
    pieces = list(iter_disk_content("seed", STRIPE, BLOCK, 8 << 20))
    assert len({id(p) for p in pieces}) == 1          # the bytes flavour reuses a cached zero piece


def test_chunk_bounds() -> None:
    with pytest.raises(ValueError, match="chunk"):
        iter_disk_views("seed", STRIPE, chunk=MAX_CHUNK + 1)
    with pytest.raises(ValueError, match="chunk"):
        iter_disk_views("seed", STRIPE, chunk=0)
    for bad in (0, -1, MAX_CHUNK + 1):
        with pytest.raises(ValueError, match="export_chunk"):
            EmbeddedClusterConfig(export_chunk=bad)
    assert EmbeddedClusterConfig().export_chunk == 512 << 10
