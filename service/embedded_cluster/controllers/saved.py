"""What a VM snapshot keeps in its Secret: the VM's spec (not its running config), addresses, disks."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field

from service.embedded_cluster.contracts import Obj

from .kube import name_of, spec, status, uid_of
from .resources import ANN_FROZEN_BY, ANN_MAINTENANCE, ANN_POWER, API_VERSION, KIND_SECRET, KIND_VD

# Annotations that describe the simulation's runtime state, never part of a saved configuration.
RUNTIME_ANNOTATIONS = frozenset({ANN_FROZEN_BY, ANN_POWER, ANN_MAINTENANCE})
SECRET_KEY = "configuration.json"


@dataclass
class SavedDisk:
    name: str
    snapshot: str
    spec: Obj
    labels: dict[str, str] = field(default_factory=dict)


@dataclass
class SavedMachine:
    name: str
    uid: str
    spec: Obj
    labels: dict[str, str]
    annotations: dict[str, str]
    ip_name: str = ""
    ip_address: str = ""
    ip_type: str = "Auto"
    macs: dict[str, str] = field(default_factory=dict)        # VirtualMachineMACAddress name -> address
    disks: list[SavedDisk] = field(default_factory=list)
    secrets: dict[str, Obj] = field(default_factory=dict)      # provisioning Secret name -> data

    def to_secret_data(self) -> dict[str, str]:
        raw = json.dumps({
            "name": self.name, "uid": self.uid, "spec": self.spec, "labels": self.labels,
            "annotations": self.annotations, "ipName": self.ip_name, "ipAddress": self.ip_address,
            "ipType": self.ip_type, "macs": self.macs,
            "disks": [{"name": d.name, "snapshot": d.snapshot, "spec": d.spec, "labels": d.labels} for d in self.disks],
            "secrets": self.secrets,
        }, sort_keys=True)
        return {SECRET_KEY: base64.b64encode(raw.encode()).decode()}

    @classmethod
    def from_secret(cls, secret: Obj) -> SavedMachine | None:
        try:
            data = json.loads(base64.b64decode(str((secret.get("data") or {})[SECRET_KEY])))
            return cls(name=str(data["name"]), uid=str(data["uid"]), spec=dict(data["spec"]),
                       labels=dict(data["labels"]), annotations=dict(data["annotations"]),
                       ip_name=str(data["ipName"]), ip_address=str(data["ipAddress"]), ip_type=str(data["ipType"]),
                       macs=dict(data["macs"]),
                       disks=[SavedDisk(str(d["name"]), str(d["snapshot"]), dict(d["spec"]), dict(d["labels"]))
                              for d in data["disks"]],
                       secrets=dict(data["secrets"]))
        except (KeyError, TypeError, ValueError):
            return None


def capture(vm: Obj, vmip: Obj | None, macs: dict[str, str], disks: list[tuple[Obj, str]],
            secrets: dict[str, Obj], *, keep_ip: bool) -> SavedMachine:
    """The VM's desired state (spec, so pending-restart changes are captured) plus its dependencies."""
    vm_spec = json.loads(json.dumps(spec(vm)))
    ip_name = str(status(vm).get("virtualMachineIPAddressName") or vm_spec.get("virtualMachineIPAddressName") or "")
    if keep_ip and ip_name:
        vm_spec["virtualMachineIPAddressName"] = ip_name
    metadata = vm.get("metadata", {})
    return SavedMachine(
        name=name_of(vm), uid=uid_of(vm), spec=vm_spec, labels=dict(metadata.get("labels") or {}),
        annotations={k: v for k, v in (metadata.get("annotations") or {}).items() if k not in RUNTIME_ANNOTATIONS},
        ip_name=ip_name if keep_ip or spec(vm).get("virtualMachineIPAddressName") else "",
        ip_address=str(status(vmip).get("address") or "") if vmip is not None else "",
        ip_type="Static" if keep_ip else str(spec(vmip).get("type") or "Auto") if vmip is not None else "Auto",
        macs=macs,
        disks=[SavedDisk(name_of(d), snap, {k: v for k, v in spec(d).items()},
                         dict(d.get("metadata", {}).get("labels") or {})) for d, snap in disks],
        secrets=secrets)


def provisioning_secret_names(vm_spec: Obj) -> list[str]:
    provisioning = vm_spec.get("provisioning") or {}
    names = []
    for key in ("userDataRef", "sysprepRef"):
        ref = provisioning.get(key) or {}
        if ref.get("name"):
            names.append(str(ref["name"]))
    return names


def saved_resources(saved: SavedMachine) -> list[Obj]:
    """``status.resources`` of a VM snapshot: what it saved (images are not saved)."""
    items: list[Obj] = [{"apiVersion": API_VERSION, "kind": "VirtualMachine", "name": saved.name}]
    items += [{"apiVersion": "v1", "kind": KIND_SECRET, "name": n} for n in sorted(saved.secrets)]
    items += [{"apiVersion": API_VERSION, "kind": KIND_VD, "name": d.name} for d in saved.disks]
    if saved.ip_name:
        items.append({"apiVersion": API_VERSION, "kind": "VirtualMachineIPAddress", "name": saved.ip_name})
    items += [{"apiVersion": API_VERSION, "kind": "VirtualMachineMACAddress", "name": n} for n in sorted(saved.macs)]
    return items


def vm_snapshot_secret_name(snapshot: Obj) -> str:
    return f"d8v-vms-{uid_of(snapshot)}"


def vd_snapshot_name(disk: str, snapshot: Obj) -> str:
    return f"{disk}-{uid_of(snapshot)}"

