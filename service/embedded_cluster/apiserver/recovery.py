"""Loading the store's objects back from the state directory: the snapshot, then the journal
segments written after it (see journal.py for how they are written)."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeGuard

from service.embedded_cluster.apiserver.statefiles import StateError, decode_record, read_state_file
from service.embedded_cluster.contracts import Obj

log = logging.getLogger(__name__)

SNAPSHOT = "objects.snapshot"
FORMAT = 1
EVENT_TYPES = ("ADDED", "MODIFIED", "DELETED")
_SEGMENT = re.compile(r"journal-(\d{20})\.log")

Key = tuple[str, str]   # (namespace or "", name)
ObjectMap = dict[str, dict[Key, Obj]]


@dataclass
class Restored:
    resource_version: int = 0    # the next change gets this + 1
    objects: ObjectMap = field(default_factory=dict)
    fresh: bool = True           # nothing was ever stored here


def segment_name(first_rv: int) -> str:
    return f"journal-{first_rv:020d}.log"


def segments(directory: Path) -> list[Path]:
    """The journal segments, oldest first."""
    found = [(int(m.group(1)), path) for path in directory.iterdir() if (m := _SEGMENT.fullmatch(path.name))]
    return [path for _, path in sorted(found)]


def key_of(obj: Obj) -> Key:
    meta = obj["metadata"]
    return str(meta.get("namespace") or ""), str(meta["name"])


def load_state(directory: Path) -> Restored:
    """Raises StateError naming the file when anything there is damaged or missing."""
    restored = Restored()
    lease = _load_snapshot(directory / SNAPSHOT, restored)
    files = segments(directory)
    for index, path in enumerate(files):
        lease = max(lease, _replay(path, restored, last=index == len(files) - 1))
    # Versions up to the lease may have reached a watcher before a power loss took their
    # records: never hand them out again (see Journal.append).
    restored.resource_version = max(restored.resource_version, lease)
    return restored


def _load_snapshot(path: Path, restored: Restored) -> int:
    raw = read_state_file(path)
    if raw is None:
        return 0
    snapshot = decode_record(raw.rstrip(b"\n")) if raw.endswith(b"\n") else None
    if snapshot is None:
        raise StateError(path, "damaged snapshot (checksum or JSON does not match; was it edited or truncated?)")
    if snapshot.get("format") != FORMAT:
        raise StateError(path, f"unknown snapshot format {snapshot.get('format')!r} (expected {FORMAT})")
    rv, lease, objects = snapshot.get("resourceVersion"), snapshot.get("lease", 0), snapshot.get("objects")
    if not _is_count(rv) or not _is_count(lease) or not isinstance(objects, dict):
        raise StateError(path, "snapshot lacks resourceVersion, lease or objects")
    for resource, items in objects.items():
        if not isinstance(items, list) or not all(_is_object(obj) for obj in items):
            raise StateError(path, f"snapshot holds a malformed {resource} object")
        restored.objects[resource] = {key_of(obj): obj for obj in items}
    restored.resource_version = rv
    restored.fresh = False
    return int(lease)


def _replay(path: Path, restored: Restored, *, last: bool) -> int:
    data = read_state_file(path) or b""
    end = data.rfind(b"\n") + 1
    if end < len(data):
        if not last:
            raise StateError(path, f"incomplete record at byte {end} in a segment that is not the last")
        # A kill can cut a write short; that change was never applied nor acknowledged.
        log.warning("%s: ignoring an incomplete last record (%d bytes) cut short by a crash", path, len(data) - end)
    lease = 0
    for lineno, line in enumerate(data[:end].split(b"\n")[:-1], 1):
        record = decode_record(line)
        if record is None:
            raise StateError(path, f"line {lineno}: damaged record (checksum or JSON does not match)")
        if "lease" in record:
            if not _is_count(record["lease"]):
                raise StateError(path, f"line {lineno}: malformed lease record")
            lease = max(lease, int(record["lease"]))
            continue
        rv, event_type, resource, obj = (record.get("rv"), record.get("type"), record.get("resource"),
                                         record.get("object"))
        if not _is_count(rv) or event_type not in EVENT_TYPES or not isinstance(resource, str) or not _is_object(obj):
            raise StateError(path, f"line {lineno}: not a journal record")
        if rv <= restored.resource_version:
            continue   # already in the snapshot (written before the segment was retired)
        if rv != restored.resource_version + 1:
            raise StateError(path, f"line {lineno}: resourceVersion {rv} follows {restored.resource_version}: "
                                   "records are missing")
        objects = restored.objects.setdefault(resource, {})
        if event_type == "DELETED":
            objects.pop(key_of(obj), None)
        else:
            objects[key_of(obj)] = obj
        restored.resource_version = rv
        restored.fresh = False
    return lease


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _is_object(value: Any) -> TypeGuard[Obj]:
    return (isinstance(value, dict) and isinstance(value.get("metadata"), dict)
            and isinstance(value["metadata"].get("name"), str))
