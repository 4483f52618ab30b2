"""What kiss.vms does to a VM's disks on one node: the decision, as a list of commands.

A VM is *new* on this node when its root LV does not exist yet. Only then, after creating its
LVs, does the node write DRBD metadata (on each volume whose LV this run creates), bring the
resource up, and - on the VM's `primary_on` node only - start the initial sync from here, unless
the peer holds the VM's data (kisscluster.initialsync: a rebuilt node's new copy syncs from the
peer instead). A VM whose root LV exists is kisscluster.disks's: a new extra disk, a larger
size; its existing volumes never get metadata or a forced sync again, and nothing is ever shrunk
or removed.

Each step (kisscluster.steps) names the `kiss.*` execution function that acts and its
arguments; the state `kiss.vm_disks` only decides (this plan) and calls them.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kisscluster import disks, lvm, names
from kisscluster.steps import Programs, Step


@dataclass(frozen=True)
class Plan:
    vm: str
    new_vm: bool
    steps: tuple[Step, ...]
    notes: tuple[str, ...]


# Six parameters: the VM, where it is planned, and what this node's LVM and DRBD say.
def plan(
    vm: Mapping[str, Any],
    node: str,
    volume_group: str,
    existing_lvs: Mapping[str, int],
    programs: Programs,
    observed: disks.Observed | None,
) -> Plan:
    """The commands that bring one VM's disks to its pillar record on `node`. `observed`: what
    DRBD and qemu say about the VM here, needed once its root LV exists (kisscluster.disks)."""
    name = names.validate_vm_name(vm["name"])
    if lvm.lv_name(name, "root") in existing_lvs:
        if observed is None:
            raise ValueError(f"VM {name} exists on {node}: its plan needs DRBD's and qemu's view")
        steps, notes = disks.plan(vm, node, volume_group, existing_lvs, programs, observed)
        return Plan(name, False, tuple(steps), tuple(notes))
    ordered = sorted(vm["disks"], key=lambda d: int(d["volume"]))
    steps, notes, created = _lv_steps(name, ordered, volume_group, existing_lvs, programs)
    for disk in ordered:
        volume = int(disk["volume"])
        if volume not in created:
            notes.append(
                f"LV {volume_group}/{lvm.lv_name(name, disk['name'])} already existed: its DRBD "
                "metadata is left as it is"
            )
            continue
        metadata = {"drbdadm": programs.drbdadm, "resource": name, "volume": volume}
        steps.append(Step(f"create DRBD metadata {name}/{volume}", "kiss.drbd_create_md", metadata))
    resource = {"drbdadm": programs.drbdadm, "resource": name}
    steps.append(Step(f"bring up DRBD resource {name}", "kiss.drbd_adjust", resource))
    if vm["primary_on"] == node:
        what = f"start the initial sync of {name} from {node} unless the peer holds its data"
        steps.append(Step(what, "kiss.drbd_initial_sync", resource, tells=True))
    return Plan(name, True, tuple(steps), tuple(notes))


def _lv_steps(
    name: str,
    ordered: list[Mapping[str, Any]],
    volume_group: str,
    existing_lvs: Mapping[str, int],
    programs: Programs,
) -> tuple[list[Step], list[str], list[int]]:
    """The LVs to create, no notes yet, and the volumes whose LV is created."""
    missing = [d for d in ordered if lvm.lv_name(name, d["name"]) not in existing_lvs]
    steps = [disks.create_lv_step(name, d, volume_group, programs) for d in missing]
    return steps, [], [int(d["volume"]) for d in missing]
