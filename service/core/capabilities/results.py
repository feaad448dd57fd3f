"""Per-resource results of the operations that touch many objects (restore, clone): what
the gateway found before writing, merged with what the platform reports in
``status.resources`` as it works."""

from __future__ import annotations

from typing import Any

from service.cluster.translate import results_from_resource
from service.core.domain import Operation, ResourceResult
from service.core.op_updates import Change, Mutation
from service.core.ports import ResourceKind
from service.core.progress import follow_resource

CONFLICT = "Conflict"
# Statuses of what the gateway found itself: a platform status other than Failed does not
# replace them (a conflict, an image kept Pending or Dropped say more than InProgress).
GATEWAY_FINDINGS = frozenset({CONFLICT, "Pending", "Dropped"})


def finding(api_version: str, kind: str, name: str, reason: str, message: str, *, status: str = CONFLICT,
            source_name: str = "") -> ResourceResult:
    return ResourceResult(api_version, kind, name, status, message, reason, source_name)


def merge_results(ours: list[ResourceResult], platform: list[ResourceResult]) -> list[ResourceResult]:
    """One entry per object: the platform's status wins (but not over our findings, unless
    it failed); our reason, message and source name fill what it lacks."""
    merged: dict[tuple[str, str], ResourceResult] = {(r.kind, r.name): r for r in ours}
    for item in platform:
        key = (item.kind, item.name)
        mine = merged.get(key)
        if mine is None:
            merged[key] = item
        elif mine.status in GATEWAY_FINDINGS and item.status != "Failed":
            continue
        else:
            merged[key] = ResourceResult(item.api_version or mine.api_version, item.kind, item.name, item.status,
                                         item.message or mine.message, item.reason or mine.reason,
                                         item.source_name or mine.source_name)
    return list(merged.values())


def follow_with_results(kind: ResourceKind, obj: dict[str, Any] | None) -> Mutation:
    """``follow_resource``, plus the platform's ``status.resources`` merged into the results."""
    follow = follow_resource(kind, obj, deleting=False)

    def mutate(op: Operation) -> Change | None:
        change = follow(op)
        merged = merge_results(op.results, results_from_resource(obj)) if obj is not None else op.results
        if merged == op.results:
            return change
        op.results = merged
        return change or Change("Resources", "per-resource results updated")

    return mutate
