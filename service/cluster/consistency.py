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


def consistency_warning(disk: Obj, vms: list[Obj], required_consistency: bool) -> str | None:
    """The guide's rule: a consistent snapshot of a disk in use by a running VM needs
    qemu-guest-agent to freeze the file system; without it the snapshot waits."""
    if not required_consistency:
        return None
    attached = set(_attached_vm_names(disk))
    by_name = {_str(metadata(vm).get("name")): vm for vm in vms}
    for vm_name in sorted(attached):
        vm = by_name.get(vm_name)
        if vm is None or phase(vm) not in _GUEST_RUNNING_PHASES or _agent_ready(vm):
            continue
        disk_name = _str(metadata(disk).get("name"))
        return (
            f"VirtualDisk {disk_name!r} is attached to VirtualMachine {vm_name!r}, which is {phase(vm)} "
            "without a ready guest agent (qemu-guest-agent), so the file system cannot be frozen: "
            "the snapshot will wait in Pending (PotentiallyInconsistent) until the VM is stopped or the "
            "agent becomes available. Set required_consistency=false to take a possibly inconsistent "
            "snapshot now."
        )
    return None
