"""Capabilities: one module each, one shape (``shape.py``), registered once here.

Adding a capability: its module (checks, preconditions, the resource it writes, how
its status maps to the operation, its use cases), its line below, its contract entry
(``service.core.contract``), its proto and openapi entries and the two doors' bindings.
"""

from __future__ import annotations

from service.core.capabilities import (
    audit_log,
    clones,
    disk_snapshots,
    exports,
    operations,
    restore_disk,
    restore_vm,
    vm_snapshots,
)
from service.core.capabilities.registry import Deps, Registry

MODULES = (disk_snapshots, vm_snapshots, restore_disk, restore_vm, clones, exports, operations, audit_log)


def build_registry(deps: Deps) -> Registry:
    registry = Registry()
    for module in MODULES:
        module.register(registry, deps)
    return registry
