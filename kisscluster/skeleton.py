"""What kiss.vms does to a VM's disks on one node: the decision, as a list of commands.

A VM is *new* on this node when its root LV does not exist yet. Only then, after creating its
LVs, does the node write DRBD metadata (on each volume whose LV this run creates), bring the
resource up, and - on the VM's `primary_on` node only - start the initial sync from here, unless
the peer holds the VM's data (kisscluster.initialsync: a rebuilt node's new copy syncs from the
peer instead). A VM whose root LV exists never gets metadata or an initial sync again, whatever
else changed: a missing extra disk is created and reported for
the operator, a size larger than the LV is reported, and nothing is ever shrunk or removed.

Each step names the `kiss.*` execution function that acts and its arguments; the state
`kiss.vm_disks` only decides (this plan) and calls them.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from kisscluster import drbd, initialsync, lvm, names
from kisscluster.inventory import format_size


@dataclass(frozen=True)
class Programs:
    lvcreate: str
    drbdadm: str


#: The execution functions a step may call (salt/_modules/kiss.py), each with the builder of the
#: command it runs; function and builder take the same keyword arguments.
COMMANDS: dict[str, Callable[..., list[str]]] = {
    "lv_create": lvm.lvcreate_command,
    "drbd_create_md": drbd.create_md_command,
    "drbd_adjust": drbd.adjust_command,
    "drbd_initial_sync": initialsync.command,
}


@dataclass(frozen=True)
class Step:
    """`kiss.<function>(**kwargs)`; `what` names the step in changes and failure messages;
    `tells`: what the function returns is for the operator."""

    what: str
    function: str
    kwargs: Mapping[str, Any]
    tells: bool = False

    @property
    def argv(self) -> tuple[str, ...]:
        """The command the step runs."""
        return tuple(COMMANDS[self.function](**self.kwargs))


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
    steps, notes, created = _lv_steps(name, disks, volume_group, existing_lvs, programs)
    if lvm.lv_name(name, "root") in existing_lvs:
        notes += [
            f"volume {volume} of existing VM {name} got a new LV but no DRBD metadata: on both "
            f"nodes run `drbdadm create-md {name}/{volume}` and `drbdadm adjust {name}`, "
            "then let it sync from the node running the VM"
            for volume in created
        ]
        return Plan(name, False, tuple(steps), tuple(notes))
    for disk in disks:
        volume = int(disk["volume"])
        if volume not in created:
            notes.append(
                f"LV {volume_group}/{lvm.lv_name(name, disk['name'])} already existed: its DRBD "
                "metadata is left as it is"
            )
            continue
        metadata = {"drbdadm": programs.drbdadm, "resource": name, "volume": volume}
        steps.append(Step(f"create DRBD metadata {name}/{volume}", "drbd_create_md", metadata))
    resource = {"drbdadm": programs.drbdadm, "resource": name}
    steps.append(Step(f"bring up DRBD resource {name}", "drbd_adjust", resource))
    if vm["primary_on"] == node:
        what = f"start the initial sync of {name} from {node} unless the peer holds its data"
        steps.append(Step(what, "drbd_initial_sync", resource, tells=True))
    return Plan(name, True, tuple(steps), tuple(notes))


def _lv_steps(
    name: str,
    disks: list[Mapping[str, Any]],
    volume_group: str,
    existing_lvs: Mapping[str, int],
    programs: Programs,
) -> tuple[list[Step], list[str], list[int]]:
    """The LVs to create, notes on those too small, and the volumes whose LV is created."""
    steps: list[Step] = []
    notes: list[str] = []
    created: list[int] = []
    for disk in disks:
        lv = lvm.lv_name(name, disk["name"])
        wanted = int(disk["size_bytes"])
        if lv not in existing_lvs:
            arguments = {"lvcreate": programs.lvcreate, "volume_group": volume_group, "name": lv,
                         "size_bytes": wanted}  # fmt: skip
            what = f"create LV {volume_group}/{lv} ({format_size(wanted)})"
            steps.append(Step(what, "lv_create", arguments))
            created.append(int(disk["volume"]))
        elif existing_lvs[lv] < wanted:
            notes.append(
                f"LV {volume_group}/{lv} is {format_size(existing_lvs[lv])}, the VM file asks "
                f"for {format_size(wanted)}; kiss.vms never grows a disk: grow it by hand "
                f"with `lvextend -L {format_size(wanted)} {volume_group}/{lv}` on both nodes, "
                f"then `drbdadm resize {name}/{int(disk['volume'])}` on one of them while "
                "they are connected"
            )
    return steps, notes, created
