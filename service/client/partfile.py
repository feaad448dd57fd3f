"""The state a download leaves on disk between runs, and where a run resumes.

``<output>.part`` holds the bytes received so far (its size is where the stream got to,
see ``sparse``); ``<output>.part.json`` keeps the content's ETag (sent back as If-Range,
so a resumed download never mixes two contents) and the image's size.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from service.client.wire import is_strong_etag

REHASH_CHUNK = 8 << 20


@dataclass(frozen=True)
class PartPaths:
    output: Path

    @property
    def part(self) -> Path:
        return self.output.with_name(self.output.name + ".part")

    @property
    def meta(self) -> Path:
        return self.output.with_name(self.output.name + ".part.json")


@dataclass(frozen=True)
class PartMeta:
    etag: str
    size: int | None = None


def load_meta(path: Path) -> PartMeta | None:
    """The sidecar, or None when it is missing or unreadable (the download then starts over)."""
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(raw, dict) or not isinstance(raw.get("etag"), str):
        return None
    size = raw.get("size")
    return PartMeta(raw["etag"], size if isinstance(size, int) and size >= 0 else None)


def save_meta(path: Path, meta: PartMeta) -> None:
    # Written aside and renamed: a crash never leaves half a sidecar.
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps({"etag": meta.etag, "size": meta.size}) + "\n")
    tmp.replace(path)


@dataclass(frozen=True)
class ResumePlan:
    offset: int           # first byte to ask for; 0 asks for everything
    etag: str | None      # If-Range value when offset > 0
    note: str             # why, for the user ("" when there is nothing to say)


def plan_resume(part_size: int | None, meta: PartMeta | None, resume: bool) -> ResumePlan:
    """Where to continue from a part file of ``part_size`` bytes (None: no part file).

    A part file whose content cannot be identified (no sidecar, or a weak ETag) is not
    resumed: If-Range needs a strong validator. A complete one asks for its last byte
    again, which confirms the ETag and brings the whole image's digest to verify against.
    """
    if not part_size:
        return ResumePlan(0, None, "")
    if not resume:
        return ResumePlan(0, None, "--no-resume: starting over")
    if meta is None or not is_strong_etag(meta.etag):
        return ResumePlan(0, None, "the partial file has no usable ETag: starting over")
    if meta.size is not None and part_size > meta.size:
        return ResumePlan(0, None, "the partial file is larger than the image: starting over")
    if meta.size is not None and part_size == meta.size:
        return ResumePlan(part_size - 1, meta.etag, "")
    return ResumePlan(part_size, meta.etag, "")


def hash_prefix(fd: int, length: int, digest: hashlib._Hash,
                progress: Callable[[int], None] | None = None) -> None:
    """Feed the first ``length`` bytes of the file to ``digest`` (holes read as zeros)."""
    position = 0
    while position < length:
        chunk = os.pread(fd, min(REHASH_CHUNK, length - position), position)
        if not chunk:
            raise OSError(f"the partial file ends at {position} bytes, expected {length}")
        digest.update(chunk)
        position += len(chunk)
        if progress is not None:
            progress(position)


class PartLockedError(Exception):
    pass


def lock(fd: int) -> None:
    """One download per part file: a second process writing it would corrupt it."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise PartLockedError from None


def remove_quietly(*paths: Path) -> None:
    for path in paths:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
