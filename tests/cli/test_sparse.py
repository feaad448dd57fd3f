"""Zero blocks become holes: the file reads back identical and takes little disk space."""

from __future__ import annotations

import hashlib
import os
import random
from pathlib import Path

import pytest

from service.client.sparse import BLOCK, SparseWriter
from service.embedded_cluster.controllers.content import STRIPE, iter_disk_content


def _write(path: Path, pieces: list[bytes], start: int = 0) -> SparseWriter:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        writer = SparseWriter(fd, start)
        for piece in pieces:
            writer.write(piece)
        writer.flush()
        return writer
    finally:
        os.close(fd)


def _random_pieces(data: bytes, rng: random.Random) -> list[bytes]:
    pieces, position = [], 0
    while position < len(data):
        step = rng.choice([1, 7, 4096, BLOCK - 1, BLOCK, BLOCK + 3, 1 << 20, 3 << 20])
        pieces.append(data[position:position + step])
        position += step
    return pieces


def test_disk_content_is_written_sparse_and_identical(tmp_path: Path) -> None:
    size = 3 * STRIPE + 12345                    # four stripes, the last one short
    expected = b"".join(iter_disk_content("seed", size))
    path = tmp_path / "disk.img"
    writer = _write(path, _random_pieces(expected, random.Random(7)))
    assert path.read_bytes() == expected
    assert path.stat().st_size == size
    # Only the stripes' first blocks are data; the filesystem may round up a little.
    assert writer.data_bytes == 3 * BLOCK + 12345
    assert path.stat().st_blocks * 512 < 16 * BLOCK


def test_a_trailing_zero_region_still_sets_the_size(tmp_path: Path) -> None:
    data = b"x" * 10 + bytes(5 * BLOCK + 17)
    path = tmp_path / "tail.img"
    writer = _write(path, [data])
    assert path.read_bytes() == data
    assert writer.data_bytes == BLOCK    # the first block holds the x's
    assert path.stat().st_blocks * 512 <= 2 * BLOCK


def test_all_zeros_takes_no_blocks(tmp_path: Path) -> None:
    path = tmp_path / "zeros.img"
    _write(path, [bytes(1 << 20)] * 8)
    assert path.stat().st_size == 8 << 20
    assert path.stat().st_blocks == 0


def test_size_follows_the_stream_block_by_block(tmp_path: Path) -> None:
    """Without flush the file ends at the last full block: where a killed download resumes."""
    path = tmp_path / "partial.img"
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        writer = SparseWriter(fd, 0)
        writer.write(bytes(3 * BLOCK + 100))
        assert os.fstat(fd).st_size == 3 * BLOCK
        assert writer.position == 3 * BLOCK + 100
        writer.write(b"\x01" * (BLOCK - 100))
        assert os.fstat(fd).st_size == 4 * BLOCK
    finally:
        os.close(fd)


@pytest.mark.parametrize("start", [0, 1, BLOCK - 1, BLOCK, 5 * BLOCK + 123])
def test_continuing_a_file_at_any_offset(tmp_path: Path, start: int) -> None:
    """A resumed stream starts wherever the part file ended, aligned or not."""
    rng = random.Random(start)
    content = bytearray(12 * BLOCK + 999)
    for block in (0, 4, 5, 11):
        content[block * BLOCK + 5: block * BLOCK + 900] = rng.randbytes(895)
    path = tmp_path / "resumed.img"
    path.write_bytes(bytes(content[:start]))
    _write(path, _random_pieces(bytes(content[start:]), rng), start)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == hashlib.sha256(content).hexdigest()


def test_overwriting_the_last_byte_of_a_complete_file(tmp_path: Path) -> None:
    """The "ask for the last byte again" resume writes over what is there."""
    content = b"a" * (2 * BLOCK)
    path = tmp_path / "complete.img"
    path.write_bytes(content)
    _write(path, [b"a"], len(content) - 1)
    assert path.read_bytes() == content
