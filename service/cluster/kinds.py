"""The custom resource types the gateway speaks (the platform's CRDs)."""

from service.core.ports import ResourceKind

VIRTUALIZATION = "virtualization.deckhouse.io"
V1ALPHA2 = "v1alpha2"

VIRTUAL_DISK = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualdisks", "VirtualDisk")
VIRTUAL_DISK_SNAPSHOT = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualdisksnapshots", "VirtualDiskSnapshot")
VIRTUAL_MACHINE = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualmachines", "VirtualMachine")
VIRTUAL_MACHINE_SNAPSHOT = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualmachinesnapshots",
                                        "VirtualMachineSnapshot")
VIRTUAL_MACHINE_OPERATION = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualmachineoperations",
                                         "VirtualMachineOperation")
VIRTUAL_MACHINE_SNAPSHOT_OPERATION = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualmachinesnapshotoperations",
                                                  "VirtualMachineSnapshotOperation")
VIRTUAL_IMAGE = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualimages", "VirtualImage")
CLUSTER_VIRTUAL_IMAGE = ResourceKind(VIRTUALIZATION, V1ALPHA2, "clustervirtualimages", "ClusterVirtualImage",
                                     namespaced=False)
DATA_EXPORT = ResourceKind("deckhouse.io", "v1alpha1", "dataexports", "DataExport")
LEASE = ResourceKind("coordination.k8s.io", "v1", "leases", "Lease")

# Labels and annotations the gateway puts on every custom resource it writes, so a
# resource can be traced to its operation (and an operation found from a resource).
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY_VALUE = "dvp-snapshot-gateway"
LABEL_OPERATION_ID = "snapshots.dvp.deckhouse.io/operation-id"
ANNOTATION_ACTOR = "snapshots.dvp.deckhouse.io/requested-by"
VIRTUAL_MACHINE_IP_ADDRESS = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualmachineipaddresses",
                                          "VirtualMachineIPAddress")
VIRTUAL_MACHINE_MAC_ADDRESS = ResourceKind(VIRTUALIZATION, V1ALPHA2, "virtualmachinemacaddresses",
                                           "VirtualMachineMACAddress")
# v1alpha3: the version every current platform serves (v1alpha2 is deprecated).
VIRTUAL_MACHINE_CLASS = ResourceKind(VIRTUALIZATION, "v1alpha3", "virtualmachineclasses", "VirtualMachineClass",
                                     namespaced=False)
SECRET = ResourceKind("", "v1", "secrets", "Secret")
# On a VirtualMachineSnapshot the gateway wrote: the uid of the VM it was taken of, so a
# restore can check "the VM exists with the uid recorded in the snapshot" up front.
ANNOTATION_VM_UID = "snapshots.dvp.deckhouse.io/virtual-machine-uid"
