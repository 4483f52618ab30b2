"""What a lab node runs, read inside the guest: `python -m kisscluster.lab.probe` prints JSON.

Targets, VM and DRBD units, DRBD resources (from /proc/drbd and /dev/drbd/by-res) and what
kissclusterd publishes. `kiss-lab status` shows it; the lab tests sample it on both nodes.
"""

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

from kisscluster import drbd as drbd_mod
from kisscluster.heartbeat import status

TARGETS = ("all-vms.target", "primary-vms.target", "no-vms.target", "manual-vms.target")


def _output(arguments: list[str]) -> str:
    done = subprocess.run(arguments, capture_output=True, text=True, timeout=30, check=False)
    return done.stdout


def units() -> dict[str, str]:
    """Active state of every loaded vm@, drbd-resource@ and kissclusterd unit."""
    listing = _output(["systemctl", "list-units", "--all", "--plain", "--no-legend",
                       "vm@*", "drbd-resource@*", "kissclusterd.service"])  # fmt: skip
    found = {}
    for line in listing.splitlines():
        fields = line.split()
        if len(fields) >= 3:
            found[fields[0]] = fields[2]
    return found


def drbd(proc_drbd: str, by_res: Path = Path("/dev/drbd/by-res")) -> dict[str, dict[str, Any]]:
    """DRBD volumes by `<resource>/<volume>`: their minor and state (drbd.proc_volumes)."""
    minors = drbd_mod.proc_volumes(proc_drbd)
    volumes = {}
    for link in sorted(by_res.glob("*/*")) if by_res.is_dir() else []:
        device = link.resolve().name
        if device.startswith("drbd") and device[4:].isdigit():
            minor = int(device[4:])
            state = minors.get(minor, {"cs": "Unconfigured"})
            volumes[f"{link.parent.name}/{link.name}"] = {"minor": minor, **state}
    return volumes


def snapshot() -> dict[str, Any]:
    # Read first, so that a mark seen covers the units and volumes read below however long this
    # probe takes under TCG (kiss-migrate marks before its window opens, unmarks after it ends).
    migrating = sorted(p.stem for p in Path("/run/kvm").glob("*.migration"))
    # One systemctl call for all targets and no second Python: under TCG every process start
    # costs, and the lab tests sample each node every second.
    active = _output(["systemctl", "is-active", *TARGETS]).split()
    targets = dict(zip(TARGETS, active, strict=True))
    proc = Path("/proc/drbd")
    try:
        daemon = status.read(status.DEFAULT_RUN_DIR)
    except (OSError, ValueError, KeyError):
        daemon = None
    return {
        "targets": targets,
        "units": units(),
        "drbd": drbd(proc.read_text() if proc.exists() else ""),
        "kissclusterd": daemon,
        # VMs kiss-migrate is moving (kisscluster.migration.node): Primary on both is allowed.
        "migrating": migrating,
    }


def main() -> int:
    json.dump(snapshot(), sys.stdout, sort_keys=True)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
