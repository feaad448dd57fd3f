"""VirtualMachine: run policy -> phase, addresses, block devices, guest agent and fsfreeze state."""

from __future__ import annotations

from typing import Any

from service.embedded_cluster.contracts import Obj

from .kube import (
    annotation,
    generation_of,
    name_of,
    owner_reference,
    phase,
    remove_condition,
    set_condition,
    spec,
    status,
    uid_of,
)
from .queries import FREEZABLE_VM_PHASES, LIVE_VM_PHASES, block_device_refs, image_for_ref
from .resources import (
    ANN_FROZEN_BY,
    ANN_GUEST_AGENT,
    ANN_MAINTENANCE,
    ANN_MIGRATING,
    ANN_POWER,
    API_VERSION,
    CVI,
    KIND_VD,
    KIND_VMIP,
    KIND_VMMAC,
    VD,
    VI,
    VM,
    VMIP,
    VMMAC,
    VMOP,
)
from .runtime import Mapper, Reconciler

NODE_NAME = "embedded-node-1"
READY_DISK_PHASES = frozenset({"Ready", "Resizing"})


def wants_running(vm: Obj) -> bool:
    if annotation(vm, ANN_MAINTENANCE):
        return False
    policy = spec(vm).get("runPolicy", "AlwaysOnUnlessStoppedManually")
    power = annotation(vm, ANN_POWER)
    if policy == "AlwaysOn":
        return True
    if policy == "AlwaysOff":
        return False
    if policy == "Manual":
        return power == "on"
    return power != "off"


def next_phase(current: str, running: bool, startable: bool, *, migrating: bool = False) -> str:
    """One step of the power state machine (``migrating``: the migrating knob is set on the VM)."""
    if running:
        if current in ("", "Stopped", "Pending"):
            return "Starting" if startable else "Pending"
        if current == "Starting":
            return "Running"
        if current == "Stopping":
            return "Stopped"
        if current in ("Running", "Migrating"):
            return "Migrating" if migrating else "Running"
        return current
    if current in ("Running", "Starting", "Degraded", "Pause", "Migrating"):
        return "Stopping"
    if current in ("", "Pending", "Stopping"):
        return "Stopped"
    return current


def ip_address_name(vm: Obj) -> str:
    return str(spec(vm).get("virtualMachineIPAddressName") or f"{name_of(vm)}-{uid_of(vm)[:8]}")


def mac_address_name(vm: Obj, index: int, network: Obj) -> str:
    return str(network.get("virtualMachineMACAddressName") or f"{name_of(vm)}-{uid_of(vm)[:8]}-mac{index}")


class MachineReconciler(Reconciler):
    resource = VM

    def watches(self) -> dict[str, Mapper]:
        same = self.same_namespace()
        return {VD: same, VI: same, VMIP: same, VMMAC: same, VMOP: same, CVI: lambda e: self._all_keys()}

    def _all_keys(self) -> list[tuple[str, str]]:
        return [(o["metadata"].get("namespace", ""), name_of(o)) for o in self.safe_list(VM, read_only=True)]

    async def reconcile(self, namespace: str, name: str) -> float | None:
        vm = self.store.get(VM, namespace, name)
        if vm is None:
            return None
        st = dict(status(vm))
        generation = generation_of(vm)
        if vm["metadata"].get("deletionTimestamp"):
            st["phase"] = "Terminating"
            await self.write_status(VM, vm, st)
            return None
        holder = annotation(vm, ANN_MAINTENANCE)
        if holder and phase(self.store.get(VMOP, namespace, holder)) not in ("Pending", "InProgress"):
            # The restore that held the VM stopped is gone (deleted mid-way): do not keep it stopped forever.
            vm["metadata"]["annotations"].pop(ANN_MAINTENANCE)
            await self.write(VM, vm)
            return None
        ip_ready = await self._ip_address(vm, st)
        macs_ready = await self._mac_addresses(vm, st)
        devices_ready = self._block_devices(vm, st)
        current = phase(vm)
        new_phase = next_phase(current, wants_running(vm), devices_ready and ip_ready and macs_ready,
                               migrating=annotation(vm, ANN_MIGRATING) == "true")
        st["phase"] = new_phase
        live = new_phase in LIVE_VM_PHASES
        for ref in st["blockDeviceRefs"]:
            ref["attached"] = bool(ref.pop("_ready")) and live
        self._runtime_conditions(vm, st, new_phase, generation)
        if live:
            st["nodeName"] = NODE_NAME
        else:
            st.pop("nodeName", None)
        st["observedGeneration"] = generation
        await self.write_status(VM, vm, st)
        return None

    async def _ip_address(self, vm: Obj, st: dict[str, Any]) -> bool:
        generation = generation_of(vm)
        ip_name = ip_address_name(vm)
        st["virtualMachineIPAddressName"] = ip_name
        vmip = self.store.get(VMIP, vm["metadata"]["namespace"], ip_name)
        if vmip is None and not spec(vm).get("virtualMachineIPAddressName"):
            vmip = await self.create(VMIP, {
                "apiVersion": API_VERSION, "kind": KIND_VMIP,
                "metadata": {"name": ip_name, "namespace": vm["metadata"]["namespace"],
                             "ownerReferences": [owner_reference(vm, controller=False)]},
                "spec": {"type": "Auto"}})
        address = str(status(vmip).get("address") or "") if vmip is not None else ""
        if address:
            st["ipAddress"] = address
            set_condition(st, "IPAddressReady", "True", "IPAddressReady", "", generation)
            return True
        st.pop("ipAddress", None)
        message = (f"The VirtualMachineIPAddress {ip_name!r} is not found." if vmip is None
                   else f"Waiting for the VirtualMachineIPAddress {ip_name!r} to be bound.")
        set_condition(st, "IPAddressReady", "False", "IPAddressNotReady", message, generation)
        return False

    async def _mac_addresses(self, vm: Obj, st: dict[str, Any]) -> bool:
        networks: list[Obj] = []
        ready = True
        for index, net in enumerate(n for n in spec(vm).get("networks") or [] if isinstance(n, dict)):
            entry: Obj = {"type": net.get("type", "Main")}
            if net.get("name"):
                entry["name"] = net["name"]
            if net.get("type", "Main") != "Main":
                mac_name = mac_address_name(vm, index, net)
                entry["virtualMachineMACAddressName"] = mac_name
                mac = self.store.get(VMMAC, vm["metadata"]["namespace"], mac_name)
                if mac is None and not net.get("virtualMachineMACAddressName"):
                    mac = await self.create(VMMAC, {
                        "apiVersion": API_VERSION, "kind": KIND_VMMAC,
                        "metadata": {"name": mac_name, "namespace": vm["metadata"]["namespace"],
                                     "ownerReferences": [owner_reference(vm, controller=False)]},
                        "spec": {}})
                address = str(status(mac).get("address") or "") if mac is not None else ""
                if address:
                    entry["macAddress"] = address
                else:
                    ready = False
            elif st.get("ipAddress"):
                entry["ipAddress"] = st["ipAddress"]
            networks.append(entry)
        if networks:
            st["networks"] = networks
        else:
            st.pop("networks", None)
        return ready

    def _block_devices(self, vm: Obj, st: dict[str, Any]) -> bool:
        namespace = vm["metadata"]["namespace"]
        refs: list[Obj] = []
        not_ready: list[str] = []
        for ref in block_device_refs(vm):
            kind, ref_name = str(ref.get("kind")), str(ref.get("name"))
            if kind == KIND_VD:
                device = self.store.get(VD, namespace, ref_name)
                ready = device is not None and phase(device) in READY_DISK_PHASES
                size = str(status(device).get("capacity") or "") if device is not None else ""
            else:
                device = image_for_ref(self.store, namespace, kind, ref_name)
                ready = device is not None and phase(device) == "Ready"
                size = str((status(device).get("size") or {}).get("unpacked") or "") if device is not None else ""
            if not ready:
                not_ready.append(f"{kind}/{ref_name}")
            entry: Obj = {"kind": kind, "name": ref_name, "size": size, "_ready": ready}
            if isinstance(ref.get("bootOrder"), int):
                entry["bootOrder"] = ref["bootOrder"]
            refs.append(entry)
        st["blockDeviceRefs"] = refs
        generation = generation_of(vm)
        if not_ready:
            set_condition(st, "BlockDevicesReady", "False", "BlockDevicesNotReady",
                          f"Waiting for block devices to be ready: {len(refs) - len(not_ready)}/{len(refs)} "
                          f"({', '.join(not_ready)} not ready).", generation)
            return False
        set_condition(st, "BlockDevicesReady", "True", "BlockDevicesReady", "", generation)
        return True

    def _runtime_conditions(self, vm: Obj, st: dict[str, Any], new_phase: str, generation: int) -> None:
        running = new_phase == "Running"
        if running:
            set_condition(st, "Running", "True", "VirtualMachineRunning", "", generation)
        else:
            set_condition(st, "Running", "False", "VirtualMachineNotRunning",
                          f"The virtual machine is {new_phase}.", generation)
        # A live migration keeps the guest (and its agent) running: KubeVirt's instance stays Running.
        guest_up = new_phase in FREEZABLE_VM_PHASES
        if guest_up and annotation(vm, ANN_GUEST_AGENT) == "true":
            set_condition(st, "AgentReady", "True", "AgentReady", "", generation)
            st["guestOSInfo"] = {"id": "ubuntu", "name": "Ubuntu", "prettyName": "Ubuntu 24.04 LTS",
                                 "kernelRelease": "6.8.0-embedded"}
        else:
            set_condition(st, "AgentReady", "False", "AgentNotReady", "Guest agent is not ready.", generation)
            st.pop("guestOSInfo", None)
        if guest_up and annotation(vm, ANN_FROZEN_BY):
            set_condition(st, "FilesystemFrozen", "True", "Frozen", "", generation)
        else:
            remove_condition(st, "FilesystemFrozen")
