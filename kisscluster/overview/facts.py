"""What one node knows about itself, read on that node, and both nodes' facts gathered at once.

A node's facts (`kiss-overview --local --json` prints them) are what its systemd, DRBD and
kissclusterd say right now: the VM targets and units, the VMs all-vms.target wants (enabled)
and primary-vms.target wants (home, kisscluster.heartbeat.copies), the VMs with a resource file
(disabled ones keep theirs), each volume's state from /proc/drbd, and kissclusterd's published
status. The peer's are read by running that command on the peer through the cluster's remote
command (ssh over the storage network), bounded in time: a peer that does not answer is
`unreachable`, with the reason, after at most `timeout` seconds (kisscluster.overview.cli reads
both at once).
"""

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kisscluster import drbd, names, placement
from kisscluster.heartbeat import copies, status

TARGETS = ("all-vms", "primary-vms", "no-vms", "manual-vms")
DAEMON_UNIT = "kissclusterd.service"
PEER_TIMEOUT = 3.0  # seconds for the whole remote command: a dead peer costs no more
CONNECT_TIMEOUT = 2  # ssh's ConnectTimeout, inside PEER_TIMEOUT
SYSTEMCTL_TIMEOUT = 10

#: What every node's facts hold, the peer's too.
KEYS = ("enabled", "home", "vms", "drbd", "targets", "units", "units_error", "kissclusterd")

Facts = dict[str, Any]
UnitStates = Callable[[list[str]], dict[str, str]]


@dataclass(frozen=True)
class Places:
    """Where a node's facts are read (other places in the tests)."""

    systemd_dir: Path = copies.SYSTEMD_DIR
    drbd_dir: Path = copies.DRBD_DIR
    proc_drbd: Path = copies.PROC_DRBD
    run_dir: Path = status.DEFAULT_RUN_DIR
    placement_file: Path = placement.PLACEMENT_FILE


NODE = Places()


def systemctl_states(units: list[str]) -> dict[str, str]:
    """The active state of each unit (`inactive` for one not loaded); OSError when systemd
    does not answer one line per unit."""
    done = subprocess.run(["systemctl", "is-active", "--", *units], capture_output=True,
                          text=True, timeout=SYSTEMCTL_TIMEOUT, check=False)  # fmt: skip
    states = done.stdout.split()
    if len(states) != len(units):
        raise OSError(f"systemctl is-active: {drbd.error_line(done.stderr)}")
    return dict(zip(units, states, strict=True))


def _valid(vm: str) -> bool:
    try:
        names.validate_vm_name(vm)
    except ValueError:
        return False  # not a unit or file kiss.vms made
    return True


def resource_vms(drbd_dir: Path) -> list[str]:
    """The VMs with a DRBD resource file here: the active ones and the disabled ones."""
    paths = drbd_dir.glob("*.res") if drbd_dir.is_dir() else []
    return sorted(path.stem for path in paths if _valid(path.stem))


def vm_volumes(drbd_dir: Path, vm: str, minors: dict[int, dict[str, Any]]) -> list[Facts] | None:
    """Each volume of `vm` with its minor and state; None without a resource file."""
    try:
        text = (drbd_dir / f"{vm}.res").read_text(encoding="utf-8")
    except OSError:
        return None
    return [
        {"volume": volume, "minor": minor, **minors.get(minor, {"cs": "Unconfigured"})}
        for volume, minor in sorted(copies.volumes(text).items())
    ]


def local_facts(places: Places = NODE, unit_states: UnitStates = systemctl_states) -> Facts:
    """This node's facts. What cannot be read is said in an `*_error` key, never raised."""
    enabled = [vm for vm in copies.enabled_vms(places.systemd_dir) if _valid(vm)]
    vms = sorted(set(enabled) | set(resource_vms(places.drbd_dir)))
    try:
        minors = drbd.proc_volumes(places.proc_drbd.read_text(encoding="ascii"))
    except OSError:
        minors = {}  # no DRBD module loaded: every volume shows as not up
    facts: Facts = {
        "reachable": True,
        "enabled": enabled,
        "home": copies.home_vms(places.systemd_dir),
        "vms": vms,
        "drbd": {vm: vm_volumes(places.drbd_dir, vm, minors) for vm in vms},
        "targets": {},
        "daemon_unit": None,
        "units": {},
        "units_error": None,
        "kissclusterd": None,
        "kissclusterd_error": None,
        "placement": placement.AT_HOME.as_dict(),
    }
    try:
        facts["placement"] = placement.load(places.placement_file).as_dict()
    except (OSError, placement.PlacementError) as exc:
        facts["placement_error"] = str(exc)
    units = [f"{t}.target" for t in TARGETS] + [DAEMON_UNIT] + [f"vm@{vm}.service" for vm in vms]
    try:
        states = unit_states(units)
        facts["targets"] = {t: states[f"{t}.target"] for t in TARGETS}
        facts["daemon_unit"] = states[DAEMON_UNIT]
        facts["units"] = {vm: states[f"vm@{vm}.service"] for vm in vms}
    except (OSError, subprocess.SubprocessError) as exc:
        facts["units_error"] = str(exc)
    try:
        facts["kissclusterd"] = status.read(places.run_dir)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        facts["kissclusterd_error"] = str(exc) or type(exc).__name__
    return facts


def unreachable(why: str) -> Facts:
    return {"reachable": False, "error": why}


def bounded(command: list[str], connect_timeout: int = CONNECT_TIMEOUT) -> list[str]:
    """The remote command with ssh's connect timeout and batch mode before its own options:
    ssh keeps the first value it is given for each option."""
    if Path(command[0]).name != "ssh":
        return command
    options = ["-o", f"ConnectTimeout={connect_timeout}", "-o", "BatchMode=yes"]
    return [command[0], *options, *command[1:]]


def peer_facts(command: list[str], timeout: float = PEER_TIMEOUT) -> Facts:
    """The facts the peer prints (its last stdout line) for `command`, or `unreachable`."""
    try:
        done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, text=True,
                              timeout=timeout, check=False)  # fmt: skip
    except subprocess.TimeoutExpired:
        return unreachable(f"no answer within {timeout:g} s")
    except OSError as exc:
        return unreachable(f"{command[0]}: {exc.strerror or exc}")
    lines = done.stdout.strip().splitlines()
    try:
        facts = json.loads(lines[-1])
    except (IndexError, ValueError):
        facts = None
    if isinstance(facts, dict) and facts.get("reachable") is False and facts.get("error"):
        return unreachable(f"answers, but {facts['error']}")
    if not isinstance(facts, dict) or facts.get("reachable") is not True:
        said = drbd.error_line(done.stderr) if done.stderr.strip() else "no facts on stdout"
        return unreachable(f"exit status {done.returncode}: {said}")
    missing = [key for key in KEYS if key not in facts]
    if missing:
        return unreachable(f"answers without {', '.join(missing)}: is its kisscluster older?")
    return facts
