"""Crash-safe file primitives of the embedded cluster's state directory, and the one error
every unusable state file becomes."""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any


class StateError(Exception):
    """The state directory cannot be used as it is. The message is one line naming the file
    and what is wrong; nothing is discarded to get past it."""

    def __init__(self, path: Path, problem: str) -> None:
        super().__init__(f"{path}: {problem}")
        self.path = path
        self.problem = problem


def fsync_dir(directory: Path) -> None:
    """Make a create, rename or unlink in ``directory`` survive a power loss."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Temp file + fsync + rename + directory fsync: a crash leaves the old file or the new one, never a mix."""
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        os.fchmod(fd, mode)   # O_CREAT's mode is ignored for a leftover temp file
        write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    os.replace(tmp, path)
    fsync_dir(path.parent)


def read_state_file(path: Path) -> bytes | None:
    """The file's bytes; None when it does not exist; StateError when it cannot be read."""
    try:
        return path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise StateError(path, f"cannot be read ({err.strerror or err})") from None


# ----- journal records: one line each, "<crc32 of the JSON, 8 hex digits> <JSON>\n" --------

def encode_record(record: dict[str, Any]) -> bytes:
    body = json.dumps(record, separators=(",", ":"), ensure_ascii=False).encode()
    return b"%08x %s\n" % (zlib.crc32(body), body)


def decode_record(line: bytes) -> dict[str, Any] | None:
    """The record of a complete line (without its newline); None when its checksum or JSON is wrong."""
    if len(line) < 10 or line[8:9] != b" ":
        return None
    body = line[9:]
    try:
        if int(line[:8], 16) != zlib.crc32(body):
            return None
        record = json.loads(body)
    except ValueError:
        return None
    return record if isinstance(record, dict) else None
