"""load_resource_types: one ResourceType per served version of every bundled CRD."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.embedded_cluster.schema import load_resource_types
from service.embedded_cluster.schema.loader import CrdError, load_crds, resource_types_of

GROUP = "virtualization.deckhouse.io"


def test_every_served_version_of_every_crd_is_a_type() -> None:
    keys = sorted((rtype.key, rtype.version) for rtype in load_resource_types())
    assert len(keys) == len(set(keys)) == 15
    assert (f"virtualmachineclasses.{GROUP}", "v1alpha2") in keys
    assert (f"virtualmachineclasses.{GROUP}", "v1alpha3") in keys
    assert ("dataexports.deckhouse.io", "v1alpha1") in keys


def test_vm_operation_type_is_filled_from_its_crd() -> None:
    (vmop,) = [t for t in load_resource_types() if t.kind == "VirtualMachineOperation"]
    assert (vmop.group, vmop.version, vmop.plural, vmop.singular) == (
        GROUP, "v1alpha2", "virtualmachineoperations", "virtualmachineoperation")
    assert vmop.namespaced and vmop.has_status
    assert (vmop.list_kind, vmop.short_names, vmop.categories) == (
        "VirtualMachineOperationList", ("vmop",), ("virtualization",))
    assert [column["name"] for column in vmop.printer_columns] == ["Phase", "Progress", "Type", "VirtualMachine",
                                                                   "Age"]
    assert all("description" not in column for column in vmop.printer_columns)
    assert vmop.schema is not None and "spec" in vmop.schema["properties"]
    assert vmop.api_version == f"{GROUP}/v1alpha2"


def test_defaults_for_names_the_crd_omits_and_cluster_scope() -> None:
    types = {t.kind: t for t in load_resource_types()}
    assert types["VirtualDiskSnapshot"].list_kind == "VirtualDiskSnapshotList"
    assert types["VirtualDiskSnapshot"].short_names == ("vdsnapshot", "vds")
    assert not types["ClusterVirtualImage"].namespaced
    assert not types["VirtualMachineIPAddressLease"].namespaced
    assert types["VirtualMachine"].categories == ("all", "virtualization")


def test_data_export_type() -> None:
    (export,) = [t for t in load_resource_types() if t.kind == "DataExport"]
    assert (export.group, export.version, export.plural, export.list_kind) == (
        "deckhouse.io", "v1alpha1", "dataexports", "DataExportList")
    assert export.namespaced and export.has_status and "de" in export.short_names
    assert {column["name"] for column in export.printer_columns} >= {"Ready", "Age"}


def test_types_are_parsed_once_and_shared() -> None:
    first, second = load_resource_types(), load_resource_types()
    assert first is not second
    assert all(a is b for a, b in zip(first, second, strict=True))


def test_a_bad_crd_or_an_empty_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(CrdError):
        load_crds(tmp_path)
    with pytest.raises(CrdError):
        resource_types_of({"kind": "ConfigMap"}, "x.yaml")
    with pytest.raises(CrdError):
        resource_types_of({"kind": "CustomResourceDefinition", "spec": {"group": "g", "names": {"kind": "K"}}})
    unserved = {"kind": "CustomResourceDefinition",
                "spec": {"group": "g.io", "names": {"kind": "K", "plural": "ks"},
                         "versions": [{"name": "v1", "served": False}]}}
    assert resource_types_of(unserved) == []
