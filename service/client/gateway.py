"""``GatewayClient``: a typed async client of the gateway's gRPC API.

One method per RPC of ``proto/dvp/snapshots/v1`` (snake_case), taking the request's
fields as keyword arguments and returning the generated protobuf messages. Streaming
RPCs return a ``Stream`` (``async for``; ``async with`` closes it early); list RPCs also
have an ``iter_*`` that follows ``next_page_token``. ``wait`` follows an operation to
its end. Refusals raise the ``service.client.errors`` classes; UNAVAILABLE is retried
(``service.client.retry``) with the same idempotency key on every attempt.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import inspect
import logging
import uuid
from collections.abc import (
    AsyncGenerator,
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from pathlib import Path
from types import EllipsisType, TracebackType
from typing import TYPE_CHECKING, Any, BinaryIO, Generic, Protocol, Self, TypeAlias, TypeVar

import grpc
from google.protobuf.duration_pb2 import Duration
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp

from service.api.grpc_gen.dvp.snapshots.v1 import audit_service_pb2 as audit_pb
from service.api.grpc_gen.dvp.snapshots.v1 import clone_service_pb2 as clone_pb
from service.api.grpc_gen.dvp.snapshots.v1 import common_pb2, operation_pb2
from service.api.grpc_gen.dvp.snapshots.v1 import export_service_pb2 as export_pb
from service.api.grpc_gen.dvp.snapshots.v1 import operation_service_pb2 as operations_pb
from service.api.grpc_gen.dvp.snapshots.v1 import restore_service_pb2 as restore_pb
from service.api.grpc_gen.dvp.snapshots.v1 import snapshot_service_pb2 as snapshot_pb
from service.client.config import ClientConfig, find_config, load_config
from service.client.errors import DataLoss, GatewayError, OperationFailed, Unavailable, WaitTimeout, error_from_rpc
from service.client.retry import Attempts, RetryPolicy
from service.client.tls import channel_credentials

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper

log = logging.getLogger(__name__)

Operation = operation_pb2.Operation
Req = TypeVar("Req", bound=Message)
Res = TypeVar("Res", bound=Message)
T = TypeVar("T")
E = TypeVar("E", bound=int)
# Enum fields: the generated value, or its proto name ("DRY_RUN").
ApplyMode: TypeAlias = common_pb2.ApplyMode.ValueType
KeepIpAddress: TypeAlias = snapshot_pb.VirtualMachineSnapshot.KeepIpAddress.ValueType
OperationType: TypeAlias = Operation.Type.ValueType
OperationState: TypeAlias = Operation.State.ValueType
AuditOutcome: TypeAlias = audit_pb.AuditEvent.Outcome.ValueType
OnUpdate = Callable[[Operation], Awaitable[None] | None]

# Full service names, read from the generated descriptors (a renamed package fails at import).
SNAPSHOTS = snapshot_pb.DESCRIPTOR.services_by_name["SnapshotService"].full_name
RESTORES = restore_pb.DESCRIPTOR.services_by_name["RestoreService"].full_name
CLONES = clone_pb.DESCRIPTOR.services_by_name["CloneService"].full_name
EXPORTS = export_pb.DESCRIPTOR.services_by_name["ExportService"].full_name
OPERATIONS = operations_pb.DESCRIPTOR.services_by_name["OperationService"].full_name
AUDIT = audit_pb.DESCRIPTOR.services_by_name["AuditService"].full_name

DEFAULT_TIMEOUT = 30.0
# An export chunk is at most 4 MiB of data plus framing: above gRPC's default 4 MiB limit.
MAX_RECEIVE_MESSAGE = 16 << 20
_TERMINAL_FAILURES = (Operation.FAILED, Operation.CANCELLED)
_KEEP_IP_UNSPECIFIED = snapshot_pb.VirtualMachineSnapshot.KEEP_IP_ADDRESS_UNSPECIFIED
_ANY_OUTCOME = audit_pb.AuditEvent.OUTCOME_UNSPECIFIED


class Stream(Generic[T]):
    """The messages of a server-streaming call: ``async for message in stream``.

    Errors surface from the iteration as ``GatewayError`` subclasses. Leaving an
    ``async with stream`` block (or ``await stream.aclose()``) cancels the call, which a
    loop left with ``break`` would otherwise keep open until garbage collection."""

    def __init__(self, messages: AsyncIterator[T]) -> None:
        self._messages = messages

    def __aiter__(self) -> Stream[T]:
        return self

    async def __anext__(self) -> T:
        return await self._messages.__anext__()

    async def aclose(self) -> None:
        close = getattr(self._messages, "aclose", None)
        if close is not None:
            await close()

    async def __aenter__(self) -> Stream[T]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


def rename(name: str, to: str, kind: str = "") -> common_pb2.NameReplacement:
    """A NameReplacement of a clone (its ``from`` field is a Python keyword)."""
    return common_pb2.NameReplacement(to=to, **{"from": common_pb2.NameReplacement.Source(kind=kind, name=name)})


def _enum(wrapper: _EnumTypeWrapper[E], value: E | str) -> E:
    """An enum field given as its value or its proto name ("DRY_RUN")."""
    return wrapper.Value(value) if isinstance(value, str) else value


def _timestamp(value: datetime | Timestamp | None) -> Timestamp | None:
    if value is None or isinstance(value, Timestamp):
        return value
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def _duration(value: timedelta | float | Duration | None) -> Duration | None:
    if value is None or isinstance(value, Duration):
        return value
    duration = Duration()
    duration.FromTimedelta(value if isinstance(value, timedelta) else timedelta(seconds=value))
    return duration


def _serialize(message: Message) -> bytes:
    return message.SerializeToString()


class _Page(Protocol):
    next_page_token: str


P = TypeVar("P", bound=_Page)


async def _pages(fetch: Callable[[str], Awaitable[P]]) -> AsyncIterator[P]:
    """Every page of a list call, following next_page_token from the first."""
    token = ""
    while True:
        page = await fetch(token)
        yield page
        token = page.next_page_token
        if not token:
            return


def _idempotency_key(request_id: str | None) -> str:
    # None: one fresh key per method call, reused by every retry of that call.
    return uuid.uuid4().hex if request_id is None else request_id


class GatewayClient:
    """An async client of the gateway's gRPC API. Create it with ``connect`` or
    ``from_config`` inside a running event loop; use it as ``async with`` or ``close()`` it.

    Required namespaces default to ``namespace`` given at creation (``from_config``: the
    config file's). Every call carries ``authorization: Bearer <token>``; the token never
    appears in ``repr`` nor in logs."""

    def __init__(self, channel: Any, *, target: str, token: str = "", namespace: str = "",
                 retry: RetryPolicy | None = None, timeout: float | None = DEFAULT_TIMEOUT, tls: bool = False,
                 owns_channel: bool = True) -> None:
        self._channel = channel
        self._auth: tuple[tuple[str, str], ...] = (("authorization", f"Bearer {token}"),) if token else ()
        self._owns_channel = owns_channel
        self._callables: dict[str, Any] = {}
        self.target = target
        self.tls = tls
        self.namespace = namespace
        self.retry = retry or RetryPolicy()
        self.timeout = timeout

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    def connect(cls, target: str, *, token: str | None = None, tls: bool = False,
                ca_file: Path | str | None = None, client_cert: Path | str | None = None,
                client_key: Path | str | None = None, server_name: str | None = None, namespace: str = "",
                retries: RetryPolicy | int | None = None, timeout: float | None = DEFAULT_TIMEOUT,
                options: Sequence[tuple[str, Any]] = ()) -> GatewayClient:
        """A client of the gateway at ``target`` ("host:port").

        TLS is on when ``tls`` is true or any certificate file is given: ``ca_file`` is the
        PEM bundle to trust (None: the system's), ``client_cert``/``client_key`` a client
        certificate for mTLS, ``server_name`` the name to check the server's certificate
        against when it differs from the target's host. ``retries``: a RetryPolicy, or the
        number of retries after the first attempt. ``timeout``: seconds per unary call
        (None: no limit; streams have none). ``options``: extra gRPC channel options."""
        channel_options: list[tuple[str, Any]] = [("grpc.max_receive_message_length", MAX_RECEIVE_MESSAGE)]
        if server_name:
            channel_options.append(("grpc.ssl_target_name_override", server_name))
        channel_options += list(options)
        secure = tls or any(f is not None for f in (ca_file, client_cert, client_key))
        if secure:
            channel = grpc.aio.secure_channel(target, channel_credentials(ca_file, client_cert, client_key),
                                              options=channel_options)
        else:
            channel = grpc.aio.insecure_channel(target, options=channel_options)
        policy = RetryPolicy(max_attempts=retries + 1) if isinstance(retries, int) else retries
        return cls(channel, target=target, token=token or "", namespace=namespace, retry=policy, timeout=timeout,
                   tls=secure)

    @classmethod
    def from_config(cls, config: ClientConfig | None = None, *, retries: RetryPolicy | int | None = None,
                    timeout: float | None = DEFAULT_TIMEOUT) -> GatewayClient:
        """A client from a ``ClientConfig`` (None: the file ``find_config()`` finds, as
        ``dvpctl`` does: $DVPCTL_CONFIG, ./var/client.yaml, ~/.config/dvpctl/config.yaml)."""
        if config is None:
            config = load_config(find_config())
        return cls.connect(config.grpc, token=config.bearer_token(), tls=config.tls, ca_file=config.ca_file,
                           namespace=config.namespace, retries=retries, timeout=timeout)

    def with_options(self, *, timeout: float | EllipsisType | None = ...,
                     retries: RetryPolicy | int | None = None) -> GatewayClient:
        """A client sharing this one's channel with another per-call timeout or retry policy
        (closing it leaves the channel open)."""
        policy = RetryPolicy(max_attempts=retries + 1) if isinstance(retries, int) else retries
        other = GatewayClient(self._channel, target=self.target, namespace=self.namespace,
                              retry=policy or self.retry, timeout=self.timeout if timeout is ... else timeout,
                              tls=self.tls, owns_channel=False)
        other._auth = self._auth
        return other

    async def ready(self, timeout: float = 10.0) -> None:  # noqa: ASYNC109 (a bound, not a cancel scope)
        """Wait until the channel is connected; Unavailable after ``timeout`` seconds."""
        try:
            await asyncio.wait_for(self._channel.channel_ready(), timeout)
        except TimeoutError:
            raise Unavailable(grpc.StatusCode.UNAVAILABLE,
                              f"the gateway at {self.target} is not reachable after {timeout:g} s") from None

    async def close(self) -> None:
        if self._owns_channel:
            await self._channel.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        traceback: TracebackType | None) -> None:
        await self.close()

    def __repr__(self) -> str:
        return (f"GatewayClient(target={self.target!r}, tls={self.tls}, namespace={self.namespace!r}, "
                f"authenticated={bool(self._auth)})")

    # ------------------------------------------------------------------ plumbing

    def _namespace(self, namespace: str | None) -> str:
        chosen = self.namespace if namespace is None else namespace
        if not chosen:
            raise ValueError("no namespace: pass namespace= or create the client with a default namespace")
        return chosen

    def _callable(self, kind: str, service: str, method: str, response: type[Res]) -> Any:
        path = f"/{service}/{method}"
        found = self._callables.get(path)
        if found is None:
            factory = self._channel.unary_unary if kind == "unary" else self._channel.unary_stream
            found = factory(path, request_serializer=_serialize, response_deserializer=response.FromString)
            self._callables[path] = found
        return found

    async def _unary(self, service: str, method: str, request: Message, response: type[Res]) -> Res:
        call = self._callable("unary", service, method, response)
        attempts = Attempts(self.retry)
        while True:
            attempts.start()
            try:
                answer: Res = await call(request, metadata=self._auth, timeout=attempts.timeout(self.timeout))
                return answer
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc(rpc_error)
            delay = attempts.delay_after(error)
            if delay is None:
                raise error
            log.info("retrying %s in %.2f s after %s (attempt %d of %d)", method, delay, error,
                     attempts.made + 1, self.retry.max_attempts)
            await asyncio.sleep(delay)

    def _stream(self, service: str, method: str, request: Message, response: type[Res]) -> Stream[Res]:
        return Stream(self._stream_messages(service, method, request, response))

    async def _stream_messages(self, service: str, method: str, request: Message,
                               response: type[Res]) -> AsyncIterator[Res]:
        """Relay a server stream. Retried only while nothing was received: a stream that
        already yielded messages is never silently restarted (its consumer would see
        them twice, or miss what changed in between)."""
        multi = self._callable("stream", service, method, response)
        attempts = Attempts(self.retry)
        while True:
            attempts.start()
            call = multi(request, metadata=self._auth)
            received = False
            try:
                async for message in call:
                    received = True
                    yield message
                return
            except grpc.aio.AioRpcError as rpc_error:
                error = error_from_rpc(rpc_error)
            finally:
                call.cancel()   # a no-op once the call ended; ends it when the consumer stops early
            delay = None if received else attempts.delay_after(error)
            if delay is None:
                raise error
            log.info("retrying %s in %.2f s after %s (attempt %d of %d)", method, delay, error,
                     attempts.made + 1, self.retry.max_attempts)
            await asyncio.sleep(delay)

    # ------------------------------------------------------------------ SnapshotService

    async def create_disk_snapshot(self, namespace: str | None = None, *, virtual_disk_name: str, name: str = "",
                                   generate_name: str = "", required_consistency: bool | None = None,
                                   labels: Mapping[str, str] | None = None,
                                   annotations: Mapping[str, str] | None = None,
                                   request_id: str | None = None) -> Operation:
        """Snapshot a VirtualDisk. ``request_id``: the idempotency key (None: generated;
        "": none sent)."""
        request = snapshot_pb.CreateDiskSnapshotRequest(
            namespace=self._namespace(namespace), name=name, generate_name=generate_name,
            virtual_disk_name=virtual_disk_name, labels=labels, annotations=annotations,
            request_id=_idempotency_key(request_id))
        if required_consistency is not None:
            request.required_consistency = required_consistency
        return await self._unary(SNAPSHOTS, "CreateDiskSnapshot", request, Operation)

    async def get_disk_snapshot(self, namespace: str | None = None, *, name: str) -> snapshot_pb.DiskSnapshot:
        request = snapshot_pb.GetDiskSnapshotRequest(namespace=self._namespace(namespace), name=name)
        return await self._unary(SNAPSHOTS, "GetDiskSnapshot", request, snapshot_pb.DiskSnapshot)

    async def list_disk_snapshots(self, namespace: str | None = None, *, page_size: int = 0, page_token: str = "",
                                  label_selector: str = "") -> snapshot_pb.ListDiskSnapshotsResponse:
        request = snapshot_pb.ListDiskSnapshotsRequest(namespace=self._namespace(namespace), page_size=page_size,
                                                       page_token=page_token, label_selector=label_selector)
        return await self._unary(SNAPSHOTS, "ListDiskSnapshots", request, snapshot_pb.ListDiskSnapshotsResponse)

    async def iter_disk_snapshots(self, namespace: str | None = None, *, page_size: int = 0,
                                  label_selector: str = "") -> AsyncIterator[snapshot_pb.DiskSnapshot]:
        """Every disk snapshot of the namespace, page after page."""
        async for page in _pages(lambda token: self.list_disk_snapshots(
                namespace, page_size=page_size, label_selector=label_selector, page_token=token)):
            for item in page.disk_snapshots:
                yield item

    async def delete_disk_snapshot(self, namespace: str | None = None, *, name: str,
                                   request_id: str | None = None) -> Operation:
        request = snapshot_pb.DeleteDiskSnapshotRequest(namespace=self._namespace(namespace), name=name,
                                                        request_id=_idempotency_key(request_id))
        return await self._unary(SNAPSHOTS, "DeleteDiskSnapshot", request, Operation)

    def watch_disk_snapshots(self, namespace: str | None = None, *,
                             name: str = "") -> Stream[snapshot_pb.DiskSnapshotEvent]:
        """The current disk snapshots (ADDED), then every change. A watch that falls behind
        ends with Aborted, reason WATCH_OVERFLOW: list again, then watch again."""
        request = snapshot_pb.WatchDiskSnapshotsRequest(namespace=self._namespace(namespace), name=name)
        return self._stream(SNAPSHOTS, "WatchDiskSnapshots", request, snapshot_pb.DiskSnapshotEvent)

    async def create_virtual_machine_snapshot(
            self, namespace: str | None = None, *, virtual_machine_name: str, name: str = "",
            generate_name: str = "", required_consistency: bool | None = None,
            keep_ip_address: KeepIpAddress | str = _KEEP_IP_UNSPECIFIED,
            labels: Mapping[str, str] | None = None, annotations: Mapping[str, str] | None = None,
            request_id: str | None = None) -> Operation:
        request = snapshot_pb.CreateVirtualMachineSnapshotRequest(
            namespace=self._namespace(namespace), name=name, generate_name=generate_name,
            virtual_machine_name=virtual_machine_name,
            keep_ip_address=_enum(snapshot_pb.VirtualMachineSnapshot.KeepIpAddress, keep_ip_address),
            labels=labels, annotations=annotations, request_id=_idempotency_key(request_id))
        if required_consistency is not None:
            request.required_consistency = required_consistency
        return await self._unary(SNAPSHOTS, "CreateVirtualMachineSnapshot", request, Operation)

    async def get_virtual_machine_snapshot(self, namespace: str | None = None, *,
                                           name: str) -> snapshot_pb.VirtualMachineSnapshot:
        request = snapshot_pb.GetVirtualMachineSnapshotRequest(namespace=self._namespace(namespace), name=name)
        return await self._unary(SNAPSHOTS, "GetVirtualMachineSnapshot", request, snapshot_pb.VirtualMachineSnapshot)

    async def list_virtual_machine_snapshots(
            self, namespace: str | None = None, *, page_size: int = 0, page_token: str = "",
            label_selector: str = "") -> snapshot_pb.ListVirtualMachineSnapshotsResponse:
        request = snapshot_pb.ListVirtualMachineSnapshotsRequest(
            namespace=self._namespace(namespace), page_size=page_size, page_token=page_token,
            label_selector=label_selector)
        return await self._unary(SNAPSHOTS, "ListVirtualMachineSnapshots", request,
                                 snapshot_pb.ListVirtualMachineSnapshotsResponse)

    async def iter_virtual_machine_snapshots(
            self, namespace: str | None = None, *, page_size: int = 0,
            label_selector: str = "") -> AsyncIterator[snapshot_pb.VirtualMachineSnapshot]:
        async for page in _pages(lambda token: self.list_virtual_machine_snapshots(
                namespace, page_size=page_size, label_selector=label_selector, page_token=token)):
            for item in page.virtual_machine_snapshots:
                yield item

    async def delete_virtual_machine_snapshot(self, namespace: str | None = None, *, name: str,
                                              request_id: str | None = None) -> Operation:
        request = snapshot_pb.DeleteVirtualMachineSnapshotRequest(
            namespace=self._namespace(namespace), name=name, request_id=_idempotency_key(request_id))
        return await self._unary(SNAPSHOTS, "DeleteVirtualMachineSnapshot", request, Operation)

    def watch_virtual_machine_snapshots(self, namespace: str | None = None, *,
                                        name: str = "") -> Stream[snapshot_pb.VirtualMachineSnapshotEvent]:
        request = snapshot_pb.WatchVirtualMachineSnapshotsRequest(namespace=self._namespace(namespace), name=name)
        return self._stream(SNAPSHOTS, "WatchVirtualMachineSnapshots", request,
                            snapshot_pb.VirtualMachineSnapshotEvent)

    # ------------------------------------------------------------------ RestoreService

    async def restore_disk(self, namespace: str | None = None, *, name: str, disk_snapshot_name: str,
                           size: str = "", storage_class_name: str = "", labels: Mapping[str, str] | None = None,
                           request_id: str | None = None) -> Operation:
        request = restore_pb.RestoreDiskRequest(
            namespace=self._namespace(namespace), name=name, disk_snapshot_name=disk_snapshot_name, size=size,
            storage_class_name=storage_class_name, labels=labels, request_id=_idempotency_key(request_id))
        return await self._unary(RESTORES, "RestoreDisk", request, Operation)

    async def restore_virtual_machine(self, namespace: str | None = None, *, virtual_machine_name: str,
                                      virtual_machine_snapshot_name: str,
                                      mode: ApplyMode | str = common_pb2.APPLY_MODE_UNSPECIFIED,
                                      request_id: str | None = None) -> Operation:
        """``mode`` unspecified is STRICT; DRY_RUN reports conflicts per resource."""
        request = restore_pb.RestoreVirtualMachineRequest(
            namespace=self._namespace(namespace), virtual_machine_name=virtual_machine_name,
            virtual_machine_snapshot_name=virtual_machine_snapshot_name, mode=_enum(common_pb2.ApplyMode, mode),
            request_id=_idempotency_key(request_id))
        return await self._unary(RESTORES, "RestoreVirtualMachine", request, Operation)

    # ------------------------------------------------------------------ CloneService

    async def clone_virtual_machine(self, namespace: str | None = None, *, virtual_machine_name: str,
                                    mode: ApplyMode | str,
                                    name_replacements: Iterable[common_pb2.NameReplacement] = (),
                                    customization: common_pb2.Customization | None = None,
                                    request_id: str | None = None) -> Operation:
        """Clone a stopped VM. Renames: ``rename(name, to)`` entries and/or
        ``Customization(name_prefix=..., name_suffix=...)``."""
        request = clone_pb.CloneVirtualMachineRequest(
            namespace=self._namespace(namespace), virtual_machine_name=virtual_machine_name,
            mode=_enum(common_pb2.ApplyMode, mode), name_replacements=name_replacements,
            customization=customization, request_id=_idempotency_key(request_id))
        return await self._unary(CLONES, "CloneVirtualMachine", request, Operation)

    async def create_virtual_machine_from_snapshot(self, namespace: str | None = None, *,
                                                   virtual_machine_snapshot_name: str,
                                                   mode: ApplyMode | str,
                                                   name_replacements: Iterable[common_pb2.NameReplacement] = (),
                                                   customization: common_pb2.Customization | None = None,
                                                   request_id: str | None = None) -> Operation:
        request = clone_pb.CreateVirtualMachineFromSnapshotRequest(
            namespace=self._namespace(namespace), virtual_machine_snapshot_name=virtual_machine_snapshot_name,
            mode=_enum(common_pb2.ApplyMode, mode), name_replacements=name_replacements,
            customization=customization, request_id=_idempotency_key(request_id))
        return await self._unary(CLONES, "CreateVirtualMachineFromSnapshot", request, Operation)

    # ------------------------------------------------------------------ ExportService

    def export_disk(self, namespace: str | None = None, *, name: str,
                    ttl: timedelta | float | Duration | None = None, range: export_pb.ByteRange | None = None,
                    expand_holes: bool = False, whole_image_sha256: bool = False,
                    if_etag: str = "") -> Stream[export_pb.ExportChunk]:
        """The bytes of a VirtualDisk (its VM stopped): metadata, data and holes in offset
        order, then the summary. ``save_export`` writes such a stream to a file."""
        request = export_pb.ExportDiskRequest(
            namespace=self._namespace(namespace), name=name, ttl=_duration(ttl), range=range,
            expand_holes=expand_holes, whole_image_sha256=whole_image_sha256, if_etag=if_etag)
        return self._stream(EXPORTS, "ExportDisk", request, export_pb.ExportChunk)

    def export_disk_snapshot(self, namespace: str | None = None, *, name: str,
                             ttl: timedelta | float | Duration | None = None,
                             range: export_pb.ByteRange | None = None, expand_holes: bool = False,
                             whole_image_sha256: bool = False, if_etag: str = "") -> Stream[export_pb.ExportChunk]:
        request = export_pb.ExportDiskSnapshotRequest(
            namespace=self._namespace(namespace), name=name, ttl=_duration(ttl), range=range,
            expand_holes=expand_holes, whole_image_sha256=whole_image_sha256, if_etag=if_etag)
        return self._stream(EXPORTS, "ExportDiskSnapshot", request, export_pb.ExportChunk)

    # ------------------------------------------------------------------ OperationService

    async def get_operation(self, operation_id: str) -> Operation:
        request = operations_pb.GetOperationRequest(operation_id=operation_id)
        return await self._unary(OPERATIONS, "GetOperation", request, Operation)

    async def list_operations(self, namespace: str = "", *, type: OperationType | str = Operation.TYPE_UNSPECIFIED,
                              state: OperationState | str = Operation.STATE_UNSPECIFIED, actor: str = "",
                              page_size: int = 0, page_token: str = "") -> operations_pb.ListOperationsResponse:
        """One page of operations, newest first; empty filters match everything."""
        request = operations_pb.ListOperationsRequest(
            namespace=namespace, type=_enum(Operation.Type, type), state=_enum(Operation.State, state), actor=actor,
            page_size=page_size, page_token=page_token)
        return await self._unary(OPERATIONS, "ListOperations", request, operations_pb.ListOperationsResponse)

    async def iter_operations(self, namespace: str = "", *, type: OperationType | str = Operation.TYPE_UNSPECIFIED,
                              state: OperationState | str = Operation.STATE_UNSPECIFIED, actor: str = "",
                              page_size: int = 0) -> AsyncIterator[Operation]:
        async for page in _pages(lambda token: self.list_operations(
                namespace, type=type, state=state, actor=actor, page_size=page_size, page_token=token)):
            for item in page.operations:
                yield item

    def watch_operation(self, operation_id: str, *, after_version: int = 0) -> Stream[Operation]:
        """Every version of the operation after ``after_version``, ending when it is done.
        ``wait`` also survives the stream dropping."""
        request = operations_pb.WatchOperationRequest(operation_id=operation_id, after_version=after_version)
        return self._stream(OPERATIONS, "WatchOperation", request, Operation)

    async def get_operation_timeline(self, operation_id: str) -> operations_pb.GetOperationTimelineResponse:
        request = operations_pb.GetOperationTimelineRequest(operation_id=operation_id)
        return await self._unary(OPERATIONS, "GetOperationTimeline", request,
                                 operations_pb.GetOperationTimelineResponse)

    async def cancel_operation(self, operation_id: str, *, force: bool = False,
                               request_id: str | None = None) -> Operation:
        request = operations_pb.CancelOperationRequest(operation_id=operation_id, force=force,
                                                       request_id=_idempotency_key(request_id))
        return await self._unary(OPERATIONS, "CancelOperation", request, Operation)

    async def wait(self, operation: Operation | str, *, timeout: float | None = None,  # noqa: ASYNC109
                   on_update: OnUpdate | None = None, check: bool = True) -> Operation:
        """Follow an operation until it is done and return its final version.

        ``on_update`` (a function or coroutine function) sees every new version. A watch
        that drops (UNAVAILABLE, or ended early) is resumed: GetOperation, then a watch
        after the version read. Raises ``OperationFailed`` when it ends FAILED or CANCELLED
        (unless ``check`` is false) and ``WaitTimeout`` after ``timeout`` seconds."""
        operation_id = operation if isinstance(operation, str) else operation.id
        latest = None if isinstance(operation, str) else operation
        if latest is None or not latest.done:
            try:
                async with asyncio.timeout(timeout), \
                        contextlib.aclosing(self._versions(operation_id, latest.version if latest else 0)) as versions:
                    async for latest in versions:
                        if on_update is not None:
                            outcome = on_update(latest)
                            if inspect.isawaitable(outcome):
                                await outcome
            except TimeoutError:
                raise WaitTimeout(operation_id, timeout or 0.0, latest) from None
        assert latest is not None and latest.done, "the versions end only with a done operation"
        if check and latest.state in _TERMINAL_FAILURES:
            raise OperationFailed(latest)
        return latest

    async def _versions(self, operation_id: str, after_version: int) -> AsyncGenerator[Operation, None]:
        """New versions of the operation up to the done one, across dropped watches."""
        drops = 0
        while True:
            progressed = False
            try:
                async with self.watch_operation(operation_id, after_version=after_version) as stream:
                    async for version in stream:
                        progressed, drops, after_version = True, 0, version.version
                        yield version
                        if version.done:
                            return
                dropped: GatewayError | None = None
            except Unavailable as error:
                dropped = error
            if not progressed:
                drops += 1
                if drops >= self.retry.max_attempts:
                    raise dropped or Unavailable(
                        grpc.StatusCode.UNAVAILABLE, f"the watch of operation {operation_id} keeps ending early")
            log.info("the watch of operation %s ended before it was done (%s); resuming", operation_id,
                     dropped or "stream closed")
            current = await self.get_operation(operation_id)
            if current.version > after_version:
                after_version = current.version
                yield current
                if current.done:
                    return
            if not progressed:
                await asyncio.sleep(self.retry.backoff(drops))

    # ------------------------------------------------------------------ AuditService

    async def list_audit_events(self, namespace: str = "", *, actor: str = "", resource: str = "",
                                action: str = "", outcome: AuditOutcome | str = _ANY_OUTCOME,
                                since: datetime | Timestamp | None = None, until: datetime | Timestamp | None = None,
                                page_size: int = 0, page_token: str = "") -> audit_pb.ListAuditEventsResponse:
        """One page of audit events, oldest first; empty filters match everything."""
        request = audit_pb.ListAuditEventsRequest(
            namespace=namespace, actor=actor, resource=resource, action=action,
            outcome=_enum(audit_pb.AuditEvent.Outcome, outcome), since=_timestamp(since), until=_timestamp(until),
            page_size=page_size, page_token=page_token)
        return await self._unary(AUDIT, "ListAuditEvents", request, audit_pb.ListAuditEventsResponse)

    async def iter_audit_events(self, namespace: str = "", *, actor: str = "", resource: str = "",
                                action: str = "", outcome: AuditOutcome | str = _ANY_OUTCOME,
                                since: datetime | Timestamp | None = None, until: datetime | Timestamp | None = None,
                                page_size: int = 0) -> AsyncIterator[audit_pb.AuditEvent]:
        async for page in _pages(lambda token: self.list_audit_events(
                namespace, actor=actor, resource=resource, action=action, outcome=outcome, since=since,
                until=until, page_size=page_size, page_token=token)):
            for item in page.audit_events:
                yield item

    def export_audit_events(self, namespace: str = "", *, actor: str = "", resource: str = "", action: str = "",
                            outcome: AuditOutcome | str = _ANY_OUTCOME,
                            since: datetime | Timestamp | None = None,
                            until: datetime | Timestamp | None = None) -> Stream[audit_pb.AuditEvent]:
        """Every matching audit event, oldest first, in one stream."""
        request = audit_pb.ExportAuditEventsRequest(
            namespace=namespace, actor=actor, resource=resource, action=action,
            outcome=_enum(audit_pb.AuditEvent.Outcome, outcome), since=_timestamp(since), until=_timestamp(until))
        return self._stream(AUDIT, "ExportAuditEvents", request, audit_pb.AuditEvent)

    async def verify_audit_log(self) -> audit_pb.VerifyAuditLogResponse:
        return await self._unary(AUDIT, "VerifyAuditLog", audit_pb.VerifyAuditLogRequest(),
                                 audit_pb.VerifyAuditLogResponse)

    def verify_audit_log_stream(self) -> Stream[audit_pb.VerifyAuditLogProgress]:
        """Progress after each batch checked; the last message carries the result."""
        return self._stream(AUDIT, "VerifyAuditLogStream", audit_pb.VerifyAuditLogRequest(),
                            audit_pb.VerifyAuditLogProgress)


# ---------------------------------------------------------------------- exports to files

_ZEROS = bytes(1 << 20)


def _write_data(file: BinaryIO, position: int, data: bytes, digest: Any) -> None:
    file.seek(position)
    file.write(data)
    digest.update(data)


def _hash_zeros(digest: Any, length: int) -> None:
    while length > 0:
        piece = min(length, len(_ZEROS))
        digest.update(_ZEROS[:piece])
        length -= piece


async def save_export(chunks: AsyncIterable[export_pb.ExportChunk], file: BinaryIO) -> export_pb.ExportSummary:
    """Write an export stream into ``file`` (binary, seekable, e.g. ``open(path, "wb")``)
    and return its summary. Byte ``offset`` of the volume lands at ``offset - start`` of
    the file, ``start`` being the first offset the stream covers (0 for a whole volume);
    holes are not written (the file stays sparse). The stream must be complete and gapless
    and its bytes must match the summary's ``range_sha256``: else ``DataLoss``."""
    start: int | None = None
    position = 0
    digest = hashlib.sha256()
    async for chunk in chunks:
        which = chunk.WhichOneof("chunk")
        if which == "metadata":
            start = position = chunk.metadata.offset
            continue
        if start is None:
            raise DataLoss(grpc.StatusCode.DATA_LOSS, f"the export stream sent {which} before its metadata")
        if which == "summary":
            summary = chunk.summary
            covered = position - start
            if covered != summary.length or digest.hexdigest() != summary.range_sha256:
                raise DataLoss(grpc.StatusCode.DATA_LOSS, f"the export stream's bytes ({covered} received) do not "
                                                          f"match its summary ({summary.length} bytes)")
            await asyncio.to_thread(file.truncate, covered)   # a trailing hole still makes the file full-size
            return summary
        offset = chunk.data.offset if which == "data" else chunk.hole.offset
        if offset != position:
            raise DataLoss(grpc.StatusCode.DATA_LOSS, f"the export stream jumped from offset {position} to {offset}")
        if which == "data":
            await asyncio.to_thread(_write_data, file, position - start, chunk.data.data, digest)
            position += len(chunk.data.data)
        else:
            await asyncio.to_thread(_hash_zeros, digest, chunk.hole.length)
            position += chunk.hole.length
    raise DataLoss(grpc.StatusCode.DATA_LOSS, "the export stream ended without its summary")
