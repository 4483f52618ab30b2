"""The disks of a VM that exists on this node (its root LV does): a new extra disk, a larger size.

Per volume, from what this node's LVM and DRBD say (`decide`):

* *create*: no LV yet. The LV, DRBD metadata for that volume only (`create-md RES/VOL`), the
  volume added to the running resource (`adjust`), then, on the node that runs the VM (where
  the resource is Primary; the VM's `primary_on` node if it runs nowhere), its initial sync:
  that volume forced Primary unless the peer's copy of it holds data (kisscluster.initialsync).
  Only there: DRBD 8.4 refuses to promote a volume while the peer is Primary on another volume
  of the resource, and the VM's next start needs its copy UpToDate and Primary with the rest.
  The running VM sees the disk after its next start.
* *grow*: the LV is smaller than the VM file asks: `lvextend` here, then `drbdadm resize`.
  DRBD grows a volume to the smaller of its two LVs, so the first node's resize keeps the size
  (and tells the peer its new one); the second node's run, its LV grown too, grows it.
* *resize*: the LV is grown but the DRBD device is not (the peer's LV was not grown when this
  node resized, or the resize had to wait): `drbdadm resize` again.
* *refuse*: the VM file asks for less than the LV holds: nothing runs for the VM, it fails.
* *nothing*.

Where the VM runs (its QMP socket answers), qemu is told a grown size (`block_resize`) after
the resize, or whenever it shows a drive smaller than its DRBD device: the node that runs the VM
tells it at the latest in its next run. Existing volumes never get metadata or a forced sync.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kisscluster import drbd, lvm, names
from kisscluster.inventory import format_size
from kisscluster.splitbrain import parse_proc_drbd
from kisscluster.steps import Programs, Step

CREATE, GROW, RESIZE, REFUSE, NOTHING = "create", "grow", "resize", "refuse", "nothing"


class Refused(ValueError):
    """The VM file asks for something kiss.vms never does (shrinking a disk)."""


@dataclass(frozen=True)
class Minor:
    """What DRBD on this node says about one volume (/proc/drbd, /sys/block/drbd<minor>/size)."""

    connection: str
    role: str
    peer_role: str
    disk: str
    peer_disk: str
    size_bytes: int


@dataclass(frozen=True)
class Observed:
    """This node's view of one existing VM: the VG's extent size, its volumes DRBD has up
    (by minor), and the sizes qemu shows (by volume; None: the VM does not run here), asked
    through its QMP socket in `run_dir`."""

    extent_bytes: int
    minors: Mapping[int, Minor]
    drives: Mapping[int, int] | None
    run_dir: str


def read_minors(minors: Sequence[int], root: Path = Path("/")) -> dict[int, Minor]:
    """The volumes among `minors` that DRBD has up here; `root` prefixes /proc and /sys."""
    try:
        fields = parse_proc_drbd((root / "proc/drbd").read_text(encoding="ascii"))
    except OSError:
        return {}
    found = {}
    for minor in minors:
        known = fields.get(int(minor), {})
        if known.get("cs", "Unconfigured") == "Unconfigured":
            continue
        try:
            sectors = int((root / f"sys/block/drbd{int(minor)}/size").read_text())
        except (OSError, ValueError):
            continue
        role, _, peer_role = known.get("ro", "").partition("/")
        disk, _, peer_disk = known.get("ds", "").partition("/")
        found[int(minor)] = Minor(known["cs"], role, peer_role, disk, peer_disk, sectors * 512)
    return found


def decide(wanted: int, lv: int | None, extent: int, minor: Minor | None) -> str:
    """create, grow, resize, refuse or nothing for one volume: `wanted` and `lv` in bytes (None:
    no LV), `minor`: DRBD's view of it here (None: not up)."""
    if lv is None:
        return CREATE
    if -(-wanted // extent) * extent < lv:  # LVM rounds a size up to whole extents
        return REFUSE
    if lv < wanted:
        return GROW
    # A grow adds at least one extent; half of one keeps rounding out of the comparison.
    if minor is not None and drbd.usable_bytes(lv) - minor.size_bytes >= extent // 2:
        return RESIZE
    return NOTHING


def resize_waits(minor: Minor | None) -> str | None:
    """Why DRBD 8.4 would refuse `drbdadm resize` now (drbd_adm_resize), or None."""
    if minor is None:
        return "its DRBD device is not up here"
    if minor.connection != "Connected":
        return f"DRBD is {minor.connection}, not Connected to the peer"
    if "Primary" not in (minor.role, minor.peer_role):
        return "the VM runs on neither node, and DRBD resizes only with a Primary: start it"
    return None


def both_new(minor: Minor | None) -> bool:
    """Connected, and neither copy holds data: an initial sync that never started."""
    return (
        minor is not None
        and minor.connection == "Connected"
        and (minor.disk, minor.peer_disk) == ("Inconsistent", "Inconsistent")
    )


def create_lv_step(name: str, disk: Mapping[str, Any], vg: str, programs: Programs) -> Step:
    lv, wanted = lvm.lv_name(name, disk["name"]), int(disk["size_bytes"])
    arguments = {"lvcreate": programs.lvcreate, "volume_group": vg, "name": lv,
                 "size_bytes": wanted}  # fmt: skip
    return Step(f"create LV {vg}/{lv} ({format_size(wanted)})", "kiss.lv_create", arguments)


# Six parameters: the same as kisscluster.skeleton.plan's.
def plan(
    vm: Mapping[str, Any],
    node: str,
    vg: str,
    lvs: Mapping[str, int],
    programs: Programs,
    observed: Observed,
) -> tuple[list[Step], list[str]]:
    """The steps and the notes for VM `vm`, whose root LV exists on `node`; Refused if the VM
    file asks to shrink a disk."""
    name = names.validate_vm_name(vm["name"])
    ordered = sorted(vm["disks"], key=lambda d: int(d["volume"]))
    actions = {}
    for disk in ordered:
        lv = lvm.lv_name(name, disk["name"])
        minor = observed.minors.get(int(disk["minor"]))
        action = decide(int(disk["size_bytes"]), lvs.get(lv), observed.extent_bytes, minor)
        if action == REFUSE:
            raise Refused(
                f"disk {disk['name']} of VM {name}: the VM file asks for "
                f"{format_size(int(disk['size_bytes']))}, LV {vg}/{lv} holds "
                f"{format_size(lvs[lv])}: kisscluster never shrinks a disk; put its size back "
                f"to {format_size(lvs[lv])} or more"
            )
        actions[int(disk["volume"])] = action
    steps, notes = _lv_steps(name, ordered, vg, programs, actions)
    steps += _sync_steps(name, sync_source(vm, node, observed) == node, ordered, programs,
                         observed, actions)  # fmt: skip
    resized = _resize_steps(name, node, ordered, programs, observed, actions, notes)
    steps += resized
    steps += _qemu_steps(name, ordered, observed, {s.kwargs["volume"] for s in resized})
    return steps, notes


def _lv_steps(
    name: str,
    ordered: list[Mapping[str, Any]],
    vg: str,
    programs: Programs,
    actions: Mapping[int, str],
) -> tuple[list[Step], list[str]]:
    """New LVs and their metadata, grown LVs, and `adjust` if a volume is new."""
    steps, notes = [], []
    for disk in ordered:
        volume, lv = int(disk["volume"]), lvm.lv_name(name, disk["name"])
        if actions[volume] == CREATE:
            steps.append(create_lv_step(name, disk, vg, programs))
            metadata = {"drbdadm": programs.drbdadm, "resource": name, "volume": volume}
            what = f"create DRBD metadata {name}/{volume} (this volume only)"
            steps.append(Step(what, "kiss.drbd_create_md", metadata))
            notes.append(
                f"VM {name} sees its new disk {disk['name']} (volume {volume}) after its next "
                "start: a running qemu is not given new disks"
            )
        elif actions[volume] == GROW:
            wanted = int(disk["size_bytes"])
            arguments = {"lvextend": programs.lvextend, "volume_group": vg, "name": lv,
                         "size_bytes": wanted}  # fmt: skip
            what = f"grow LV {vg}/{lv} to {format_size(wanted)}"
            steps.append(Step(what, "kiss_disks.lv_extend", arguments))
    if CREATE in actions.values():
        resource = {"drbdadm": programs.drbdadm, "resource": name}
        steps.append(
            Step(f"add the new volumes to DRBD resource {name}", "kiss.drbd_adjust", resource)
        )
    return steps, notes


def sync_source(vm: Mapping[str, Any], node: str, observed: Observed) -> str:
    """The node a new volume of `vm` syncs from: where the resource is Primary, else the VM's
    `primary_on` node. `node` is this node; "the peer" when the peer is Primary."""
    if any(m.role == "Primary" for m in observed.minors.values()):
        return node
    if any(m.peer_role == "Primary" for m in observed.minors.values()):
        return "the peer"
    return str(vm["primary_on"])


# Six parameters: the VM's name, whether this node is its sync source, its disks, the programs,
# this node's view and the decisions.
def _sync_steps(
    name: str,
    source: bool,
    ordered: list[Mapping[str, Any]],
    programs: Programs,
    observed: Observed,
    actions: Mapping[int, str],
) -> list[Step]:
    """The initial sync of each volume created now, or whose two copies are still both new."""
    if not source:
        return []
    roles = [m.role for m in observed.minors.values()]
    steps = []
    for disk in ordered:
        volume = int(disk["volume"])
        minor = observed.minors.get(int(disk["minor"]))
        if actions[volume] != CREATE and not both_new(minor):
            continue
        arguments = {"drbdadm": programs.drbdadm, "resource": name, "volume": volume,
                     "keep_primary": "Primary" in roles}  # fmt: skip
        what = (
            f"start the initial sync of {name}/{volume} from here unless the peer's copy has data"
        )
        steps.append(Step(what, "kiss_disks.drbd_volume_sync", arguments, tells=True))
    return steps


# Seven parameters: those of _sync_steps, the node, and the notes this adds to.
def _resize_steps(
    name: str,
    node: str,
    ordered: list[Mapping[str, Any]],
    programs: Programs,
    observed: Observed,
    actions: Mapping[int, str],
    notes: list[str],
) -> list[Step]:
    steps = []
    for disk in ordered:
        volume = int(disk["volume"])
        if actions[volume] not in (GROW, RESIZE):
            continue
        waits = resize_waits(observed.minors.get(int(disk["minor"])))
        if waits is not None:
            notes.append(
                f"DRBD volume {name}/{volume} is not resized on {node} now: {waits}; the next "
                "run of kiss-configure resizes it"
            )
            continue
        arguments = {"drbdadm": programs.drbdadm, "resource": name, "volume": volume}
        steps.append(
            Step(f"resize DRBD volume {name}/{volume}", "kiss_disks.drbd_resize", arguments)
        )
        notes.append(
            f"DRBD volume {name}/{volume} grows once the LVs of both nodes are grown: in the run "
            "of the second node"
        )
    return steps


def _qemu_steps(
    name: str, ordered: list[Mapping[str, Any]], observed: Observed, resized: set[int]
) -> list[Step]:
    """Tell a VM running here the size of each drive resized now or shown smaller than DRBD's."""
    if observed.drives is None:
        return []
    steps = []
    for disk in ordered:
        volume = int(disk["volume"])
        minor = observed.minors.get(int(disk["minor"]))
        shown = observed.drives.get(volume)
        behind = shown is not None and minor is not None and shown < minor.size_bytes
        if volume in resized or behind:
            arguments = {"name": name, "volume": volume, "run_dir": observed.run_dir}
            what = f"tell the running VM {name} the size of volume {volume} (QMP block_resize)"
            steps.append(Step(what, "kiss_disks.vm_grow_drive", arguments, tells=True))
    return steps
