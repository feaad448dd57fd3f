"""Resource keys, API versions and the annotations the simulated platform understands."""

from __future__ import annotations

GROUP = "virtualization.deckhouse.io"
API_VERSION = f"{GROUP}/v1alpha2"

VD = f"virtualdisks.{GROUP}"
VDSNAPSHOT = f"virtualdisksnapshots.{GROUP}"
VM = f"virtualmachines.{GROUP}"
VMSNAPSHOT = f"virtualmachinesnapshots.{GROUP}"
VMOP = f"virtualmachineoperations.{GROUP}"
VMSOP = f"virtualmachinesnapshotoperations.{GROUP}"
VI = f"virtualimages.{GROUP}"
CVI = f"clustervirtualimages.{GROUP}"
VMCLASS = f"virtualmachineclasses.{GROUP}"
VMIP = f"virtualmachineipaddresses.{GROUP}"
VMMAC = f"virtualmachinemacaddresses.{GROUP}"
DATAEXPORT = "dataexports.deckhouse.io"
DATAEXPORT_API_VERSION = "deckhouse.io/v1alpha1"
SECRET = "secrets"
NAMESPACE = "namespaces"

KIND_VD = "VirtualDisk"
KIND_VDSNAPSHOT = "VirtualDiskSnapshot"
KIND_VM = "VirtualMachine"
KIND_VMSNAPSHOT = "VirtualMachineSnapshot"
KIND_VI = "VirtualImage"
KIND_CVI = "ClusterVirtualImage"
KIND_VMIP = "VirtualMachineIPAddress"
KIND_VMMAC = "VirtualMachineMACAddress"
KIND_SECRET = "Secret"

# Knobs of the simulation, set on a VirtualMachine / VirtualDisk by a test or a demo user.
ANN_GUEST_AGENT = "embedded.dvp.io/guest-agent"          # "true": qemu-guest-agent runs in the guest
ANN_FSFREEZE = "embedded.dvp.io/fsfreeze"                # "fail": fsfreeze of the guest fails
ANN_RESIZE_HOLD = "embedded.dvp.io/resize-hold"          # "true": a growing disk stays in Resizing
ANN_MIGRATING = "embedded.dvp.io/migrating"              # "true": a running VM is live-migrating (phase Migrating)
# State the controllers keep on objects (the real platform keeps it in PVCs / VolumeSnapshots / KubeVirt).
ANN_CONTENT_SEED = "embedded.dvp.io/content-seed"        # what the disk's bytes are derived from
ANN_SOURCE_SIZE = "embedded.dvp.io/source-disk-size"     # bytes of the disk a snapshot was taken from
ANN_FROZEN_BY = "embedded.dvp.io/filesystem-frozen-by"   # the snapshot holding the guest's fsfreeze
ANN_POWER = "embedded.dvp.io/power"                      # "on"/"off": a manual start/stop (VMOP Start/Stop)
ANN_LAST_ACCESS = "embedded.dvp.io/last-access"          # DataExport: RFC 3339 time of the last download
ANN_MAINTENANCE = "embedded.dvp.io/maintenance"          # the VMOP (restore/restart) holding the VM stopped

VDSNAPSHOT_FINALIZER = "virtualization.deckhouse.io/vdsnapshot-protection"
VMSNAPSHOT_FINALIZER = "virtualization.deckhouse.io/vmsnapshot-protection"

LABEL_VM_NAME = "virtualization.deckhouse.io/virtual-machine-name"
