"""Printer columns: the JSONPath subset CRDs use, cell typing and AGE like kubectl."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from service.embedded_cluster.apiserver import jsonpath
from service.embedded_cluster.apiserver.table import TableConverter, human_duration
from service.embedded_cluster.schema import load_resource_types

DOC = {"metadata": {"annotations": {"a.b/c": "yes"}},
       "status": {"phase": "Ready", "conditions": [{"type": "Ready", "status": "False"},
                                                   {"type": "InUse", "status": "True"}],
                  "attached": [{"name": "vm1", "mounted": False}, {"name": "vm2", "mounted": True}],
                  "size": 3}}


@pytest.mark.parametrize(("path", "expected"), [
    (".status.phase", ["Ready"]),
    ("{.status.phase}", ["Ready"]),
    (".status.conditions[?(@.type=='InUse')].status", ["True"]),
    (".status.conditions[?(@.type!='InUse')].type", ["Ready"]),
    (".status.attached[?(@.mounted==true)].name", ["vm2"]),
    (".status.attached[*].name", ["vm1", "vm2"]),
    (".status.attached[0].name", ["vm1"]),
    (".status.attached[-1].name", ["vm2"]),
    (".status.attached[5].name", []),
    (".metadata.annotations.a\\.b\\/c", ["yes"]),
    (".metadata.annotations['a.b/c']", ["yes"]),
    (".status.missing.deeper", []),
])
def test_jsonpath(path: str, expected: list[object]) -> None:
    assert jsonpath.find(jsonpath.parse(path), DOC) == expected


@pytest.mark.parametrize("path", ["status.phase", ".a[?(@.x=~'y')]", ".a[", ".a[?(@.x==nope)]"])
def test_jsonpath_rejects(path: str) -> None:
    with pytest.raises(jsonpath.JsonPathError):
        jsonpath.parse(path)


@pytest.mark.parametrize(("seconds", "shown"), [
    (-5, "<invalid>"), (0, "0s"), (119, "119s"), (150, "2m30s"), (600, "10m"), (3 * 3600, "3h"),
    (3 * 3600 + 120, "3h2m"), (30 * 3600, "30h"), (3 * 86400 + 3600, "3d1h"), (20 * 86400, "20d"),
    (800 * 86400, "2y70d"), (3000 * 86400, "8y"),
])
def test_human_duration(seconds: int, shown: str) -> None:
    assert human_duration(seconds) == shown


def test_virtual_disk_row() -> None:
    (rtype,) = [t for t in load_resource_types() if t.plural == "virtualdisks"]
    created = (datetime.now(UTC) - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ")
    disk = {"metadata": {"name": "linux-vm-root", "creationTimestamp": created},
            "status": {"phase": "Ready", "capacity": "10Gi", "progress": "100%",
                       "conditions": [{"type": "InUse", "status": "True"}]}}
    converter = TableConverter(rtype)
    names = [column["name"] for column in converter.definitions()]
    cells = dict(zip(names, converter.row(disk, "None")["cells"], strict=True))
    assert cells["Name"] == "linux-vm-root" and cells["Phase"] == "Ready" and cells["InUse"] == "True"
    assert cells["Age"] == "5m" and cells["VirtualMachine"] is None
    assert "object" not in converter.row(disk, "None")
