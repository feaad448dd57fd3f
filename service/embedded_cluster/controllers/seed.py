"""The demo namespace: the guide's objects (VM linux-vm, disk linux-vm-root, ...), so its examples work verbatim."""

from __future__ import annotations

import base64

from service.embedded_cluster.contracts import Obj, ObjectStore, StatusError

from .resources import (
    ANN_GUEST_AGENT,
    API_VERSION,
    CVI,
    KIND_CVI,
    KIND_VD,
    KIND_VI,
    KIND_VM,
    NAMESPACE,
    SECRET,
    VD,
    VI,
    VM,
    VMCLASS,
)

DEMO_IMAGE = "ubuntu-22-04"
IMAGE_URL = "https://cloud-images.ubuntu.com/jammy/current/jammy-server-cloudimg-amd64.img"
STORAGE_CLASS = "i-sds-replicated-thin-r2"
CLOUD_INIT = """#cloud-config
users:
  - name: cloud
    sudo: ALL=(ALL) NOPASSWD:ALL
    shell: /bin/bash
packages:
  - qemu-guest-agent
runcmd:
  - systemctl enable --now qemu-guest-agent.service
"""


def _disk(namespace: str, name: str, size: str, *, from_image: bool = True) -> Obj:
    disk_spec: Obj = {"persistentVolumeClaim": {"size": size, "storageClassName": STORAGE_CLASS}}
    if from_image:
        disk_spec["dataSource"] = {"type": "ObjectRef", "objectRef": {"kind": KIND_CVI, "name": DEMO_IMAGE}}
    return {"apiVersion": API_VERSION, "kind": KIND_VD, "metadata": {"name": name, "namespace": namespace},
            "spec": disk_spec}


def _vm(namespace: str, name: str, run_policy: str, *, agent: bool, devices: list[Obj],
        cloud_init: bool = False) -> Obj:
    vm_spec: Obj = {"virtualMachineClassName": "generic", "runPolicy": run_policy,
                    "cpu": {"cores": 1, "coreFraction": "10%"}, "memory": {"size": "1Gi"},
                    "blockDeviceRefs": devices}
    if cloud_init:
        vm_spec["provisioning"] = {"type": "UserDataRef", "userDataRef": {"kind": "Secret", "name": "cloud-init"}}
    return {"apiVersion": API_VERSION, "kind": KIND_VM,
            "metadata": {"name": name, "namespace": namespace, "labels": {"vm": name},
                         "annotations": {ANN_GUEST_AGENT: "true" if agent else "false"}},
            "spec": vm_spec}


def demo_objects(namespace: str) -> list[tuple[str, Obj]]:
    disk_ref = {"kind": KIND_VD}
    return [
        (NAMESPACE, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}),
        # The class every demo VM names; a real cluster ships "generic" too.
        (VMCLASS, {"apiVersion": API_VERSION, "kind": "VirtualMachineClass", "metadata": {"name": "generic"},
                   "spec": {"cpu": {"type": "Host"}}}),
        (CVI, {"apiVersion": API_VERSION, "kind": KIND_CVI, "metadata": {"name": DEMO_IMAGE},
               "spec": {"dataSource": {"type": "HTTP", "http": {"url": IMAGE_URL}}}}),
        (SECRET, {"apiVersion": "v1", "kind": "Secret", "type": "provisioning.virtualization.deckhouse.io/cloud-init",
                  "metadata": {"name": "cloud-init", "namespace": namespace},
                  "data": {"userData": base64.b64encode(CLOUD_INIT.encode()).decode()}}),
        (VD, _disk(namespace, "linux-vm-root", "10Gi")),
        (VM, _vm(namespace, "linux-vm", "AlwaysOn", agent=True, cloud_init=True,
                 devices=[{**disk_ref, "name": "linux-vm-root"}])),
        (VD, _disk(namespace, "stopped-vm-root", "10Gi")),
        (VM, _vm(namespace, "stopped-vm", "AlwaysOff", agent=True, devices=[{**disk_ref, "name": "stopped-vm-root"}])),
        (VD, _disk(namespace, "no-agent-vm-root", "10Gi")),
        (VM, _vm(namespace, "no-agent-vm", "AlwaysOn", agent=False,
                 devices=[{**disk_ref, "name": "no-agent-vm-root"}])),
        (VI, {"apiVersion": API_VERSION, "kind": KIND_VI, "metadata": {"name": "tools-image", "namespace": namespace},
              "spec": {"storage": "ContainerRegistry", "dataSource": {"type": "HTTP", "http": {"url": IMAGE_URL}}}}),
        (VD, _disk(namespace, "image-vm-root", "10Gi")),
        (VM, _vm(namespace, "image-vm", "AlwaysOn", agent=True,
                 devices=[{**disk_ref, "name": "image-vm-root"}, {"kind": KIND_VI, "name": "tools-image"}])),
        (VD, _disk(namespace, "spare-disk", "1Gi", from_image=False)),
    ]


DEMO_NAMESPACE = "demo"


async def seed_demo(store: ObjectStore, namespace: str = DEMO_NAMESPACE) -> None:
    """Create the demo objects that are missing (idempotent); the controllers make them Ready."""
    for resource, obj in demo_objects(namespace):
        try:
            await store.create(resource, obj)
        except StatusError as err:
            if err.code != 409:
                raise
