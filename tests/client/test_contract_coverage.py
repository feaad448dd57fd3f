"""Every RPC of the proto's services has a ``GatewayClient`` method, read off the service
descriptors: adding an RPC (or a request field) without the client's method (or
parameter) fails here."""

from __future__ import annotations

import inspect
import re
from typing import Any, get_type_hints

import pytest
from google.protobuf.descriptor import MethodDescriptor

from service.api.grpc_gen.dvp.snapshots.v1 import (
    audit_service_pb2,
    clone_service_pb2,
    export_service_pb2,
    operation_service_pb2,
    restore_service_pb2,
    snapshot_service_pb2,
)
from service.client import gateway
from service.client.gateway import GatewayClient, Stream

MODULES = (snapshot_service_pb2, restore_service_pb2, clone_service_pb2, export_service_pb2,
           operation_service_pb2, audit_service_pb2)
RPCS: list[MethodDescriptor] = [method for module in MODULES for service in module.DESCRIPTOR.services_by_name.values()
                                for method in service.methods]
# Request fields a method sets itself rather than taking them as parameters: none today.
NOT_PARAMETERS: dict[str, set[str]] = {}


def snake_case(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def test_the_contract_has_the_25_rpcs_of_6_services() -> None:
    assert len(RPCS) == 25
    assert len({rpc.containing_service.full_name for rpc in RPCS}) == 6


@pytest.mark.parametrize("rpc", RPCS, ids=[rpc.name for rpc in RPCS])
def test_every_rpc_has_a_client_method_taking_its_request_fields(rpc: MethodDescriptor) -> None:
    method = getattr(GatewayClient, snake_case(rpc.name), None)
    assert method is not None, f"GatewayClient has no {snake_case(rpc.name)} for {rpc.full_name}"
    parameters = inspect.signature(method).parameters
    fields = [field.name for field in rpc.input_type.fields]
    missing = set(fields) - set(parameters) - NOT_PARAMETERS.get(rpc.name, set())
    assert not missing, f"{snake_case(rpc.name)} does not take {sorted(missing)}"
    if "namespace" in fields:
        assert list(parameters)[1] == "namespace", "namespace comes first"
    if "request_id" in fields:   # a mutation: the idempotency key is generated when not given
        assert parameters["request_id"].default is None

    hints: dict[str, Any] = get_type_hints(method, vars(gateway))
    returned = hints["return"]
    if rpc.server_streaming:
        assert getattr(returned, "__origin__", None) is Stream
        assert returned.__args__[0].DESCRIPTOR is rpc.output_type
    else:
        assert inspect.iscoroutinefunction(method)
        assert returned.DESCRIPTOR is rpc.output_type


@pytest.mark.parametrize("rpc", [rpc for rpc in RPCS if rpc.name.startswith("List")],
                         ids=lambda rpc: rpc.name)
def test_every_list_rpc_has_an_iterator_over_all_pages(rpc: MethodDescriptor) -> None:
    iterator = getattr(GatewayClient, "iter_" + snake_case(rpc.name).removeprefix("list_"), None)
    assert iterator is not None and inspect.isasyncgenfunction(iterator)
    fields = {field.name for field in rpc.input_type.fields} - {"page_token"}
    assert fields <= set(inspect.signature(iterator).parameters)
