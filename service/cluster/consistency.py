"""The guide's snapshot consistency rule, as the gateway applies it (pure).

A consistent snapshot of a disk a running guest writes to needs qemu-guest-agent to
freeze the file system; without it the platform keeps the snapshot Pending
(PotentiallyInconsistent). The embedded cluster's controllers apply the same rule on
their side; ``tests/test_consistency_rule.py`` runs one table through both.
"""

from __future__ import annotations

from service.cluster.translate import Obj, _dict, _str, conditions_from_resource, metadata, phase, status

# Phases in which the guest OS may be running (and writing), so a consistent snapshot needs fsfreeze.
_GUEST_RUNNING_PHASES = frozenset({"Running", "Degraded", "Migrating", "Pause", "Starting", "Stopping"})
# Phases in which the guest can be frozen when its agent is ready: the platform asks KubeVirt's
# instance, which stays Running during a live migration (SnapshotService.CanFreeze).
_FREEZABLE_PHASES = frozenset({"Running", "Migrating"})

_WAITS = ("the snapshot will wait in Pending (PotentiallyInconsistent) until the VM is stopped or the agent "
          "becomes available. Set required_consistency=false to take a possibly inconsistent snapshot now.")


def _attached_vm_names(disk: Obj) -> list[str]:
    raw = status(disk).get("attachedToVirtualMachines")
    if not isinstance(raw, list):
        return []
    names = []
    for item in raw:
        entry = _dict(item)
        # mounted=false: attached in spec but not in use by a running domain.
        if entry.get("mounted") is False:
            continue
        name = _str(entry.get("name"))
        if name:
            names.append(name)
    return names


def _agent_ready(vm: Obj) -> bool:
    return any(c.type == "AgentReady" and c.status == "True" for c in conditions_from_resource(vm))


def _cannot_freeze(vm: Obj) -> bool:
    """The guest may be writing and cannot be frozen: a consistent snapshot would wait."""
    if phase(vm) not in _GUEST_RUNNING_PHASES:
        return False
    return not (phase(vm) in _FREEZABLE_PHASES and _agent_ready(vm))


def consistency_warning(disk: Obj, vms: list[Obj], required_consistency: bool) -> str | None:
    """The guide's rule: a consistent snapshot of a disk in use by a running VM needs
    qemu-guest-agent to freeze the file system; without it the snapshot waits."""
    if not required_consistency:
        return None
    attached = set(_attached_vm_names(disk))
    by_name = {_str(metadata(vm).get("name")): vm for vm in vms}
    for vm_name in sorted(attached):
        vm = by_name.get(vm_name)
        if vm is None or not _cannot_freeze(vm):
            continue
        disk_name = _str(metadata(disk).get("name"))
        return (
            f"VirtualDisk {disk_name!r} is attached to VirtualMachine {vm_name!r}, which is {phase(vm)} "
            "without a ready guest agent (qemu-guest-agent), so the file system cannot be frozen: " + _WAITS
        )
    return None


def vm_consistency_warning(vm: Obj, required_consistency: bool) -> str | None:
    """Why a consistent VirtualMachineSnapshot of ``vm`` cannot be taken now (None when it can).

    Only consistency is judged here: a VM that is not Running or Stopped (e.g. Migrating) also makes
    the platform wait (WaitingForTheVirtualMachine), consistent or not, and then applies this rule."""
    if not required_consistency or not _cannot_freeze(vm):
        return None
    vm_name = _str(metadata(vm).get("name"))
    return (
        f"VirtualMachine {vm_name!r} is {phase(vm)} without a ready guest agent (qemu-guest-agent), so its "
        "file systems cannot be frozen: " + _WAITS
    )


# VM phases in which a domain may hold its disks open: an export would read a disk under
# a running guest, so the platform keeps the DataExport not Ready (VirtualDiskInUse).
_LIVE_PHASES = frozenset({"Starting", "Running", "Degraded", "Stopping", "Migrating", "Pause"})


def export_blocker(disk: Obj, vms: list[Obj]) -> str | None:
    """The name of a running VM that uses the disk (an export must wait for it to stop),
    or None. ``vms``: the VMs the disk's status says it is attached to."""
    attached = set(_attached_vm_names(disk))
    for vm in vms:
        name = _str(metadata(vm).get("name"))
        if name in attached and phase(vm) in _LIVE_PHASES:
            return name
    return None
