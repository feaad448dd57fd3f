"""The platform's clone naming rule, as the gateway applies it (pure).

A clone (VirtualMachineOperation Clone, VirtualMachineSnapshotOperation
CreateVirtualMachine) names each object it creates ``prefix + base + suffix``, where
``base`` is the ``nameReplacement`` whose ``from`` matches the object (kind and name; a
replacement without a kind matches any kind), else the object's own name. The embedded
cluster's controllers apply the same rule; ``tests/test_naming_rule.py`` runs one table
through both.
"""

from __future__ import annotations

from collections.abc import Iterable


def clone_name(kind: str, name: str, *, prefix: str, suffix: str,
               replacements: Iterable[tuple[str, str, str]]) -> str:
    """The name the clone of ``kind``/``name`` gets; ``replacements`` are (kind, name, to)."""
    exact = any_kind = None
    for from_kind, from_name, to in replacements:
        if from_name != name:
            continue
        if from_kind == kind and exact is None:
            exact = to
        elif not from_kind and any_kind is None:
            any_kind = to
    base = exact or any_kind or name
    return f"{prefix}{base}{suffix}"
