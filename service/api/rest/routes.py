"""The route table, mirroring openapi.yaml.

Every contract call is one route naming its ``service.core.contract.Method``: the route's
name is the method's name (the REST operationId and the audit action), so the
authentication middleware knows which action to audit.
Names and ids are matched by ``[^/:]+`` so an AIP-136 custom method (``{name}:verb``)
never falls into the plain ``{name}`` route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, NamedTuple

from aiohttp import web

from service.api.rest.handlers import (
    audit,
    clone,
    disk_snapshots,
    export,
    health,
    operations,
    restore,
    vm_snapshots,
)
from service.core import contract

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NS = "/v1/namespaces/{namespace:[^/:]+}"
NAME = "{name:[^/:]+}"
OP_ID = "{id:[^/:]+}"


class ContractRoute(NamedTuple):
    http_method: str
    path: str
    method: contract.Method[Any, Any]
    handler: Handler


C = ContractRoute
CONTRACT_ROUTES: tuple[ContractRoute, ...] = (
    C("GET", f"{NS}/disk-snapshots", contract.LIST_DISK_SNAPSHOTS, disk_snapshots.list_disk_snapshots),
    C("POST", f"{NS}/disk-snapshots", contract.CREATE_DISK_SNAPSHOT, disk_snapshots.create_disk_snapshot),
    C("GET", f"{NS}/disk-snapshots:watch", contract.WATCH_DISK_SNAPSHOTS, disk_snapshots.watch_disk_snapshots),
    C("GET", f"{NS}/disk-snapshots/{NAME}", contract.GET_DISK_SNAPSHOT, disk_snapshots.get_disk_snapshot),
    C("DELETE", f"{NS}/disk-snapshots/{NAME}", contract.DELETE_DISK_SNAPSHOT, disk_snapshots.delete_disk_snapshot),
    C("GET", f"{NS}/disk-snapshots/{NAME}:export", contract.EXPORT_DISK_SNAPSHOT, export.export_disk_snapshot),
    C("GET", f"{NS}/vm-snapshots", contract.LIST_VM_SNAPSHOTS, vm_snapshots.list_vm_snapshots),
    C("POST", f"{NS}/vm-snapshots", contract.CREATE_VM_SNAPSHOT, vm_snapshots.create_vm_snapshot),
    C("GET", f"{NS}/vm-snapshots:watch", contract.WATCH_VM_SNAPSHOTS, vm_snapshots.watch_vm_snapshots),
    C("GET", f"{NS}/vm-snapshots/{NAME}", contract.GET_VM_SNAPSHOT, vm_snapshots.get_vm_snapshot),
    C("DELETE", f"{NS}/vm-snapshots/{NAME}", contract.DELETE_VM_SNAPSHOT, vm_snapshots.delete_vm_snapshot),
    C("POST", f"{NS}/vm-snapshots/{NAME}:clone", contract.CREATE_VM_FROM_SNAPSHOT,
      clone.create_vm_from_snapshot),
    C("POST", f"{NS}/disks:restore", contract.RESTORE_DISK, restore.restore_disk),
    C("GET", f"{NS}/disks/{NAME}:export", contract.EXPORT_DISK, export.export_disk),
    C("POST", f"{NS}/virtual-machines/{NAME}:restore", contract.RESTORE_VM, restore.restore_vm),
    C("POST", f"{NS}/virtual-machines/{NAME}:clone", contract.CLONE_VM, clone.clone_vm),
    C("GET", "/v1/operations", contract.LIST_OPERATIONS, operations.list_operations),
    C("GET", f"/v1/operations/{OP_ID}", contract.GET_OPERATION, operations.get_operation),
    C("GET", f"/v1/operations/{OP_ID}/timeline", contract.GET_OPERATION_TIMELINE, operations.get_operation_timeline),
    C("GET", f"/v1/operations/{OP_ID}:watch", contract.WATCH_OPERATION, operations.watch_operation),
    C("POST", f"/v1/operations/{OP_ID}:cancel", contract.CANCEL_OPERATION, operations.cancel_operation),
    C("GET", "/v1/audit/events", contract.LIST_AUDIT_EVENTS, audit.list_audit_events),
    C("GET", "/v1/audit/events:export", contract.EXPORT_AUDIT_EVENTS, audit.export_audit_events),
    C("POST", "/v1/audit:verify", contract.VERIFY_AUDIT_LOG, audit.verify_audit_log),
    C("POST", "/v1/audit:verifyStream", contract.VERIFY_AUDIT_LOG_STREAM, audit.verify_audit_log_stream),
)

# Not contract methods: unauthenticated probes and the document itself.
PLAIN_ROUTES: tuple[tuple[str, str, str, Handler], ...] = (
    ("GET", "/healthz", "Healthz", health.healthz),
    ("GET", "/readyz", "Readyz", health.readyz),
    ("GET", "/openapi.yaml", "GetOpenApi", health.openapi_document),
)

# Every served route as (HTTP method, path, operationId, handler).
ROUTES: tuple[tuple[str, str, str, Handler], ...] = (
    *((r.http_method, r.path, r.method.name, r.handler) for r in CONTRACT_ROUTES),
    *PLAIN_ROUTES,
)


def add_routes(router: web.UrlDispatcher) -> None:
    for http_method, path, operation_id, handler in ROUTES:
        # One named resource per operation: the name is the operationId the middleware audits.
        router.add_route(http_method, path, handler, name=operation_id)
