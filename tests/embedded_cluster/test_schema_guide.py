"""Every manifest of the guide (seed/snapshots.ru.md) is admitted: the ones it gives
verbatim as they are, the templated ones (placeholders, the guide's clone spelling) in
the spelling of the CRDs."""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from service.embedded_cluster.schema import SchemaAdmission, load_resource_types

GUIDE = Path(__file__).resolve().parents[2].parent / "shared" / "seed" / "snapshots.ru.md"
API = "virtualization.deckhouse.io/v1alpha2"
TYPES = {rtype.kind: rtype for rtype in load_resource_types() if rtype.version in ("v1alpha2", "v1alpha1")}
ADMISSION = SchemaAdmission()


def guide_manifests() -> list[dict[str, Any]]:
    """The YAML blocks of the guide that are whole objects (apiVersion and kind)."""
    if not GUIDE.is_file():
        pytest.fail(f"the guide is missing: expected {GUIDE} (the shared seed next to the clone)")
    text = GUIDE.read_text(encoding="utf-8")
    manifests = []
    for block in re.findall(r"```yaml\n(.*?)```", text, flags=re.DOTALL):
        body = "\n".join(line for line in block.splitlines() if not line.startswith(("d8 ", "EOF")))
        top_level_object = re.search(r"^apiVersion:", body, flags=re.MULTILINE)
        document = yaml.safe_load(body) if top_level_object else None
        if isinstance(document, dict) and document.get("kind"):
            manifests.append(document)
    return manifests


def is_templated(manifest: dict[str, Any]) -> bool:
    return "<" in yaml.safe_dump(manifest)


def with_namespace(manifest: dict[str, Any]) -> dict[str, Any]:
    result = copy.deepcopy(manifest)
    result["metadata"].setdefault("namespace", "demo")
    return result


def admit(manifest: dict[str, Any]) -> dict[str, Any]:
    return ADMISSION.admit(TYPES[manifest["kind"]], with_namespace(manifest), None)


def op(kind: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    return {"apiVersion": API, "kind": kind, "metadata": {"name": name}, "spec": spec}


NAME_REPLACEMENT = [{"from": {"kind": "VirtualMachine", "name": "linux-vm"}, "to": "linux-vm-clone"}]
CUSTOMIZATION = {"namePrefix": "clone-", "nameSuffix": "-copy"}
MODES = ("DryRun", "Strict", "BestEffort")
# The guide's templated manifests, filled in and in the CRDs' spelling.
TEMPLATED = [
    *(op("VirtualMachineOperation", f"restore-{mode.lower()}", {
        "type": "Restore", "virtualMachineName": "linux-vm",
        "restore": {"mode": mode, "virtualMachineSnapshotName": "linux-vm-snapshot"}}) for mode in MODES),
    *(op("VirtualMachineOperation", f"clone-{mode.lower()}", {
        "type": "Clone", "virtualMachineName": "linux-vm",
        "clone": {"mode": mode, "nameReplacement": NAME_REPLACEMENT, "customization": CUSTOMIZATION}})
      for mode in MODES),
    op("VirtualMachineOperation", "clone-prefix-only", {
        "type": "Clone", "virtualMachineName": "linux-vm",
        "clone": {"mode": "Strict", "customization": {"namePrefix": "clone-"}}}),
    *(op("VirtualMachineSnapshotOperation", f"from-snapshot-{mode.lower()}", {
        "type": "CreateVirtualMachine", "virtualMachineSnapshotName": "linux-vm-snapshot",
        "createVirtualMachine": {"mode": mode, "nameReplacement": NAME_REPLACEMENT, "customization": CUSTOMIZATION}})
      for mode in MODES),
]


def test_the_guide_has_the_manifests_this_suite_covers() -> None:
    kinds = sorted(manifest["kind"] for manifest in guide_manifests())
    assert kinds == ["VirtualDisk", "VirtualDiskSnapshot", "VirtualMachineOperation", "VirtualMachineOperation",
                     "VirtualMachineSnapshot", "VirtualMachineSnapshotOperation"]
    assert {manifest["kind"] for manifest in guide_manifests() if is_templated(manifest)} <= {
        manifest["kind"] for manifest in TEMPLATED}


@pytest.mark.parametrize("manifest", [m for m in guide_manifests() if not is_templated(m)],
                         ids=lambda manifest: f"{manifest['kind']}/{manifest['metadata']['name']}")
def test_verbatim_guide_manifest_is_admitted_unchanged_but_for_defaults(manifest: dict[str, Any]) -> None:
    admitted = admit(manifest)
    for key, value in manifest["spec"].items():
        assert admitted["spec"][key] == value


@pytest.mark.parametrize("manifest", TEMPLATED, ids=lambda manifest: manifest["metadata"]["name"])
def test_templated_guide_manifest_in_crd_spelling_is_admitted(manifest: dict[str, Any]) -> None:
    assert admit(manifest)["spec"] == manifest["spec"]


def test_the_guides_disk_snapshot_restores_into_a_disk_with_its_defaults() -> None:
    (disk,) = [m for m in guide_manifests() if m["kind"] == "VirtualDisk"]
    admitted = admit(disk)
    assert admitted["spec"]["dataSource"] == {"type": "ObjectRef",
                                              "objectRef": {"kind": "VirtualDiskSnapshot",
                                                            "name": "linux-vm-root-snapshot"}}
    assert admitted["spec"]["persistentVolumeClaim"]["size"] == "10Gi"
