"""The route table: (method, path, operationId, handler), mirroring openapi.yaml.

The operationId names the resource, so the authentication middleware knows which action
to audit. Names and ids are matched by ``[^/:]+`` so an AIP-136 custom method
(``{name}:verb``) never falls into the plain ``{name}`` route.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from service.api.rest.handlers import audit, disk_snapshots, health, operations
from service.api.rest.handlers.unimplemented import unimplemented

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

NS = "/v1/namespaces/{namespace:[^/:]+}"
NAME = "{name:[^/:]+}"
OP_ID = "{id:[^/:]+}"

ROUTES: tuple[tuple[str, str, str, Handler], ...] = (
    ("GET", f"{NS}/disk-snapshots", "ListDiskSnapshots", disk_snapshots.list_disk_snapshots),
    ("POST", f"{NS}/disk-snapshots", "CreateDiskSnapshot", disk_snapshots.create_disk_snapshot),
    ("GET", f"{NS}/disk-snapshots:watch", "WatchDiskSnapshots", disk_snapshots.watch_disk_snapshots),
    ("GET", f"{NS}/disk-snapshots/{NAME}", "GetDiskSnapshot", disk_snapshots.get_disk_snapshot),
    ("DELETE", f"{NS}/disk-snapshots/{NAME}", "DeleteDiskSnapshot", disk_snapshots.delete_disk_snapshot),
    ("GET", f"{NS}/disk-snapshots/{NAME}:export", "ExportDiskSnapshot", unimplemented),
    ("GET", f"{NS}/vm-snapshots", "ListVirtualMachineSnapshots", unimplemented),
    ("POST", f"{NS}/vm-snapshots", "CreateVirtualMachineSnapshot", unimplemented),
    ("GET", f"{NS}/vm-snapshots:watch", "WatchVirtualMachineSnapshots", unimplemented),
    ("GET", f"{NS}/vm-snapshots/{NAME}", "GetVirtualMachineSnapshot", unimplemented),
    ("DELETE", f"{NS}/vm-snapshots/{NAME}", "DeleteVirtualMachineSnapshot", unimplemented),
    ("POST", f"{NS}/vm-snapshots/{NAME}:clone", "CreateVirtualMachineFromSnapshot", unimplemented),
    ("POST", f"{NS}/disks:restore", "RestoreDisk", unimplemented),
    ("GET", f"{NS}/disks/{NAME}:export", "ExportDisk", unimplemented),
    ("POST", f"{NS}/virtual-machines/{NAME}:restore", "RestoreVirtualMachine", unimplemented),
    ("POST", f"{NS}/virtual-machines/{NAME}:clone", "CloneVirtualMachine", unimplemented),
    ("GET", "/v1/operations", "ListOperations", operations.list_operations),
    ("GET", f"/v1/operations/{OP_ID}", "GetOperation", operations.get_operation),
    ("GET", f"/v1/operations/{OP_ID}/timeline", "GetOperationTimeline", operations.get_operation_timeline),
    ("GET", f"/v1/operations/{OP_ID}:watch", "WatchOperation", operations.watch_operation),
    ("POST", f"/v1/operations/{OP_ID}:cancel", "CancelOperation", unimplemented),
    ("GET", "/v1/audit/events", "ListAuditEvents", audit.list_audit_events),
    ("POST", "/v1/audit:verify", "VerifyAuditLog", audit.verify_audit_log),
    ("GET", "/healthz", "Healthz", health.healthz),
    ("GET", "/readyz", "Readyz", health.readyz),
    ("GET", "/openapi.yaml", "GetOpenApi", health.openapi_document),
)


def add_routes(router: web.UrlDispatcher) -> None:
    for method, path, operation_id, handler in ROUTES:
        # One named resource per operation: the name is the operationId the middleware audits.
        router.add_route(method, path, handler, name=operation_id)
