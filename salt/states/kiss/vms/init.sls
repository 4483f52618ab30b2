# kiss.vms: every active VM's skeleton on this node (LVs, DRBD resource, qemu parameters, units).
include:
  - kiss.vms.disks
  - kiss.vms.config
  - kiss.vms.units
  - kiss.vms.reload
