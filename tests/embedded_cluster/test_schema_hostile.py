"""Hostile input: replacing any value of a valid object with a value of another shape
gives a 422 (or the object back), never an exception the API server would turn into a 500."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from typing import Any

import pytest

from service.embedded_cluster.contracts import StatusError
from service.embedded_cluster.schema import SchemaAdmission, load_resource_types

API = "virtualization.deckhouse.io/v1alpha2"
TYPES = {rtype.kind: rtype for rtype in load_resource_types() if rtype.version in ("v1alpha1", "v1alpha2")}
ADMISSION = SchemaAdmission()
REPLACEMENTS: list[Any] = [None, "x", "", -1, 2**70, 1.5, float("nan"), True, [], [None], {}, {"__namespace__": 1},
                           [{"a": [1]}], {"a": {"b": None}}]

VALID: list[dict[str, Any]] = [
    {"apiVersion": API, "kind": "VirtualMachineOperation", "metadata": {"name": "op", "namespace": "demo"},
     "spec": {"type": "Clone", "virtualMachineName": "linux-vm", "clone": {
         "mode": "Strict", "customization": {"namePrefix": "c-"},
         "nameReplacement": [{"from": {"kind": "VirtualMachine", "name": "linux-vm"}, "to": "linux-vm-clone"}]}}},
    {"apiVersion": API, "kind": "VirtualMachine",
     "metadata": {"name": "linux-vm", "namespace": "demo", "labels": {"vm": "linux-vm"}},
     "spec": {"virtualMachineClassName": "generic", "cpu": {"cores": 1, "coreFraction": "10%"},
              "memory": {"size": "1Gi"}, "osType": "Legacy", "bootloader": "BIOS", "enableParavirtualization": False,
              "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "linux-vm-root"}]}},
    {"apiVersion": API, "kind": "VirtualMachine", "metadata": {"name": "cloud-vm", "namespace": "demo"},
     "spec": {"virtualMachineClassName": "generic", "cpu": {"cores": 1}, "memory": {"size": "1Gi"},
              "blockDeviceRefs": [{"kind": "VirtualDisk", "name": "cloud-vm-root"}],
              "provisioning": {"type": "UserData", "userData": "#cloud-config"}}},
    {"apiVersion": API, "kind": "VirtualMachineClass", "metadata": {"name": "generic"},
     "spec": {"cpu": {"type": "Discovery"},
              "sizingPolicies": [{"cores": {"min": 1, "max": 4, "step": 1}, "defaultCoreFraction": 10}]}},
    {"apiVersion": API, "kind": "ClusterVirtualImage", "metadata": {"name": "img"},
     "spec": {"dataSource": {"type": "ObjectRef",
                             "objectRef": {"kind": "VirtualDisk", "name": "d", "namespace": "demo"}}}},
    {"apiVersion": "deckhouse.io/v1alpha1", "kind": "DataExport", "metadata": {"name": "e", "namespace": "demo"},
     "spec": {"ttl": "2m", "publish": True, "targetRef": {"kind": "VirtualDisk", "name": "d"}},
     "status": {"url": "http://x", "conditions": [{"type": "Ready", "status": "True"}]}},
]


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    if isinstance(value, dict):
        for key, item in value.items():
            yield (*prefix, key)
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for position, item in enumerate(value):
            yield (*prefix, position)
            yield from paths(item, (*prefix, position))


def replaced(obj: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    result = copy.deepcopy(obj)
    parent: Any = result
    for step in path[:-1]:
        parent = parent[step]
    parent[path[-1]] = copy.deepcopy(value)
    return result


@pytest.mark.parametrize("valid", VALID, ids=lambda obj: f"{obj['kind']}/{obj['metadata']['name']}")
def test_every_mutation_is_admitted_or_rejected_with_a_status(valid: dict[str, Any]) -> None:
    rtype = TYPES[valid["kind"]]
    stored = ADMISSION.admit(rtype, valid, None)
    outcomes = {"admitted": 0, "rejected": 0}
    for path in paths(valid):
        if path in (("apiVersion",), ("kind",)):
            continue
        for value in REPLACEMENTS:
            mutated = replaced(valid, path, value)
            for subresource, old in (("", None), ("", stored), ("status", stored)):
                try:
                    result = ADMISSION.admit(rtype, mutated, old, subresource=subresource)
                except StatusError as error:
                    assert error.code in (400, 422), (path, value, error)
                    assert error.causes or error.code == 400
                    outcomes["rejected"] += 1
                else:
                    assert isinstance(result, dict)
                    outcomes["admitted"] += 1
    assert outcomes["rejected"] > 0 and outcomes["admitted"] > 0


def test_deep_nesting_is_a_bad_request_not_a_crash() -> None:
    deep: Any = "leaf"
    for _ in range(5000):
        deep = {"x": deep}
    (obj,) = [copy.deepcopy(obj) for obj in VALID if obj["metadata"]["name"] == "linux-vm"]
    obj["status"] = {"guestOSInfo": deep}
    with pytest.raises(StatusError) as caught:
        ADMISSION.admit(TYPES["VirtualMachine"], obj, None, subresource="status")
    assert caught.value.code == 400


def test_patterns_run_in_linear_time() -> None:
    # Backtracking regex engines take exponential time on this for the CRD's URL pattern.
    disk = {"apiVersion": API, "kind": "VirtualDisk", "metadata": {"name": "d", "namespace": "demo"},
            "spec": {"dataSource": {"type": "HTTP", "http": {"url": "http://" + "A" * 50_000 + " "}}}}
    started = time.perf_counter()
    with pytest.raises(StatusError) as caught:
        ADMISSION.admit(TYPES["VirtualDisk"], disk, None)
    assert time.perf_counter() - started < 1.0
    assert [c.field for c in caught.value.causes] == ["spec.dataSource.http.url"]


@pytest.mark.parametrize("name", ["linux-vm\n", "a" * 1_000_000, "linux-vm\u0000"])
def test_names_are_checked_like_go_does(name: str) -> None:
    obj = copy.deepcopy(VALID[0])
    obj["metadata"]["name"] = name
    started = time.perf_counter()
    with pytest.raises(StatusError) as caught:
        ADMISSION.admit(TYPES["VirtualMachineOperation"], obj, None)
    assert time.perf_counter() - started < 1.0
    assert {c.field for c in caught.value.causes} == {"metadata.name"}
