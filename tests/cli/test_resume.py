"""Where a download continues from the part file and sidecar an earlier run left."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from service.client.partfile import PartMeta, PartPaths, hash_prefix, load_meta, plan_resume, save_meta

ETAG = '"0123456789abcdef"'


def test_paths_sit_next_to_the_output(tmp_path: Path) -> None:
    paths = PartPaths(tmp_path / "disk.img")
    assert paths.part == tmp_path / "disk.img.part"
    assert paths.meta == tmp_path / "disk.img.part.json"


def test_nothing_to_resume() -> None:
    assert plan_resume(None, None, True).offset == 0
    assert plan_resume(0, PartMeta(ETAG, 100), True).offset == 0


def test_resume_from_the_part_size_with_if_range() -> None:
    plan = plan_resume(4096, PartMeta(ETAG, 1 << 30), True)
    assert (plan.offset, plan.etag, plan.note) == (4096, ETAG, "")
    # The size may be unknown (an answer without it): still resumable.
    assert plan_resume(4096, PartMeta(ETAG), True).offset == 4096


def test_a_complete_part_asks_for_its_last_byte_again() -> None:
    plan = plan_resume(1000, PartMeta(ETAG, 1000), True)
    assert (plan.offset, plan.etag) == (999, ETAG)


def test_start_over_when_resuming_is_not_safe() -> None:
    for part_size, meta, resume in [
        (4096, PartMeta(ETAG, 1 << 30), False),      # --no-resume
        (4096, None, True),                          # no sidecar: which content is it?
        (4096, PartMeta('W/"weak"', 1 << 30), True),  # If-Range needs a strong ETag
        (2000, PartMeta(ETAG, 1000), True),          # larger than the image
    ]:
        plan = plan_resume(part_size, meta, resume)
        assert (plan.offset, plan.etag) == (0, None), (part_size, meta, resume)
        assert plan.note


def test_sidecar_round_trip_and_damage(tmp_path: Path) -> None:
    path = tmp_path / "x.part.json"
    assert load_meta(path) is None
    save_meta(path, PartMeta(ETAG, 123))
    assert load_meta(path) == PartMeta(ETAG, 123)
    path.write_text("{not json")
    assert load_meta(path) is None
    path.write_text('{"etag": 5}')
    assert load_meta(path) is None


def test_hash_prefix_reads_holes_as_zeros(tmp_path: Path) -> None:
    path = tmp_path / "sparse.part"
    with path.open("wb") as f:
        f.write(b"head")
        f.truncate(20 << 20)
    expected = hashlib.sha256(b"head" + bytes((20 << 20) - 4 - 5)).hexdigest()
    fd = os.open(path, os.O_RDONLY)
    try:
        digest = hashlib.sha256()
        seen: list[int] = []
        hash_prefix(fd, (20 << 20) - 5, digest, seen.append)
    finally:
        os.close(fd)
    assert digest.hexdigest() == expected
    assert seen[-1] == (20 << 20) - 5 and len(seen) >= 2
