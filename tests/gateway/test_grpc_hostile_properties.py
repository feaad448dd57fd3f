"""Property-based: any request message of any method, or any bytes, sent over a real
grpc.aio channel to the whole gateway, is answered with a status that is never UNKNOWN,
INTERNAL or DATA_LOSS.

Messages are generated from the generated descriptors (every field type: strings with odd
unicode, integers at their extremes, enum numbers the contract does not define, repeated
fields, nested messages, maps). A "calm" example keeps to the seeded demo objects' names,
defined enum values and small numbers, so that some requests get past validation into the
use cases; a hostile one mixes everything. Streams are read up to their first item or
error, then cancelled.
"""

from __future__ import annotations

import os
from typing import Any

import grpc
from google.protobuf import message_factory
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.gateway.test_grpc_hostile import NEVER, RPCS, Outcome, bearer, call_raw, channel
from tests.support.gateway import GatewayServer

__all__ = ["channel"]  # the fixture, imported to be used here

# Kept under PostgreSQL's ~2.7 kB btree entry even at 4 UTF-8 bytes a character: a longer
# namespace or name reaches an indexed audit column (test_grpc_hostile's "a 3 MiB name").
MAX_TEXT = 600
MAX_LIST = 6
# The seeded demo objects and well-formed values, so that calm requests name things that exist.
KNOWN = ("demo", "linux-vm", "linux-vm-root", "stopped-vm", "stopped-vm-root", "no-agent-vm", "tools-image",
         "VirtualDisk", "VirtualMachine", "linux-vm-root-snapshot", "00000000-0000-0000-0000-000000000000",
         "copy-", "10Gi", "app=web", "")
ODD = ("\x00", "\u202e", "\ufeff", "\U0010ffff", "\u0301", "\U0001f600", "\t\n", "'\";--", "%00", "../..",
       "a" * 254, "\u01c5", "demo\x00")
# A deeper search: DVP_HOSTILE_EXAMPLES=2000 DVP_HOSTILE_RANDOM=1 (new examples each run).
SETTINGS = settings(max_examples=int(os.environ.get("DVP_HOSTILE_EXAMPLES", "100")), deadline=None, database=None,
                    derandomize=not os.environ.get("DVP_HOSTILE_RANDOM"),
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                           HealthCheck.data_too_large])

_I32, _I64 = (-(2**31), 2**31 - 1), (-(2**63), 2**63 - 1)
_INT_RANGES = {
    FieldDescriptor.TYPE_INT32: _I32, FieldDescriptor.TYPE_SINT32: _I32, FieldDescriptor.TYPE_SFIXED32: _I32,
    FieldDescriptor.TYPE_INT64: _I64, FieldDescriptor.TYPE_SINT64: _I64, FieldDescriptor.TYPE_SFIXED64: _I64,
    FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1), FieldDescriptor.TYPE_FIXED32: (0, 2**32 - 1),
    FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1), FieldDescriptor.TYPE_FIXED64: (0, 2**64 - 1),
}


def texts(field: FieldDescriptor, calm: bool) -> st.SearchStrategy[str]:
    known = st.just("demo") if field.name == "namespace" else st.sampled_from(KNOWN)
    if calm:
        return known
    return st.one_of(known, st.sampled_from(ODD),
                     st.text(st.characters(exclude_categories=("Cs",)), max_size=MAX_TEXT),
                     st.builds(lambda a, b: a + b, st.sampled_from(KNOWN), st.sampled_from(ODD)))


def integers(low: int, high: int) -> st.SearchStrategy[int]:
    extremes = st.sampled_from(sorted({low, high, 0, 1, max(low, -1), high // 2 + 1}))
    return st.one_of(extremes, st.integers(low, high))


def scalars(field: FieldDescriptor, calm: bool) -> st.SearchStrategy[Any]:
    if field.enum_type is not None:
        defined = st.sampled_from([value.number for value in field.enum_type.values])
        return defined if calm else st.one_of(defined, integers(*_I32))  # proto3 enums are open
    if field.type == FieldDescriptor.TYPE_STRING:
        return texts(field, calm)
    if field.type == FieldDescriptor.TYPE_BYTES:
        return st.binary(max_size=64)
    if field.type == FieldDescriptor.TYPE_BOOL:
        return st.booleans()
    if field.type in (FieldDescriptor.TYPE_DOUBLE, FieldDescriptor.TYPE_FLOAT):
        return st.floats(width=64 if field.type == FieldDescriptor.TYPE_DOUBLE else 32)
    low, high = _INT_RANGES[field.type]
    return st.integers(max(low, 0), min(high, 100)) if calm else integers(low, high)


def messages(descriptor: Descriptor, calm: bool, depth: int = 4) -> st.SearchStrategy[Message]:
    """A message of ``descriptor``'s type with any subset of its fields set."""

    @st.composite
    def build(draw: st.DrawFn) -> Message:
        msg = message_factory.GetMessageClass(descriptor)()
        for field in descriptor.fields:
            if draw(st.booleans()):
                _set(draw, msg, field, calm, depth)
        return msg

    return build()


def _set(draw: st.DrawFn, msg: Message, field: FieldDescriptor, calm: bool, depth: int) -> None:
    target = getattr(msg, field.name)
    entry = field.message_type
    if entry is not None and entry.GetOptions().map_entry:
        keys, values = (scalars(entry.fields_by_name[name], calm) for name in ("key", "value"))
        target.update(draw(st.dictionaries(keys, values, max_size=MAX_LIST)))
    elif entry is not None and depth > 0:
        if field.is_repeated:
            for item in draw(st.lists(messages(entry, calm, depth - 1), max_size=MAX_LIST)):
                target.add().CopyFrom(item)
        else:
            target.CopyFrom(draw(messages(entry, calm, depth - 1)))
            target.SetInParent()  # present even when empty
    elif entry is None and field.is_repeated:
        target.extend(draw(st.lists(scalars(field, calm), max_size=MAX_LIST)))
    elif entry is None:
        setattr(msg, field.name, draw(scalars(field, calm)))


METHODS = st.sampled_from(RPCS)
USERS = st.sampled_from(["dev", "dev", "dev", "operator", "stranger", ""])


def _check(rpc: MethodDescriptor, sent: Any, outcome: Outcome) -> None:
    if os.environ.get("DVP_HOSTILE_TRACE"):  # what the search reached: DVP_HOSTILE_TRACE=1 pytest -s
        details = outcome.error.details() if outcome.error else ""
        print("TRACE", rpc.name, outcome.code.name, (details or "")[:80].replace("\n", " "))
    assert outcome.code not in NEVER, (rpc.full_name, sent, outcome.error)


@SETTINGS
@given(data=st.data())
async def test_any_request_message_gets_a_caller_status(gateway_server: GatewayServer, channel: grpc.aio.Channel,
                                                        data: st.DataObject) -> None:
    rpc = data.draw(METHODS, label="method")
    request = data.draw(messages(rpc.input_type, calm=data.draw(st.booleans(), label="calm")), label="request")
    user = data.draw(USERS, label="user")
    metadata = bearer(gateway_server.tokens[user]) if user else ()
    _check(rpc, request, await call_raw(channel, rpc, request.SerializeToString(), metadata))


# Random bytes, and bytes that start like a field of the common wire types.
PAYLOADS = st.one_of(st.binary(max_size=256), st.builds(
    lambda tag, rest: tag + rest, st.sampled_from([b"\x08", b"\x0a", b"\x12", b"\x1a", b"\x20", b"\x2a"]),
    st.binary(max_size=64)))


@SETTINGS
@given(rpc=METHODS, payload=PAYLOADS)
async def test_any_bytes_get_a_caller_status(gateway_server: GatewayServer, channel: grpc.aio.Channel,
                                             rpc: MethodDescriptor, payload: bytes) -> None:
    _check(rpc, payload, await call_raw(channel, rpc, payload, bearer(gateway_server.token)))


def test_the_strategy_handles_every_request_field() -> None:
    # Every field of every request (and of the messages inside them) has a strategy.
    pending = [rpc.input_type for rpc in RPCS]
    seen: set[str] = set()
    while pending:
        descriptor = pending.pop()
        if descriptor.full_name in seen:
            continue
        seen.add(descriptor.full_name)
        for field in descriptor.fields:
            if field.message_type is not None:
                pending.append(field.message_type)
            else:
                for calm in (True, False):
                    assert scalars(field, calm) is not None, field.full_name
