"""VirtualMachineIPAddress and VirtualMachineMACAddress: allocation from a pool, Bound -> Attached."""

from __future__ import annotations

import ipaddress
from typing import Any

from service.embedded_cluster.contracts import Obj

from .kube import generation_of, name_of, set_condition, spec, status
from .queries import safe_list
from .resources import VM, VMIP, VMMAC
from .runtime import Mapper, Reconciler

IP_POOL = ipaddress.ip_network("10.66.0.0/16")
FIRST_HOST = 10


def ip_in_use(objs: list[Obj], address: str, except_name: tuple[str, str] | None = None) -> bool:
    return any(status(o).get("address") == address and (o["metadata"].get("namespace", ""), name_of(o)) != except_name
               for o in objs)


def mac_for_index(index: int) -> str:
    return "02:66:" + ":".join(f"{(index >> shift) & 0xFF:02x}" for shift in (24, 16, 8, 0))


def vm_holding(vms: list[Obj], name: str, field: str) -> Obj | None:
    """The VM that references the address object ``name`` (by spec or by status)."""
    for vm in vms:
        if spec(vm).get(field) == name or status(vm).get(field) == name:
            return vm
        for net in status(vm).get("networks") or []:
            if isinstance(net, dict) and net.get(field) == name:
                return vm
        for net in spec(vm).get("networks") or []:
            if isinstance(net, dict) and net.get(field) == name:
                return vm
    return None


class AddressReconciler(Reconciler):
    def __init__(self, *args: Any, mac: bool) -> None:
        super().__init__(*args)
        self.mac = mac
        self.resource = VMMAC if mac else VMIP
        self.vm_field = "virtualMachineMACAddressName" if mac else "virtualMachineIPAddressName"

    def watches(self) -> dict[str, Mapper]:
        return {VM: self.same_namespace()}

    def _wanted_address(self, obj: Obj) -> str:
        if self.mac:
            return str(spec(obj).get("address") or "")
        return str(spec(obj).get("staticIP") or "") if spec(obj).get("type") == "Static" else ""

    def _allocate(self, everyone: list[Obj]) -> str:
        if self.mac:
            index = 1
            while ip_in_use(everyone, mac_for_index(index)):
                index += 1
            return mac_for_index(index)
        for offset in range(FIRST_HOST, IP_POOL.num_addresses - 1):
            candidate = str(IP_POOL.network_address + offset)
            if not ip_in_use(everyone, candidate):
                return candidate
        return ""

    async def reconcile(self, namespace: str, name: str) -> float | None:
        obj = self.store.get(self.resource, namespace, name)
        if obj is None or obj["metadata"].get("deletionTimestamp"):
            return None
        st = dict(status(obj))
        generation = generation_of(obj)
        everyone = self.safe_list(self.resource, read_only=True)
        wanted = self._wanted_address(obj)
        if wanted and st.get("address") != wanted:
            if ip_in_use(everyone, wanted, (namespace, name)):
                st["phase"] = "Pending"
                st.pop("address", None)
                set_condition(st, "Bound", "False", "AddressAlreadyInUse",
                              f"The address {wanted} is already in use by another resource.", generation)
                await self.write_status(self.resource, obj, st)
                return None
            st["address"] = wanted
        elif not st.get("address"):
            st["address"] = self._allocate(everyone)
        set_condition(st, "Bound", "True", "Bound", "", generation)
        vm = vm_holding(safe_list(self.store, VM, namespace), name, self.vm_field)
        if vm is not None:
            st["phase"] = "Attached"
            st["virtualMachineName"] = name_of(vm)
            set_condition(st, "Attached", "True", "Attached", "", generation)
        else:
            st["phase"] = "Bound"
            st.pop("virtualMachineName", None)
            set_condition(st, "Attached", "False", "VirtualMachineNotFound",
                          "No virtual machine uses this address.", generation)
        st["observedGeneration"] = generation
        await self.write_status(self.resource, obj, st)
        return None
