"""DataExport (deckhouse.io/v1alpha1): Ready while its target may be read, Expired after its TTL."""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from service.embedded_cluster.contracts import Obj, ObjectStore

from .kube import (
    annotation,
    generation_of,
    get_condition,
    name_of,
    parse_quantity,
    parse_time,
    phase,
    set_condition,
    spec,
    status,
    uid_of,
)
from .queries import vm_is_live, vms_using_disk
from .resources import ANN_CONTENT_SEED, ANN_LAST_ACCESS, ANN_SOURCE_SIZE, DATAEXPORT, VD, VDSNAPSHOT, VM
from .runtime import Mapper, Reconciler
from .settings import ControllerSettings

_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]+)?)(ns|us|µs|ms|s|m|h)")
_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
DEFAULT_TTL = 120.0


def parse_duration(text: str) -> float | None:
    """Seconds of a Go duration ("2m", "1h30m", "45s"); None if it is not one."""
    if not text:
        return None
    position, total = 0, 0.0
    for match in _DURATION_PART.finditer(text):
        if match.start() != position:
            return None
        total += float(match.group(1)) * _UNITS[match.group(2)]
        position = match.end()
    return total if position == len(text) else None


@dataclass(frozen=True)
class ExportSource:
    seed: str
    size: int


def export_source(store: ObjectStore, export: Obj) -> tuple[ExportSource | None, str, str]:
    """The bytes an export serves, or (None, reason, message) saying why it cannot serve them now."""
    namespace = export["metadata"]["namespace"]
    target = spec(export).get("targetRef") or {}
    kind, target_name = str(target.get("kind")), str(target.get("name"))
    if kind == "VirtualDisk":
        disk = store.get(VD, namespace, target_name)
        if disk is None:
            return None, "TargetNotFound", f"The virtual disk {target_name!r} is not found."
        if phase(disk) != "Ready":
            return None, "TargetNotReady", f"The virtual disk {target_name!r} is not ready ({phase(disk)})."
        users = [vm for vm in vms_using_disk(store, namespace, target_name) if vm_is_live(vm)]
        if users:
            return None, "VirtualDiskInUse", (
                f"The virtual disk {target_name!r} is in use by the running virtual machine {name_of(users[0])!r}: "
                "stop the virtual machine to export the disk.")
        size = parse_quantity(status(disk).get("capacity")) or 0
        return ExportSource(annotation(disk, ANN_CONTENT_SEED), size), "", ""
    snapshot = store.get(VDSNAPSHOT, namespace, target_name)
    if snapshot is None:
        return None, "TargetNotFound", f"The virtual disk snapshot {target_name!r} is not found."
    if phase(snapshot) != "Ready":
        return None, "TargetNotReady", f"The virtual disk snapshot {target_name!r} is not ready ({phase(snapshot)})."
    size = parse_quantity(annotation(snapshot, ANN_SOURCE_SIZE)) or 0
    return ExportSource(annotation(snapshot, ANN_CONTENT_SEED), size), "", ""


def seconds_left(export: Obj, now: datetime | None = None) -> float:
    """Until expiry: the TTL runs from the last download (or from creation)."""
    ttl = parse_duration(str(spec(export).get("ttl") or "")) or DEFAULT_TTL
    started = parse_time(annotation(export, ANN_LAST_ACCESS) or str(export["metadata"].get("creationTimestamp", "")))
    if started is None:
        return ttl
    return ttl - ((now or datetime.now(UTC)) - started).total_seconds()


def export_url(base_url: str, export: Obj) -> str:
    return f"{base_url}/dataexport/{export['metadata']['namespace']}/{name_of(export)}"


class DataExportReconciler(Reconciler):
    resource = DATAEXPORT

    def __init__(self, store: ObjectStore, settings: ControllerSettings) -> None:
        super().__init__(store, settings)
        self._expired_by_fault: set[str] = set()   # uids: decided once, kept through conflicts and resyncs

    def _expires_at_once(self, export: Obj) -> bool:
        """An injected fault: the export's TTL ran out before it became ready."""
        uid = uid_of(export)
        if uid in self._expired_by_fault:
            return True
        if get_condition(export, "Ready") is None and self.settings.faults.take_export_expiry():
            self._expired_by_fault.add(uid)
            return True
        return False

    def watches(self) -> dict[str, Mapper]:
        same = self.same_namespace()
        return {VD: same, VDSNAPSHOT: same, VM: same}

    async def reconcile(self, namespace: str, name: str) -> float | None:
        export = self.store.get(DATAEXPORT, namespace, name)
        if export is None or export["metadata"].get("deletionTimestamp"):
            return None
        st = dict(status(export))
        generation = generation_of(export)
        left = seconds_left(export)
        source, reason, message = export_source(self.store, export)
        if left <= 0 or self._expires_at_once(export):
            left = 0.0
            set_condition(st, "Ready", "False", "Expired",
                          f"The export expired: it was not accessed for {spec(export).get('ttl') or '2m'}.", generation)
        elif source is None:
            set_condition(st, "Ready", "False", reason, message, generation)
        else:
            url = export_url(self.settings.base_url, export)
            st["url"] = url
            st["volumeMode"] = "Block"
            if spec(export).get("publish"):
                st["publicURL"] = url
            if self.settings.ca_pem:
                st["ca"] = base64.b64encode(self.settings.ca_pem).decode()
            set_condition(st, "Ready", "True", "Ready", "", generation)
        await self.write_status(DATAEXPORT, export, st)
        return max(left, 0.0) + 0.05 if left > 0 else None
