"""The contract's shape: services, methods, streaming, and documentation on everything."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import grpc_tools
from google.protobuf import descriptor_pb2
from google.protobuf.descriptor import Descriptor, FileDescriptor, ServiceDescriptor

from service.api.grpc import SERVICE_NAMES
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    clone_service_pb2,
    common_pb2,
    export_service_pb2,
    operation_pb2,
    operation_service_pb2,
    restore_service_pb2,
    snapshot_service_pb2,
)
from service.core.domain import ApplyMode, AuditOutcome, KeepIpAddress, OperationState, OperationType

PROTO_ROOT = Path(__file__).resolve().parents[2] / "proto"
FILES: list[FileDescriptor] = [m.DESCRIPTOR for m in (
    common_pb2, operation_pb2, snapshot_service_pb2, restore_service_pb2, clone_service_pb2,
    export_service_pb2, operation_service_pb2, audit_service_pb2)]

EXPECTED_METHODS = {
    "dvp.snapshots.v1.SnapshotService": {
        "CreateDiskSnapshot", "GetDiskSnapshot", "ListDiskSnapshots", "DeleteDiskSnapshot", "WatchDiskSnapshots",
        "CreateVirtualMachineSnapshot", "GetVirtualMachineSnapshot", "ListVirtualMachineSnapshots",
        "DeleteVirtualMachineSnapshot", "WatchVirtualMachineSnapshots"},
    "dvp.snapshots.v1.RestoreService": {"RestoreDisk", "RestoreVirtualMachine"},
    "dvp.snapshots.v1.CloneService": {"CloneVirtualMachine", "CreateVirtualMachineFromSnapshot"},
    "dvp.snapshots.v1.ExportService": {"ExportDisk", "ExportDiskSnapshot"},
    "dvp.snapshots.v1.OperationService": {
        "GetOperation", "ListOperations", "WatchOperation", "GetOperationTimeline", "CancelOperation"},
    "dvp.snapshots.v1.AuditService": {"ListAuditEvents", "ExportAuditEvents", "VerifyAuditLog",
                                       "VerifyAuditLogStream"},
}
SERVER_STREAMING = {"WatchDiskSnapshots", "WatchVirtualMachineSnapshots", "ExportDisk", "ExportDiskSnapshot",
                    "WatchOperation", "ExportAuditEvents", "VerifyAuditLogStream"}
MUTATING = {"CreateDiskSnapshot", "DeleteDiskSnapshot", "CreateVirtualMachineSnapshot",
            "DeleteVirtualMachineSnapshot", "RestoreDisk", "RestoreVirtualMachine", "CloneVirtualMachine",
            "CreateVirtualMachineFromSnapshot", "CancelOperation"}
# An export is a stream, one operation each: a retry is a new export (resumed by range),
# so it takes no idempotency key.
EXPORTS = {"ExportDisk", "ExportDiskSnapshot"}


def _services() -> dict[str, ServiceDescriptor]:
    return {s.full_name: s for f in FILES for s in f.services_by_name.values()}


def test_every_service_and_method_of_the_spec_exists() -> None:
    services = _services()
    assert set(services) == set(EXPECTED_METHODS) == set(SERVICE_NAMES)
    for name, methods in EXPECTED_METHODS.items():
        service = services[name]
        assert {m.name for m in service.methods} == methods
        for method in service.methods:
            assert not method.client_streaming
            assert method.server_streaming is (method.name in SERVER_STREAMING), method.name
            if method.name in EXPORTS:
                assert "request_id" not in method.input_type.fields_by_name, method.name
            if method.name in MUTATING:
                assert "request_id" in method.input_type.fields_by_name, method.name
                if method.name not in SERVER_STREAMING:
                    assert method.output_type.full_name == "dvp.snapshots.v1.Operation", method.name


def test_domain_enums_have_wire_values_of_the_same_names() -> None:
    assert {v.name for v in operation_pb2.Operation.State.DESCRIPTOR.values} - {"STATE_UNSPECIFIED"} \
        == {s.value for s in OperationState}
    assert {v.name for v in operation_pb2.Operation.Type.DESCRIPTOR.values} - {"TYPE_UNSPECIFIED"} \
        == {t.value for t in OperationType}
    assert {v.name for v in audit_service_pb2.AuditEvent.Outcome.DESCRIPTOR.values} - {"OUTCOME_UNSPECIFIED"} \
        == {o.value for o in AuditOutcome}
    # These carry the platform's spelling as values ("DryRun", "Always"); the wire uses the member names.
    assert {v.name for v in common_pb2.ApplyMode.DESCRIPTOR.values} - {"APPLY_MODE_UNSPECIFIED"} \
        == {m.name for m in ApplyMode}
    keep = snapshot_service_pb2.VirtualMachineSnapshot.KeepIpAddress.DESCRIPTOR
    assert {v.name for v in keep.values} - {"KEEP_IP_ADDRESS_UNSPECIFIED"} == {k.name for k in KeepIpAddress}


def test_resource_result_carries_a_machine_readable_reason() -> None:
    field = operation_pb2.ResourceResult.DESCRIPTOR.fields_by_name["reason"]
    assert (field.number, field.type) == (6, field.TYPE_STRING)


def test_resource_result_carries_the_source_name_of_a_clone_name_map() -> None:
    field = operation_pb2.ResourceResult.DESCRIPTOR.fields_by_name["source_name"]
    assert (field.number, field.type, field.has_presence) == (7, field.TYPE_STRING, False)


def test_presence_is_explicit_where_the_default_is_not_zero() -> None:
    for message, field in ((snapshot_service_pb2.CreateDiskSnapshotRequest, "required_consistency"),
                           (snapshot_service_pb2.CreateVirtualMachineSnapshotRequest, "required_consistency"),
                           (snapshot_service_pb2.DiskSnapshot, "consistent"),
                           (export_service_pb2.ByteRange, "length"),
                           # a clone's prefix and suffix: unset is not the same as "" (which is refused)
                           (common_pb2.Customization, "name_prefix"),
                           (common_pb2.Customization, "name_suffix")):
        assert message.DESCRIPTOR.fields_by_name[field].has_presence, f"{message.__name__}.{field}"


def test_list_rpcs_paginate() -> None:
    for service in _services().values():
        for method in service.methods:
            if method.name.startswith("List"):
                assert {"page_size", "page_token"} <= set(method.input_type.fields_by_name), method.name
                assert "next_page_token" in method.output_type.fields_by_name, method.name


def _descriptor_set(tmp_path: Path) -> descriptor_pb2.FileDescriptorSet:
    out = tmp_path / "contract.pb"
    wkt = Path(grpc_tools.__file__).parent / "_proto"
    protos = sorted(str(p.relative_to(PROTO_ROOT)) for p in PROTO_ROOT.rglob("*.proto"))
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTO_ROOT}", f"-I{wkt}", "--include_source_info",
                    f"--descriptor_set_out={out}", *protos], check=True, cwd=PROTO_ROOT, timeout=60)
    return descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())


def _undocumented(file: descriptor_pb2.FileDescriptorProto) -> list[str]:
    """Every service, method, message, field, enum and enum value without a leading comment."""
    documented = {tuple(loc.path) for loc in file.source_code_info.location if loc.leading_comments.strip()}
    missing: list[str] = []

    def check(path: tuple[int, ...], name: str) -> None:
        if path not in documented:
            missing.append(f"{file.name}: {name}")

    def enum(path: tuple[int, ...], desc: descriptor_pb2.EnumDescriptorProto, scope: str) -> None:
        check(path, f"{scope}{desc.name}")
        for i, value in enumerate(desc.value):
            check((*path, 2, i), f"{scope}{desc.name}.{value.name}")

    def message(path: tuple[int, ...], desc: descriptor_pb2.DescriptorProto, scope: str) -> None:
        name = f"{scope}{desc.name}"
        check(path, name)
        for i, field in enumerate(desc.field):
            check((*path, 2, i), f"{name}.{field.name}")
        for i, nested in enumerate(desc.nested_type):
            if not nested.options.map_entry:
                message((*path, 3, i), nested, f"{name}.")
        for i, nested_enum in enumerate(desc.enum_type):
            enum((*path, 4, i), nested_enum, f"{name}.")
        for i, oneof in enumerate(desc.oneof_decl):
            if not oneof.name.startswith("_"):  # synthetic oneofs of proto3 `optional`
                check((*path, 8, i), f"{name}.{oneof.name}")

    for i, msg in enumerate(file.message_type):
        message((4, i), msg, "")
    for i, top_enum in enumerate(file.enum_type):
        enum((5, i), top_enum, "")
    for i, service in enumerate(file.service):
        check((6, i), service.name)
        for j, method in enumerate(service.method):
            check((6, i, 2, j), f"{service.name}.{method.name}")
    return missing


def test_every_element_of_the_contract_is_documented(tmp_path: Path) -> None:
    files = [f for f in _descriptor_set(tmp_path).file if f.package == "dvp.snapshots.v1"]
    assert len(files) == len(FILES)
    missing = [m for f in files for m in _undocumented(f)]
    assert missing == []


def test_every_message_has_fields() -> None:
    def walk(message: Descriptor) -> None:
        assert message.fields or message.name.endswith("Request"), message.full_name
        for nested in message.nested_types:
            walk(nested)

    for file in FILES:
        for message in file.message_types_by_name.values():
            walk(message)
