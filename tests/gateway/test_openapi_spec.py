"""openapi.yaml itself: a valid OpenAPI 3.1 document that agrees with the routes and the domain."""

from __future__ import annotations

import json
import re

import pytest
from multidict import CIMultiDict
from openapi_spec_validator import validate
from openapi_spec_validator.readers import read_from_filename

from service.api.rest import wire
from service.api.rest.handlers import clone, disk_snapshots, operations, restore, vm_snapshots
from service.api.rest.routes import CONTRACT_ROUTES, ROUTES
from service.core import contract
from service.core.domain import (
    ApplyMode,
    AuditOutcome,
    KeepIpAddress,
    Operation,
    OperationState,
    OperationType,
    ResourceRef,
    ResourceResult,
    VirtualMachineSnapshot,
)
from service.core.errors import Code
from tests.support.openapi import SPEC_PATH, api_spec

HTTP_METHODS = ("get", "post", "put", "patch", "delete")


def spec_operations() -> dict[tuple[str, str], str]:
    document = api_spec().document
    return {(method.upper(), path): item[method]["operationId"]
            for path, item in document["paths"].items() for method in HTTP_METHODS if method in item}


def test_the_document_is_valid_openapi_3_1() -> None:
    document, _ = read_from_filename(str(SPEC_PATH))
    validate(document)
    assert document["openapi"].startswith("3.1")


def test_routes_and_document_describe_the_same_operations() -> None:
    served = {(method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)): operation_id
              for method, path, operation_id, _ in ROUTES}
    assert served == spec_operations()


def test_operation_ids_are_unique() -> None:
    ids = list(spec_operations().values())
    assert len(ids) == len(set(ids))


def test_every_api_call_describes_its_errors_as_problems() -> None:
    document = api_spec().document
    for path, item in document["paths"].items():
        if not path.startswith("/v1/"):
            continue
        for method in HTTP_METHODS:
            if method not in item:
                continue
            responses = item[method]["responses"]
            assert {"401", "403", "500", "503"} <= set(responses), (method, path)
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    ref = response["$ref"].rsplit("/", 1)[1]
                    content = document["components"]["responses"][ref]["content"]
                    assert list(content) == ["application/problem+json"], (method, path, status)


@pytest.mark.parametrize(("schema", "values"), [
    ("OperationType", {t.value for t in OperationType}),
    ("OperationState", {s.value for s in OperationState}),
    ("AuditOutcome", {o.value for o in AuditOutcome}),
    ("ApplyMode", {m.value for m in ApplyMode}),
    ("KeepIPAddress", {k.value for k in KeepIpAddress}),
])
def test_enums_match_the_domain(schema: str, values: set[str]) -> None:
    assert set(api_spec().document["components"]["schemas"][schema]["enum"]) == values


def test_problem_codes_match_the_error_model() -> None:
    problem = api_spec().document["components"]["schemas"]["Problem"]
    assert set(problem["properties"]["code"]["enum"]) == {c.value for c in Code}


def test_the_validator_rejects_responses_the_document_does_not_describe() -> None:
    spec = api_spec()
    url = "http://127.0.0.1:1/v1/namespaces/demo/disk-snapshots"
    good = (b'{"type": "t", "title": "Bad Request", "status": 400, "detail": "d", "code": "INVALID_ARGUMENT",'
            b' "reason": "R", "requestId": "r"}')
    problem = CIMultiDict({"Content-Type": "application/problem+json", "X-Request-Id": "r"})
    spec.validate_exchange("POST", url, {}, 400, problem, good)
    with pytest.raises(Exception, match=r"(?i)valid"):
        spec.validate_exchange("POST", url, {}, 400, problem, b'{"status": 400}')
    with pytest.raises(Exception, match=r"(?i)status|response"):
        spec.validate_exchange("POST", url, {}, 418, problem, good)
    op = Operation(id="op-1", type=OperationType.CREATE_DISK_SNAPSHOT, namespace="demo",
                   target=ResourceRef("virtualization.deckhouse.io/v1alpha2", "VirtualDisk", "d", "demo"),
                   actor="alice", request_hash="h")
    body = json.dumps(wire.operation(op)).encode()
    accepted = CIMultiDict({"Content-Type": "application/json", "X-Request-Id": "r"})
    with pytest.raises(Exception, match=r"(?i)location|header"):
        spec.validate_exchange("POST", url, {}, 202, accepted, body)
    accepted["Location"] = "/v1/operations/op-1"
    spec.validate_exchange("POST", url, {}, 202, accepted, body)


def test_every_contract_method_is_one_operation_of_the_document() -> None:
    assert sorted(spec_operations().values()) == sorted([m.name for m in contract.METHODS]
                                                        + ["Healthz", "Readyz", "GetOpenApi"])
    served = {(method, re.sub(r"\{(\w+):[^}]+\}", r"{\1}", path)): route.name
              for method, path, route, _ in CONTRACT_ROUTES}
    assert {key: spec_operations()[key] for key in served} == served


def _placeholders(node: object, where: str = "") -> list[str]:
    """Object schemas that say nothing about their members."""
    found: list[str] = []
    if isinstance(node, dict):
        if node.get("type") == "object" and "properties" not in node and "additionalProperties" not in node:
            found.append(where)
        for key, value in node.items():
            found += _placeholders(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _placeholders(value, f"{where}/{i}")
    return found


def test_no_schema_is_a_placeholder() -> None:
    assert _placeholders(api_spec().document) == []


@pytest.mark.parametrize(("operation_id", "schema", "fields"), [
    ("CreateDiskSnapshot", "CreateDiskSnapshotBody", disk_snapshots.CREATE_FIELDS),
    ("CreateVirtualMachineSnapshot", "CreateVirtualMachineSnapshotBody", vm_snapshots.CREATE_FIELDS),
    ("RestoreDisk", "RestoreDiskBody", restore.RESTORE_DISK_FIELDS),
    ("RestoreVirtualMachine", "RestoreVirtualMachineBody", restore.RESTORE_VM_FIELDS),
    ("CloneVirtualMachine", "CloneVirtualMachineBody", clone.CLONE_FIELDS),
    ("CreateVirtualMachineFromSnapshot", "CreateVirtualMachineFromSnapshotBody", clone.CLONE_FIELDS),
    ("CancelOperation", "CancelOperationBody", operations.CANCEL_FIELDS),
])
def test_request_bodies_are_the_fields_the_handlers_accept(operation_id: str, schema: str,
                                                          fields: tuple[str, ...]) -> None:
    document = api_spec().document
    body = document["components"]["schemas"][schema]
    assert body["additionalProperties"] is False  # the handler rejects unknown fields
    assert set(body["properties"]) == set(fields)
    (operation,) = [item[method] for item in document["paths"].values() for method in HTTP_METHODS
                    if method in item and item[method]["operationId"] == operation_id]
    ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    assert ref == f"#/components/schemas/{schema}"
    assert operation["requestBody"]["required"] is (operation_id != "CancelOperation")


def test_wire_shapes_are_the_schemas_required_members() -> None:
    schemas = api_spec().document["components"]["schemas"]
    snapshot = wire.vm_snapshot(VirtualMachineSnapshot("demo", "s", "vm", True))
    assert set(schemas["VirtualMachineSnapshot"]["required"]) == set(snapshot)
    api_spec().validate_schema("VirtualMachineSnapshot", snapshot)
    result = wire.resource_result(ResourceResult("v1", "VirtualDisk", "d", "Conflict", "in use", "AttachedToAnotherVM"))
    assert set(schemas["ResourceResult"]["required"]) == set(result)
    api_spec().validate_schema("ResourceResult", result)


def test_clone_body_members_are_the_fields_the_handler_accepts() -> None:
    schemas = api_spec().document["components"]["schemas"]
    for body in ("CloneVirtualMachineBody", "CreateVirtualMachineFromSnapshotBody"):
        assert schemas[body]["required"] == ["mode"]
        assert schemas[body]["properties"]["nameReplacements"]["items"] == {
            "$ref": "#/components/schemas/NameReplacement"}
        assert schemas[body]["properties"]["customization"] == {"$ref": "#/components/schemas/Customization"}
    replacement = schemas["NameReplacement"]
    assert replacement["additionalProperties"] is False
    assert set(replacement["properties"]) == set(clone.NAME_REPLACEMENT_FIELDS)
    assert replacement["properties"]["from"]["additionalProperties"] is False
    assert set(replacement["properties"]["from"]["properties"]) == set(clone.NAME_REPLACEMENT_SOURCE_FIELDS)
    customization = schemas["Customization"]
    assert customization["additionalProperties"] is False
    assert set(customization["properties"]) == set(clone.CUSTOMIZATION_FIELDS)


@pytest.mark.parametrize("operation_id", ["CloneVirtualMachine", "CreateVirtualMachineFromSnapshot"])
def test_clone_calls_answer_like_the_vm_restore(operation_id: str) -> None:
    document = api_spec().document
    by_id = {item[method]["operationId"]: item[method] for item in document["paths"].values()
             for method in HTTP_METHODS if method in item}
    assert by_id[operation_id]["responses"] == by_id["RestoreVirtualMachine"]["responses"]
    assert "501" not in by_id[operation_id]["responses"]


def test_a_name_map_result_validates() -> None:
    result = wire.resource_result(ResourceResult("v1", "VirtualDisk", "copy-root", "InProgress",
                                                 source_name="root"))
    assert result["sourceName"] == "root"
    api_spec().validate_schema("ResourceResult", result)
