"""Retries, idempotency keys and ``wait``'s resumption, against a real grpc.aio server
started here (the generated servicer base classes) that answers UNAVAILABLE, with or
without a RetryInfo delay, as often as a test asks, and records every attempt."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import grpc
import pytest
from google.protobuf.any_pb2 import Any as AnyPb
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from service.api.grpc_gen.dvp.snapshots.v1 import (
    operation_pb2,
    operation_service_pb2_grpc,
    snapshot_service_pb2,
    snapshot_service_pb2_grpc,
)
from service.client import errors
from service.client.gateway import GatewayClient
from service.client.retry import Attempts, RetryPolicy

Operation = operation_pb2.Operation
TOKEN = "secret-test-token"


def _status(code: int, message: str, *details: Message) -> Any:
    packed = []
    for detail in details:
        holder = AnyPb()
        holder.Pack(detail)
        packed.append(holder)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=packed))


def unavailable(retry_after: float | None = None) -> Any:
    details: list[Message] = [error_details_pb2.ErrorInfo(reason="DATABASE_UNAVAILABLE", domain="test"),
                              error_details_pb2.RequestInfo(request_id="req-on-server")]
    if retry_after is not None:
        delay = Duration()
        delay.FromNanoseconds(int(retry_after * 1e9))
        details.append(error_details_pb2.RetryInfo(retry_delay=delay))
    return _status(code_pb2.UNAVAILABLE, "the database is busy", *details)


@dataclass
class Attempt:
    at: float
    request_id: str
    authorization: str


@dataclass
class Flaky(snapshot_service_pb2_grpc.SnapshotServiceServicer, operation_service_pb2_grpc.OperationServiceServicer):
    """Answers the first ``failures`` calls with ``refusal`` (a grpc.Status), then succeeds."""

    failures: int = 0
    refusal: Any = None
    attempts: list[Attempt] = field(default_factory=list)
    watches: list[int] = field(default_factory=list)           # after_version of each WatchOperation
    watch_script: list[Callable[[Any], AsyncIterator[Operation]]] = field(default_factory=list)
    current: Operation = field(default_factory=Operation)

    async def _maybe_refuse(self, context: Any, request_id: str) -> None:
        metadata = dict(context.invocation_metadata())
        self.attempts.append(Attempt(time.monotonic(), request_id, metadata.get("authorization", "")))
        if len(self.attempts) <= self.failures:
            await context.abort_with_status(self.refusal)

    async def CreateDiskSnapshot(self, request: Any, context: Any) -> Operation:
        await self._maybe_refuse(context, request.request_id)
        return Operation(id="op-1", request_id=request.request_id, state=Operation.PENDING)

    async def WatchDiskSnapshots(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self._maybe_refuse(context, "")
        yield snapshot_service_pb2.DiskSnapshotEvent(snapshot=snapshot_service_pb2.DiskSnapshot(name="first"))
        await context.abort_with_status(unavailable())

    async def GetOperation(self, request: Any, context: Any) -> Operation:
        return self.current

    async def WatchOperation(self, request: Any, context: Any) -> AsyncIterator[Operation]:
        self.watches.append(request.after_version)
        async for version in self.watch_script.pop(0)(context):
            yield version


@pytest.fixture
async def flaky() -> AsyncIterator[tuple[Flaky, str]]:
    servicer = Flaky()
    server = grpc.aio.server()
    snapshot_service_pb2_grpc.add_SnapshotServiceServicer_to_server(servicer, server)
    operation_service_pb2_grpc.add_OperationServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield servicer, f"127.0.0.1:{port}"
    finally:
        await server.stop(None)


def _client(target: str, policy: RetryPolicy) -> GatewayClient:
    return GatewayClient.connect(target, token=TOKEN, namespace="demo", retries=policy, timeout=5)


async def test_unavailable_is_retried_after_the_hinted_delay_with_one_request_id(
        flaky: tuple[Flaky, str]) -> None:
    server, target = flaky
    server.failures, server.refusal = 2, unavailable(retry_after=0.25)
    async with _client(target, RetryPolicy(max_attempts=5, initial_backoff=0.01)) as client:
        operation = await client.create_disk_snapshot(virtual_disk_name="disk")
    assert operation.id == "op-1" and len(server.attempts) == 3
    keys = {a.request_id for a in server.attempts}
    assert keys == {operation.request_id} and len(operation.request_id) >= 32   # generated once, sent thrice
    assert {a.authorization for a in server.attempts} == {f"Bearer {TOKEN}"}
    gaps = [later.at - earlier.at for earlier, later in zip(server.attempts, server.attempts[1:], strict=False)]
    assert all(0.25 <= gap < 1.5 for gap in gaps), gaps   # the server's delay, not the 0.01 s backoff


async def test_an_explicit_request_id_is_sent_on_every_attempt(flaky: tuple[Flaky, str]) -> None:
    server, target = flaky
    server.failures, server.refusal = 1, unavailable()
    async with _client(target, RetryPolicy(initial_backoff=0.01)) as client:
        await client.create_disk_snapshot(virtual_disk_name="disk", request_id="mine-1")
        await client.create_disk_snapshot(virtual_disk_name="disk", request_id="")   # "" opts out
    assert [a.request_id for a in server.attempts] == ["mine-1", "mine-1", ""]


async def test_retries_give_up_after_the_bound_with_the_unavailable_error(flaky: tuple[Flaky, str]) -> None:
    server, target = flaky
    server.failures, server.refusal = 100, unavailable()
    async with _client(target, RetryPolicy(max_attempts=3, initial_backoff=0.01)) as client:
        with pytest.raises(errors.Unavailable) as caught:
            await client.create_disk_snapshot(virtual_disk_name="disk")
    assert len(server.attempts) == 3 and len({a.request_id for a in server.attempts}) == 1
    error = caught.value
    assert (error.code, error.reason, error.request_id) == (grpc.StatusCode.UNAVAILABLE, "DATABASE_UNAVAILABLE",
                                                            "req-on-server")
    assert error.message == "the database is busy" and error.retry_after is None


async def test_a_hint_past_the_deadline_ends_the_call_at_once(flaky: tuple[Flaky, str]) -> None:
    server, target = flaky
    server.failures, server.refusal = 100, unavailable(retry_after=5)
    started = time.monotonic()
    async with _client(target, RetryPolicy(max_attempts=10, deadline=1.0)) as client:
        with pytest.raises(errors.Unavailable) as caught:
            await client.create_disk_snapshot(virtual_disk_name="disk")
    assert caught.value.retry_after == 5 and len(server.attempts) == 1
    assert time.monotonic() - started < 1.0


@pytest.mark.parametrize(("retry_after", "attempts"), [(None, 1), (0.01, 2)])
async def test_resource_exhausted_is_retried_only_with_a_retry_info(flaky: tuple[Flaky, str],
                                                                    retry_after: float | None, attempts: int) -> None:
    server, target = flaky
    details: list[Message] = [error_details_pb2.ErrorInfo(reason="TOO_MANY_STREAMS")]
    if retry_after is not None:
        details.append(error_details_pb2.RetryInfo(retry_delay=Duration(nanos=int(retry_after * 1e9))))
    server.failures, server.refusal = 1, _status(code_pb2.RESOURCE_EXHAUSTED, "busy", *details)
    async with _client(target, RetryPolicy(initial_backoff=0.01)) as client:
        if attempts == 1:
            with pytest.raises(errors.ResourceExhausted):
                await client.create_disk_snapshot(virtual_disk_name="disk")
        else:
            await client.create_disk_snapshot(virtual_disk_name="disk")
    assert len(server.attempts) == attempts


async def test_a_stream_is_retried_only_before_its_first_message(flaky: tuple[Flaky, str]) -> None:
    server, target = flaky
    server.failures, server.refusal = 1, unavailable(retry_after=0.01)
    received = []
    async with _client(target, RetryPolicy(initial_backoff=0.01)) as client:
        with pytest.raises(errors.Unavailable):
            async for event in client.watch_disk_snapshots():
                received.append(event.snapshot.name)
    # Refused once (retried), then one event and a drop: raised, not restarted.
    assert received == ["first"] and len(server.attempts) == 2


async def test_wait_resumes_a_watch_that_drops_with_unavailable(flaky: tuple[Flaky, str]) -> None:
    server, target = flaky

    def version(number: int, state: Operation.State.ValueType) -> Operation:
        return Operation(id="op-9", version=number, state=state, done=state == Operation.SUCCEEDED)

    async def running_then_drop(context: Any) -> AsyncIterator[Operation]:
        yield version(1, Operation.RUNNING)
        server.current = version(2, Operation.RUNNING)   # what changed while the client was away
        await context.abort_with_status(unavailable())

    async def finishes(context: Any) -> AsyncIterator[Operation]:
        yield version(3, Operation.SUCCEEDED)

    server.watch_script = [running_then_drop, finishes]
    seen: list[int] = []
    async with _client(target, RetryPolicy(initial_backoff=0.01)) as client:
        done = await client.wait("op-9", timeout=5, on_update=lambda op: seen.append(op.version))
    assert done.state == Operation.SUCCEEDED and seen == [1, 2, 3]
    assert server.watches == [0, 2]   # resumed after the version GetOperation read


async def test_wait_gives_up_on_a_watch_that_keeps_dropping(flaky: tuple[Flaky, str]) -> None:
    server, target = flaky
    server.current = Operation(id="op-5", version=1, state=Operation.RUNNING)

    async def drop(context: Any) -> AsyncIterator[Operation]:
        await context.abort_with_status(unavailable())
        yield Operation()   # never reached: makes this an async generator

    server.watch_script = [drop] * 10
    async with _client(target, RetryPolicy(max_attempts=2, initial_backoff=0.01)) as client:
        with pytest.raises(errors.Unavailable):
            await client.wait("op-5", timeout=5)
    # Each watch was itself retried once (nothing received), twice in all: 4 attempts.
    assert len(server.watches) == 4


def test_backoff_is_full_jitter_under_an_exponential_cap() -> None:
    policy = RetryPolicy(initial_backoff=0.1, multiplier=2, max_backoff=0.5)
    assert [policy.backoff(n, rng=lambda: 1.0) for n in range(1, 6)] == [0.1, 0.2, 0.4, 0.5, 0.5]
    assert policy.backoff(3, rng=lambda: 0.0) == 0.0
    assert all(0 <= policy.backoff(4) <= 0.4 * 2 for _ in range(100))


def test_the_deadline_bounds_each_attempt_and_the_retries() -> None:
    now = [0.0]
    attempts = Attempts(RetryPolicy(max_attempts=10, deadline=2.0, initial_backoff=0.01), clock=lambda: now[0])
    attempts.start()
    assert attempts.timeout(30.0) == 2.0 and attempts.timeout(None) == 2.0
    now[0] = 1.5
    assert attempts.timeout(30.0) == 0.5
    busy = errors.Unavailable(grpc.StatusCode.UNAVAILABLE, "busy", retry_after=0.4)
    assert attempts.delay_after(busy) == 0.4
    now[0] = 1.7
    assert attempts.delay_after(busy) is None   # would start after the deadline
    with pytest.raises(ValueError):
        RetryPolicy(max_attempts=0)
