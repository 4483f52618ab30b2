"""What kiss.vms does to a VM's disks on one node: the decision, as a list of commands.

A VM is *new* on this node when its root LV does not exist yet. Only then, after creating its
LVs, does the node write DRBD metadata (on each volume whose LV this run creates), bring the
resource up, and - on the VM's `primary_on` node only - force it primary once to start the initial
sync, then hand it back to systemd as secondary. A VM whose root LV exists never gets metadata or
a forced primary again, whatever else changed: a missing extra disk is created and reported for
the operator, a size larger than the LV is reported, and nothing is ever shrunk or removed.
"""

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kisscluster import drbd, lvm, names
from kisscluster.inventory import format_size


@dataclass(frozen=True)
class Programs:
    lvcreate: str
    drbdadm: str


@dataclass(frozen=True)
class Step:
    """One command of the plan; `what` names the step in changes and failure messages."""

    what: str
    argv: tuple[str, ...]


@dataclass(frozen=True)
class Plan:
    vm: str
    new_vm: bool
    steps: tuple[Step, ...]
    notes: tuple[str, ...]


def plan(
    vm: Mapping[str, Any],
    node: str,
    volume_group: str,
    existing_lvs: Mapping[str, int],
    programs: Programs,
) -> Plan:
    """The commands that bring one VM's disks to its pillar record on `node`."""
    name = names.validate_vm_name(vm["name"])
    disks = sorted(vm["disks"], key=lambda d: int(d["volume"]))
    steps: list[Step] = []
    notes: list[str] = []
    created_volumes: list[int] = []
    for disk in disks:
        lv = lvm.lv_name(name, disk["name"])
        wanted = int(disk["size_bytes"])
        if lv in existing_lvs:
            if existing_lvs[lv] < wanted:
                notes.append(
                    f"LV {volume_group}/{lv} is {format_size(existing_lvs[lv])}, the VM file asks "
                    f"for {format_size(wanted)}: grow it with kiss.grow_disk (never done here)"
                )
            continue
        steps.append(
            Step(
                f"create LV {volume_group}/{lv} ({format_size(wanted)})",
                tuple(lvm.lvcreate_command(programs.lvcreate, volume_group, lv, wanted)),
            )
        )
        created_volumes.append(int(disk["volume"]))

    root_lv = lvm.lv_name(name, "root")
    new_vm = root_lv not in existing_lvs
    if not new_vm:
        for volume in created_volumes:
            notes.append(
                f"volume {volume} of existing VM {name} got a new LV but no DRBD metadata: on both "
                f"nodes run `drbdadm create-md {name}/{volume}` and `drbdadm adjust {name}`, "
                "then let it sync from the node running the VM"
            )
        return Plan(name, False, tuple(steps), tuple(notes))

    for disk in disks:
        volume = int(disk["volume"])
        if volume not in created_volumes:
            notes.append(
                f"LV {volume_group}/{lvm.lv_name(name, disk['name'])} already existed: its DRBD "
                "metadata is left as it is"
            )
            continue
        steps.append(
            Step(
                f"create DRBD metadata {name}/{volume}",
                tuple(drbd.create_md_command(programs.drbdadm, name, volume)),
            )
        )
    steps.append(
        Step(f"bring up DRBD resource {name}", tuple(drbd.adjust_command(programs.drbdadm, name)))
    )
    if vm["primary_on"] == node:
        steps += [
            Step(
                f"start the initial sync of {name} from {node}",
                tuple(drbd.primary_force_command(programs.drbdadm, name)),
            ),
            Step(
                f"leave {name} secondary for drbd-resource@{name}.service",
                tuple(drbd.secondary_command(programs.drbdadm, name)),
            ),
        ]
    return Plan(name, True, tuple(steps), tuple(notes))
