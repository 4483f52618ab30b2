"""Can this node run its own VMs? Their DRBD volumes must all be UpToDate here.

A copy that is Outdated (it missed writes while the storage link was down), Inconsistent (a
resync runs into it), Diskless or missing (disks replaced, resource not up) cannot run its VM:
DRBD refuses to promote it, or would serve it over the network from the peer. kissclusterd
announces a node with such a copy of one of its own VMs (those primary-vms.target wants here)
as worse off (kisscluster.heartbeat.core), so the peer keeps or takes the VMs until every such
copy here is UpToDate: failback never goes to a copy that cannot run the VM. The peer's VMs do
not count: a new VM of the peer's syncing into this node must not move this node's VMs away.
Nor does a disk added to a VM that runs here (kisscluster.disks): from the moment kiss.vms
writes the resource file that names it until its initial sync starts from here, its new volume
is not up, then Diskless, then Inconsistent, and Secondary beside volumes Primary here; moving
the VM would stop it for a copy of that volume that is no better. A volume Primary here that is
not UpToDate (Diskless: its disk failed) still counts. Their minors come from the resource files
kiss.vms renders.
"""

import re
from pathlib import Path

from kisscluster import drbd, placement

SYSTEMD_DIR = Path("/etc/systemd/system")
DRBD_DIR = Path("/etc/drbd.d")
PROC_DRBD = Path("/proc/drbd")

HOME_DROP_IN = "primary-vms.target.d/kisscluster-vms.conf"  # written by kiss.vms
_MINOR = re.compile(r"\bminor\s+(\d+)\s*;")
_VOLUME = re.compile(r"\bvolume\s+(\d+)\s*\{[^}]*?\bminor\s+(\d+)\s*;")


def enabled_vms(systemd_dir: Path) -> list[str]:
    """The active VMs: those all-vms.target wants (kiss.vms enables exactly these)."""
    wants = systemd_dir / "all-vms.target.wants"
    units = [p.name for p in wants.iterdir()] if wants.is_dir() else []
    return sorted(u[3:-8] for u in units if u.startswith("vm@") and u.endswith(".service"))


def home_vms(systemd_dir: Path) -> list[str]:
    """The VMs whose primary_on is this node."""
    try:
        return placement.drop_in_lists((systemd_dir / HOME_DROP_IN).read_text())[0]
    except OSError:
        return []


def volumes(resource_file: str) -> dict[int, int]:
    """Volume -> minor in the text of a VM's resource file (kisscluster.drbd.render_resource)."""
    return {int(volume): int(minor) for volume, minor in _VOLUME.findall(resource_file)}


def stale(vms: list[str], drbd_dir: Path, proc_drbd: Path) -> list[str]:
    """The volumes of `vms` that are not UpToDate here, as `vm/minor state`; not a new disk of a
    VM that runs here (a volume not Primary in a resource Primary here)."""
    try:
        states = drbd.proc_volumes(proc_drbd.read_text(encoding="ascii"))
    except OSError:
        states = {}
    found = []
    for vm in vms:
        try:
            minors = [int(m) for m in _MINOR.findall((drbd_dir / f"{vm}.res").read_text())]
        except OSError:
            found.append(f"{vm} no resource file")
            continue
        primary = {minor for minor in minors if states.get(minor, {}).get("role") == "Primary"}
        found += [
            f"{vm}/{minor} {disk}"
            for minor in minors
            if (disk := states.get(minor, {}).get("disk", "not up")) != "UpToDate"
            and (not primary or minor in primary)
        ]
    return found
