"""/v1/namespaces/{namespace}/virtual-machines/{name}:clone and .../vm-snapshots/{name}:clone"""

from __future__ import annotations

from aiohttp import web

from service.api.rest.body import json_object
from service.api.rest.context import context, gateway
from service.api.rest.handlers.common import idempotency_key, operation_accepted
from service.api.rest.parsing import Body, Query
from service.core import contract
from service.core.domain import ApplyMode
from service.core.requests import CloneOptions, CloneVmRequest, CreateVmFromSnapshotRequest, NameReplacement

# CloneVirtualMachineBody and CreateVirtualMachineFromSnapshotBody have the same members.
CLONE_FIELDS = ("mode", "nameReplacements", "customization")
NAME_REPLACEMENT_FIELDS = ("from", "to")
NAME_REPLACEMENT_SOURCE_FIELDS = ("kind", "name")
CUSTOMIZATION_FIELDS = ("namePrefix", "nameSuffix")


def clone_options(body: Body) -> CloneOptions:
    """The naming rules of a clone body. Only what cannot be converted is a violation
    here: an absent mode is None and an absent name or ``to`` is empty, which the core
    refuses (as it does on gRPC); an absent prefix is None, a present one is kept even
    when empty (the core checks 1-59 characters)."""
    replacements: list[NameReplacement] = []
    for item in body.nested_array("nameReplacements", NAME_REPLACEMENT_FIELDS):
        source = item.nested("from", NAME_REPLACEMENT_SOURCE_FIELDS)
        replacements.append(NameReplacement(from_name=source.string("name"), to=item.string("to"),
                                            from_kind=source.string("kind")))
    custom = body.nested("customization", CUSTOMIZATION_FIELDS)
    return CloneOptions(mode=body.optional_enum("mode", ApplyMode), name_replacements=tuple(replacements),
                        name_prefix=custom.optional_string("namePrefix"),
                        name_suffix=custom.optional_string("nameSuffix"))


async def clone_vm(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    body = Body(await json_object(request), CLONE_FIELDS)
    req = CloneVmRequest(
        namespace=request.match_info["namespace"],
        virtual_machine_name=request.match_info["name"],
        options=clone_options(body),
        request_id=idempotency_key(request),
    )
    body.check()
    return operation_accepted(await gateway(request).call(context(request), contract.CLONE_VM, req))


async def create_vm_from_snapshot(request: web.Request) -> web.StreamResponse:
    Query(request.query, ())
    body = Body(await json_object(request), CLONE_FIELDS)
    req = CreateVmFromSnapshotRequest(
        namespace=request.match_info["namespace"],
        virtual_machine_snapshot_name=request.match_info["name"],
        options=clone_options(body),
        request_id=idempotency_key(request),
    )
    body.check()
    return operation_accepted(await gateway(request).call(context(request), contract.CREATE_VM_FROM_SNAPSHOT, req))
