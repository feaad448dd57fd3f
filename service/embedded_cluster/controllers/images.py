"""VirtualImage and ClusterVirtualImage: Pending -> Provisioning -> Ready (a fixed simulated image)."""

from __future__ import annotations

from typing import Any

from .kube import format_quantity, generation_of, phase, set_condition, spec, status, uid_of
from .resources import CVI, VI
from .runtime import Reconciler

IMAGE_SIZE = 2 << 30
STORED_SIZE = 512 << 20


class ImageReconciler(Reconciler):
    def __init__(self, *args: Any, cluster_scoped: bool) -> None:
        super().__init__(*args)
        self.cluster_scoped = cluster_scoped
        self.resource = CVI if cluster_scoped else VI

    async def reconcile(self, namespace: str, name: str) -> float | None:
        obj = self.store.get(self.resource, None if self.cluster_scoped else namespace, name)
        if obj is None or obj.get("metadata", {}).get("deletionTimestamp"):
            return None
        st = dict(status(obj))
        generation = generation_of(obj)
        current = phase(obj)
        if current == "":
            st["phase"] = "Pending"
            set_condition(st, "DatasourceReady", "False", "Pending", "Waiting for the data source.", generation)
            set_condition(st, "Ready", "False", "Provisioning", "Waiting for the data source.", generation)
        elif current == "Pending":
            st["phase"] = "Provisioning"
            st["progress"] = "50%"
            set_condition(st, "DatasourceReady", "True", "DatasourceReady", "", generation)
            set_condition(st, "Ready", "False", "Provisioning", "Import is in the process of provisioning.",
                          generation)
        elif current == "Provisioning":
            st.update(self._ready_fields(obj))
            set_condition(st, "Ready", "True", "Ready", "", generation)
        else:
            return None
        st["observedGeneration"] = generation
        await self.write_status(self.resource, obj, st)
        return None

    def _ready_fields(self, obj: dict[str, Any]) -> dict[str, Any]:
        target: dict[str, str] = {}
        storage = spec(obj).get("storage", "ContainerRegistry")
        kind = "cvi" if self.cluster_scoped else "vi"
        if storage in ("Kubernetes", "PersistentVolumeClaim") and not self.cluster_scoped:
            target["persistentVolumeClaimName"] = f"vi-{obj['metadata']['name']}-{uid_of(obj)[:8]}"
        else:
            target["registryURL"] = f"dvcr.d8-virtualization.svc/{kind}/{obj['metadata']['name']}:{uid_of(obj)}"
        return {
            "phase": "Ready", "progress": "100%", "format": "qcow2", "cdrom": False, "target": target,
            "size": {"stored": format_quantity(STORED_SIZE), "storedBytes": str(STORED_SIZE),
                     "unpacked": format_quantity(IMAGE_SIZE), "unpackedBytes": str(IMAGE_SIZE)},
        }
