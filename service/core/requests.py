"""Validated-on-entry request shapes the adapters build from protobuf or JSON.

Adapters only move fields across; every rule (names, ranges, existence) is checked in
the core so gRPC and REST answer the same way.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from service.core.domain import AuditOutcome, OperationState, OperationType


@dataclass(frozen=True)
class CreateDiskSnapshotRequest:
    namespace: str
    virtual_disk_name: str
    name: str = ""            # empty: the gateway generates one from generate_name
    generate_name: str = ""   # prefix; defaults to "<virtual_disk_name>-"
    required_consistency: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    annotations: dict[str, str] = field(default_factory=dict)
    request_id: str = ""      # idempotency key (REST: Idempotency-Key header)


@dataclass(frozen=True)
class DeleteDiskSnapshotRequest:
    namespace: str
    name: str
    request_id: str = ""


@dataclass(frozen=True)
class ListRequest:
    namespace: str
    page_size: int = 0        # 0: server default (50); capped at 500
    page_token: str = ""
    label_selector: str = ""


@dataclass(frozen=True)
class ListOperationsRequest:
    namespace: str = ""
    type: OperationType | None = None
    state: OperationState | None = None
    actor: str = ""
    page_size: int = 0
    page_token: str = ""


@dataclass(frozen=True)
class ListAuditEventsRequest:
    actor: str = ""
    namespace: str = ""
    resource: str = ""
    action: str = ""
    outcome: AuditOutcome | None = None
    since: str = ""           # RFC 3339
    until: str = ""           # RFC 3339
    page_size: int = 0
    page_token: str = ""
