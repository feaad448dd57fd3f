"""Whole-request validation: every field of a request checked, all violations at once."""

from __future__ import annotations

from service.cluster.kinds import ANNOTATION_ACTOR, LABEL_MANAGED_BY, LABEL_OPERATION_ID
from service.core import validation as v
from service.core.domain import AuditFilter
from service.core.errors import FieldViolation
from service.core.requests import (
    CreateDiskSnapshotRequest,
    ListAuditEventsRequest,
    ListOperationsRequest,
    ListRequest,
)

RESERVED_LABELS = (LABEL_MANAGED_BY, LABEL_OPERATION_ID)
RESERVED_ANNOTATIONS = (ANNOTATION_ACTOR,)
ACTOR_MAX = 256


def create_disk_snapshot(req: CreateDiskSnapshotRequest) -> None:
    found = v.namespace(req.namespace)
    found += v.dns1123_subdomain("virtual_disk_name", req.virtual_disk_name)
    found += v.dns1123_subdomain("name", req.name, required=False)
    found += v.generate_name("generate_name", req.generate_name)
    if req.name and req.generate_name:
        found.append(FieldViolation("generate_name", "must be empty when name is given"))
    if not isinstance(req.required_consistency, bool):
        found.append(FieldViolation("required_consistency", "must be a boolean"))
    found += v.label_map("labels", req.labels, reserved=RESERVED_LABELS)
    found += v.annotation_map("annotations", req.annotations, reserved=RESERVED_ANNOTATIONS)
    found += v.request_id(req.request_id)
    v.raise_if_any(found)



def object_key(namespace: str, name: str) -> None:
    v.raise_if_any(v.namespace(namespace) + v.dns1123_subdomain("name", name))


def watch_key(namespace: str, name: str) -> None:
    v.raise_if_any(v.namespace(namespace) + v.dns1123_subdomain("name", name, required=False))


def list_request(req: ListRequest) -> None:
    found = v.namespace(req.namespace)
    found += v.page_size(req.page_size)
    found += v.page_token(req.page_token)
    found += v.label_selector(req.label_selector)
    v.raise_if_any(found)


def list_operations(req: ListOperationsRequest) -> None:
    found = v.namespace(req.namespace) if req.namespace else []
    found += v.page_size(req.page_size)
    found += v.page_token(req.page_token)
    if len(req.actor) > ACTOR_MAX:
        found.append(FieldViolation("actor", f"must be no more than {ACTOR_MAX} characters"))
    v.raise_if_any(found)


def operation_id(value: str) -> None:
    v.raise_if_any(v.operation_id(value))


def watch_operation(value: str, after_version: int) -> None:
    found = v.operation_id(value)
    if isinstance(after_version, bool) or not isinstance(after_version, int) or after_version < 0:
        found.append(FieldViolation("after_version", "must be a non-negative integer"))
    v.raise_if_any(found)


def audit_filter(req: ListAuditEventsRequest) -> AuditFilter:
    """Check the request and turn it into the store's filter."""
    found = v.namespace(req.namespace) if req.namespace else []
    found += v.page_size(req.page_size)
    found += v.page_token(req.page_token)
    for field, value in (("actor", req.actor), ("resource", req.resource), ("action", req.action)):
        if len(value) > ACTOR_MAX:
            found.append(FieldViolation(field, f"must be no more than {ACTOR_MAX} characters"))
    since, bad_since = v.parse_rfc3339("since", req.since)
    until, bad_until = v.parse_rfc3339("until", req.until)
    found += bad_since + bad_until
    if since and until and since >= until:
        found.append(FieldViolation("until", "must be later than since"))
    v.raise_if_any(found)
    return AuditFilter(actor=req.actor or None, namespace=req.namespace or None, resource=req.resource or None,
                       action=req.action or None, outcome=req.outcome, since=since, until=until)
