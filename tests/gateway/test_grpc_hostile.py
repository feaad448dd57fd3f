"""The gRPC door against hostile requests, over a real channel to the whole gateway.

- Bytes that are not the method's request message, on every method of every service:
  INVALID_ARGUMENT (ErrorInfo, BadRequest, RequestInfo) before any token is checked,
  one log line without a traceback, one audit event by the anonymous caller (health and
  reflection: the same answer, never audited).
- An enum number the contract does not define, in every enum field of every request
  (streaming ones too): INVALID_ARGUMENT naming the field, audited.
- Oversized, extreme or contradictory content: a caller's error code, never UNKNOWN or
  INTERNAL.

Methods and fields come from the generated descriptors, so a new RPC or field is covered
without touching this file. The helpers here are shared with the other test_grpc_hostile*
modules.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import descriptor_pool, message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.descriptor_pb2 import EnumValueDescriptorProto, FieldDescriptorProto, FileDescriptorProto
from google.protobuf.message import DecodeError, Message
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection
from grpc_status import rpc_status

from service.api.grpc import start_grpc_server
from service.api.grpc.convert import reject_unknown_enums
from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    audit_service_pb2_grpc,
    clone_service_pb2,
    common_pb2,
    export_service_pb2,
    operation_service_pb2,
    restore_service_pb2,
    snapshot_service_pb2,
)
from service.core.audit import ANONYMOUS
from service.core.errors import ERROR_DOMAIN, ApiError
from tests.gateway.test_grpc_adapter import FakeGateway
from tests.support.gateway import GatewayServer

StatusCode = grpc.StatusCode
MODULES = (snapshot_service_pb2, restore_service_pb2, clone_service_pb2, export_service_pb2,
           operation_service_pb2, audit_service_pb2)
RPCS: list[MethodDescriptor] = [method for module in MODULES for service in module.DESCRIPTOR.services_by_name.values()
                                for method in service.methods]
# What a hostile request may get: the caller's own fault (or success), never the gateway's.
CALLER_CODES = {StatusCode.OK, StatusCode.INVALID_ARGUMENT, StatusCode.NOT_FOUND, StatusCode.ALREADY_EXISTS,
                StatusCode.PERMISSION_DENIED, StatusCode.UNAUTHENTICATED, StatusCode.FAILED_PRECONDITION,
                StatusCode.OUT_OF_RANGE, StatusCode.RESOURCE_EXHAUSTED, StatusCode.ABORTED}
NEVER = {StatusCode.UNKNOWN, StatusCode.INTERNAL, StatusCode.DATA_LOSS}
# Not a message of any type: a truncated varint, wire types 7 and 6, a length past the end,
# an unterminated group, a bad varint of 11 bytes.
UNDECODABLE = (b"\xff", b"\x0f", b"\x0e\x01", b"\x0a\xff\xff\xff\x7f", b"\x0b", b"\x08" + b"\xff" * 10 + b"\x01")
# How long a stream may stay silent before we take it as live and cancel it.
FIRST_ITEM_TIMEOUT = 0.5
# A gRPC deadline per call: a hung call fails DEADLINE_EXCEEDED instead of the test hanging.
CALL_DEADLINE = 20.0


def request_class(rpc: MethodDescriptor) -> type[Message]:
    return message_factory.GetMessageClass(rpc.input_type)


def path_of(rpc: MethodDescriptor) -> str:
    return f"/{rpc.containing_service.full_name}/{rpc.name}"


def bearer(token: str) -> tuple[tuple[str, str], ...]:
    return (("authorization", f"Bearer {token}"),)


@dataclass
class Outcome:
    code: grpc.StatusCode
    error: grpc.aio.AioRpcError | None = None

    def details(self) -> dict[str, Message]:
        """The google.rpc details of the error, by type name."""
        assert self.error is not None
        status = rpc_status.from_call(self.error)
        assert status is not None, "no google.rpc.Status in the trailers"
        found: dict[str, Message] = {}
        for packed in status.details:
            for kind in (error_details_pb2.ErrorInfo, error_details_pb2.BadRequest, error_details_pb2.RequestInfo):
                if packed.Is(kind.DESCRIPTOR):
                    detail = kind()
                    packed.Unpack(detail)
                    found[kind.DESCRIPTOR.name] = detail
        return found

    def violations(self) -> dict[str, str]:
        bad = self.details().get("BadRequest")
        assert isinstance(bad, error_details_pb2.BadRequest), self.error
        return {v.field: v.description for v in bad.field_violations}


async def call_raw(channel: grpc.aio.Channel, rpc: MethodDescriptor, payload: bytes,
                   metadata: tuple[tuple[str, str], ...] = ()) -> Outcome:
    """Send ``payload`` as the request bytes (identity serializers). A stream is read up to
    its first item or error; one silent for FIRST_ITEM_TIMEOUT counts as live (OK)."""
    if not rpc.server_streaming:
        try:
            await channel.unary_unary(path_of(rpc))(payload, metadata=metadata, timeout=CALL_DEADLINE)
        except grpc.aio.AioRpcError as err:
            return Outcome(err.code(), err)
        return Outcome(StatusCode.OK)
    call = channel.unary_stream(path_of(rpc))(payload, metadata=metadata, timeout=CALL_DEADLINE)
    try:
        await asyncio.wait_for(call.read(), FIRST_ITEM_TIMEOUT)
    except grpc.aio.AioRpcError as err:
        return Outcome(err.code(), err)
    except TimeoutError:
        pass
    finally:
        call.cancel()
    return Outcome(StatusCode.OK)


async def call_message(channel: grpc.aio.Channel, rpc: MethodDescriptor, request: Message,
                       metadata: tuple[tuple[str, str], ...] = ()) -> Outcome:
    return await call_raw(channel, rpc, request.SerializeToString(), metadata)


def rpc_named(name: str) -> MethodDescriptor:
    (rpc,) = [r for r in RPCS if r.name == name]
    return rpc


@pytest.fixture
async def channel(gateway_server: GatewayServer) -> AsyncIterator[grpc.aio.Channel]:
    async with grpc.aio.insecure_channel(gateway_server.grpc_target) as opened:
        yield opened


async def audit_events(channel: grpc.aio.Channel, server: GatewayServer,
                       **query: Any) -> list[audit_service_pb2.AuditEvent]:
    stub = audit_service_pb2_grpc.AuditServiceStub(channel)
    events: list[audit_service_pb2.AuditEvent] = []
    token = ""
    while True:
        page = await stub.ListAuditEvents(audit_service_pb2.ListAuditEventsRequest(
            page_size=100, page_token=token, **query), metadata=bearer(server.token))
        events.extend(page.audit_events)
        token = page.next_page_token
        if not token:
            return events


# ---------------------------------------------------------------- undecodable bytes


def test_the_undecodable_samples_fail_to_decode_as_every_request() -> None:
    for rpc in RPCS:
        for payload in UNDECODABLE:
            with pytest.raises(DecodeError):
                request_class(rpc).FromString(payload)


async def test_undecodable_bytes_are_refused_before_authentication_on_every_method(
        gateway_server: GatewayServer, channel: grpc.aio.Channel, caplog: pytest.LogCaptureFixture) -> None:
    sent: dict[str, str] = {}
    with caplog.at_level(logging.INFO):
        for credentials, metadata in (("none", ()), ("wrong", bearer("not-a-token-at-all"))):
            for index, rpc in enumerate(RPCS):
                request_id = f"undecodable-{credentials}-{index}"
                outcome = await call_raw(channel, rpc, UNDECODABLE[index % len(UNDECODABLE)],
                                         (*metadata, ("x-request-id", request_id)))
                assert outcome.code == StatusCode.INVALID_ARGUMENT, (rpc.full_name, outcome.error)
                details = outcome.details()
                info = details["ErrorInfo"]
                assert isinstance(info, error_details_pb2.ErrorInfo)
                assert (info.reason, info.domain) == ("INVALID_ARGUMENT", ERROR_DOMAIN)
                assert "request" in outcome.violations()
                request_info = details["RequestInfo"]
                assert isinstance(request_info, error_details_pb2.RequestInfo)
                assert request_info.request_id == request_id
                sent[request_id] = rpc.name

    refusals = [r for r in caplog.records if "undecodable" in r.getMessage()]
    assert len(refusals) == len(sent), [r.getMessage() for r in refusals]
    assert all(r.levelno == logging.WARNING and r.exc_info is None for r in refusals)
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []

    # Audited like any refused call: the anonymous caller (no token was checked), ERROR.
    events = {e.request_id: e for e in await audit_events(channel, gateway_server, actor=ANONYMOUS)}
    for request_id, action in sent.items():
        event = events[request_id]
        assert (event.action, event.protocol, event.code, event.reason) == (
            action, "grpc", "INVALID_ARGUMENT", "INVALID_ARGUMENT"), event
        assert event.outcome == audit_service_pb2.AuditEvent.ERROR


async def test_undecodable_bytes_to_health_and_reflection_are_invalid_argument(
        caplog: pytest.LogCaptureFixture) -> None:
    # Outside the contract (no token, no audit), but decoded the same safe way.
    server, port = await start_grpc_server(FakeGateway(), host="127.0.0.1", port=0)
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as opened:
            codes: list[grpc.StatusCode] = []
            for method in ("Check", "Watch"):
                health_rpc = health_pb2.DESCRIPTOR.services_by_name["Health"].methods_by_name[method]
                codes.append((await call_raw(opened, health_rpc, b"\xff")).code)
            reflection_call = opened.stream_stream(f"/{reflection.SERVICE_NAME}/ServerReflectionInfo")()
            await reflection_call.write(b"\xff")
            codes.append(await reflection_call.code())
            # Well-formed requests are still answered.
            health = health_pb2_grpc.HealthStub(opened)
            checked = await health.Check(health_pb2.HealthCheckRequest())
            watch = health.Watch(health_pb2.HealthCheckRequest())
            watched = await watch.read()
            watch.cancel()
    finally:
        await server.stop(None)
    assert codes == [StatusCode.INVALID_ARGUMENT] * 3
    assert checked.status == watched.status == health_pb2.HealthCheckResponse.SERVING
    assert [r.getMessage() for r in caplog.records if r.exc_info or r.levelno >= logging.ERROR] == []


# ---------------------------------------------------------------- unknown enum numbers


def enum_paths(descriptor: Descriptor, prefix: str = "", depth: int = 3) -> Iterator[tuple[str, FieldDescriptor]]:
    """Every enum field reachable from ``descriptor`` as (path, field); a repeated step
    is element 0."""
    for field in descriptor.fields:
        step = f"{prefix}{field.name}{'[0]' if field.is_repeated else ''}"
        if field.enum_type is not None:
            yield step, field
        elif field.message_type is not None and depth > 0 and not field.message_type.GetOptions().map_entry:
            yield from enum_paths(field.message_type, step + ".", depth - 1)


def with_enum(request: Message, path: str, number: int) -> Message:
    """``request`` with the enum at ``path`` (as from ``enum_paths``) set to ``number``."""
    target: Any = request
    *steps, last = path.split(".")
    for step in steps:
        name = step.removesuffix("[0]")
        target = getattr(target, name).add() if step.endswith("[0]") else getattr(target, name)
    if last.endswith("[0]"):
        getattr(target, last.removesuffix("[0]")).append(number)
    else:
        setattr(target, last, number)
    return request


ENUM_CASES = [(rpc, path, field) for rpc in RPCS for path, field in enum_paths(rpc.input_type)]


def test_every_request_enum_is_covered() -> None:
    # The contract's request enums today; a new one is picked up by ENUM_CASES by itself.
    assert {(rpc.name, path) for rpc, path, _ in ENUM_CASES} >= {
        ("ListOperations", "type"), ("ListOperations", "state"), ("CreateVirtualMachineSnapshot", "keep_ip_address"),
        ("RestoreVirtualMachine", "mode"), ("CloneVirtualMachine", "mode"),
        ("CreateVirtualMachineFromSnapshot", "mode"), ("ListAuditEvents", "outcome"),
        ("ExportAuditEvents", "outcome")}


def _nested_enums_type() -> type[Message]:
    """``Outer {E top; Inner inner; repeated Inner inners; map<string, E> by_key}`` with
    ``Inner {repeated E es}``, ``E {E_UNSPECIFIED, ONE}``: enum fields in every position."""
    f = FieldDescriptorProto
    file = FileDescriptorProto(name="hostile_enums.proto", package="hostile", syntax="proto3")
    file.enum_type.add(name="E").value.extend([EnumValueDescriptorProto(name="E_UNSPECIFIED", number=0),
                                                EnumValueDescriptorProto(name="ONE", number=1)])
    file.message_type.add(name="Inner").field.add(name="es", number=1, label=f.LABEL_REPEATED, type=f.TYPE_ENUM,
                                                  type_name=".hostile.E")
    outer = file.message_type.add(name="Outer")
    entry = outer.nested_type.add(name="ByKeyEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, label=f.LABEL_OPTIONAL, type=f.TYPE_STRING)
    entry.field.add(name="value", number=2, label=f.LABEL_OPTIONAL, type=f.TYPE_ENUM, type_name=".hostile.E")
    outer.field.add(name="top", number=1, label=f.LABEL_OPTIONAL, type=f.TYPE_ENUM, type_name=".hostile.E")
    outer.field.add(name="inner", number=2, label=f.LABEL_OPTIONAL, type=f.TYPE_MESSAGE, type_name=".hostile.Inner")
    outer.field.add(name="inners", number=3, label=f.LABEL_REPEATED, type=f.TYPE_MESSAGE,
                    type_name=".hostile.Inner")
    outer.field.add(name="by_key", number=4, label=f.LABEL_REPEATED, type=f.TYPE_MESSAGE,
                    type_name=".hostile.Outer.ByKeyEntry")
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("hostile.Outer"))


def test_unknown_enums_are_found_in_nested_repeated_and_map_fields() -> None:
    outer_class = _nested_enums_type()
    msg: Any = outer_class(top=1, inner={"es": [1, 7]}, inners=[{"es": [1]}, {"es": [0, 1, 9]}],
                           by_key={"a": 1, "b": 5})
    with pytest.raises(ApiError) as caught:
        reject_unknown_enums(msg)
    assert {v.field: v.description for v in caught.value.field_violations} == {
        "inner.es[1]": "unknown enum value 7", "inners[1].es[2]": "unknown enum value 9",
        "by_key[b]": "unknown enum value 5"}
    reject_unknown_enums(outer_class(top=1, inner={"es": [1]}, by_key={"a": 0}))  # all defined: no error


async def test_unknown_enum_numbers_are_invalid_argument_naming_the_field(
        gateway_server: GatewayServer, channel: grpc.aio.Channel) -> None:
    sent: dict[str, str] = {}
    for index, (rpc, path, field) in enumerate(ENUM_CASES):
        defined = {value.number for value in field.enum_type.values}
        for number in (max(defined) + 1, -1, 2**31 - 1):
            request_id = f"enum-{index}-{number}"
            request = with_enum(request_class(rpc)(), path, number)
            outcome = await call_message(channel, rpc, request,
                                         (*bearer(gateway_server.token), ("x-request-id", request_id)))
            assert outcome.code == StatusCode.INVALID_ARGUMENT, (rpc.name, path, number, outcome.error)
            assert outcome.violations() == {path: f"unknown enum value {number}"}, (rpc.name, path)
            sent[request_id] = rpc.name
    events = {e.request_id: e for e in await audit_events(channel, gateway_server, actor="dev")}
    for request_id, action in sent.items():
        event = events[request_id]
        assert (event.action, event.code, event.outcome) == (action, "INVALID_ARGUMENT",
                                                             audit_service_pb2.AuditEvent.ERROR), event


# ---------------------------------------------------------------- hostile content

MiB = 1024 * 1024
_REPLACEMENT = common_pb2.NameReplacement(to="x", **{"from": common_pb2.NameReplacement.Source(kind="VirtualDisk",
                                                                                             name="linux-vm-root")})
Build = Callable[[], Message]

HOSTILE: dict[str, tuple[str, Build]] = {
    "a request above the receive limit": ("CreateDiskSnapshot", lambda: snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="linux-vm-root", annotations={"a": "x" * (5 * MiB)})),
    "20k name replacements": ("CloneVirtualMachine", lambda: clone_service_pb2.CloneVirtualMachineRequest(
        namespace="demo", virtual_machine_name="linux-vm", mode=common_pb2.DRY_RUN,
        name_replacements=[_REPLACEMENT] * 20_000)),
    "20k bad labels": ("CreateDiskSnapshot", lambda: snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo", virtual_disk_name="linux-vm-root", labels={f"-k{i}": "v" for i in range(20_000)})),
    "NUL and odd unicode in every string": ("ListOperations", lambda: operation_service_pb2.ListOperationsRequest(
        namespace="de\x00mo", actor="\u202e\U0010ffff\x00", page_token="\x00\ud7ff")),
    "NUL in names": ("CreateDiskSnapshot", lambda: snapshot_service_pb2.CreateDiskSnapshotRequest(
        namespace="demo\x00", virtual_disk_name="linux\x00", name="a\x00", request_id="\x00",
        labels={"\x00": "\x00"}, annotations={"k": "\x00"})),
    "NUL in an operation id": ("GetOperation", lambda: operation_service_pb2.GetOperationRequest(
        operation_id="\x00' OR 1=1 --")),
    "NUL in audit filters": ("ListAuditEvents", lambda: audit_service_pb2.ListAuditEventsRequest(
        actor="\x00", namespace="\x00", resource="\x00", action="\x00", page_token="\x00")),
    "a timestamp past year 9999": ("ListAuditEvents", lambda: audit_service_pb2.ListAuditEventsRequest(
        since={"seconds": 2**63 - 1})),
    "a timestamp with negative nanos": ("ExportAuditEvents", lambda: audit_service_pb2.ExportAuditEventsRequest(
        until={"seconds": 0, "nanos": -1})),
    "extreme page sizes": ("ListDiskSnapshots", lambda: snapshot_service_pb2.ListDiskSnapshotsRequest(
        namespace="demo", page_size=-(2**31), page_token="\U0001f600" * 1000)),
    "the largest page size": ("ListOperations", lambda: operation_service_pb2.ListOperationsRequest(
        page_size=2**31 - 1)),
    "extreme versions": ("WatchOperation", lambda: operation_service_pb2.WatchOperationRequest(
        operation_id="00000000-0000-0000-0000-000000000000", after_version=-(2**63))),
    "an extreme ttl and range": ("ExportDisk", lambda: export_service_pb2.ExportDiskRequest(
        namespace="demo", name="linux-vm-root", ttl={"seconds": -(2**63), "nanos": -999_999_999},
        range={"offset": 2**63 - 1, "length": 2**63 - 1})),
    "a negative range": ("ExportDiskSnapshot", lambda: export_service_pb2.ExportDiskSnapshotRequest(
        namespace="demo", name="x", range={"offset": -1, "length": -1}, if_etag="\x00")),
    "name and generate_name together": ("CreateVirtualMachineSnapshot",
                                        lambda: snapshot_service_pb2.CreateVirtualMachineSnapshotRequest(
                                            namespace="demo", virtual_machine_name="linux-vm", name="a",
                                            generate_name="b-")),
    "a restore into nothing": ("RestoreDisk", lambda: restore_service_pb2.RestoreDiskRequest(
        namespace="demo", name="", disk_snapshot_name="", size="-1Ei", storage_class_name="\x00")),
    "a clone renaming everything to one name": ("CreateVirtualMachineFromSnapshot",
                                                lambda: clone_service_pb2.CreateVirtualMachineFromSnapshotRequest(
                                                    namespace="demo", virtual_machine_snapshot_name="s",
                                                    mode=common_pb2.STRICT,
                                                    name_replacements=[_REPLACEMENT, _REPLACEMENT],
                                                    customization={"name_prefix": "\x00" * 100})),
}
EXPECTED: dict[str, tuple[grpc.StatusCode, str]] = {
    "a request above the receive limit": (StatusCode.RESOURCE_EXHAUSTED, ""),
    "a timestamp past year 9999": (StatusCode.INVALID_ARGUMENT, "since"),
    "a timestamp with negative nanos": (StatusCode.INVALID_ARGUMENT, "until"),
}


async def test_hostile_content_is_the_callers_error(gateway_server: GatewayServer,
                                                    channel: grpc.aio.Channel) -> None:
    wrong: dict[str, Any] = {}
    for case, (name, build) in HOSTILE.items():
        outcome = await call_message(channel, rpc_named(name), build(), bearer(gateway_server.token))
        code, field = EXPECTED.get(case, (None, ""))
        if outcome.code not in CALLER_CODES or (code and outcome.code != code) \
                or (field and field not in outcome.violations()):
            wrong[case] = outcome.error or outcome.code
    assert wrong == {}


# The audit event of a refused call keeps the namespace and name as sent. PostgreSQL
# refuses such a row (a btree entry above ~2.7 kB: the call fails UNAVAILABLE,
# AUDIT_UNAVAILABLE); SQLite stores it, and then a page of the audit log is larger than a
# gRPC message may be, so nobody can list it. Both pass once service/store/audit.py clips
# its indexed columns (the change is in the hardening report); strict, so this marker goes
# when it lands.
async def test_megabyte_names_are_refused_and_still_audited(gateway_server: GatewayServer,
                                                            channel: grpc.aio.Channel) -> None:
    sent = {"GetDiskSnapshot": snapshot_service_pb2.GetDiskSnapshotRequest(namespace="demo", name="a" * (3 * MiB)),
            "ListOperations": operation_service_pb2.ListOperationsRequest(namespace="n" * MiB)}
    for name, message in sent.items():
        outcome = await call_message(channel, rpc_named(name), message,
                                     (*bearer(gateway_server.token), ("x-request-id", f"huge-{name}")))
        assert outcome.code == StatusCode.INVALID_ARGUMENT, outcome.error
    events = {e.request_id: e for e in await audit_events(channel, gateway_server, actor="dev")}
    assert {events[f"huge-{name}"].action for name in sent} == set(sent)
