"""DRBD online verify on a schedule: the timer and service kiss.vms writes, and what they run.

`kiss-drbd-verify.timer` fires on the cluster's `verify_schedule` (pillar `kiss:cluster`, systemd
OnCalendar syntax, default weekly) and starts `kiss-drbd-verify.service`, which runs
`python3 -m kisscluster.onlineverify RES...`: `drbdadm verify RES` on each resource whose VM is at
home on this node (its `primary_on`), so each resource is verified from one side only, and only
while it is Connected. DRBD compares both copies block by block in the background and counts
the blocks that differ in the `oos:` field of /proc/drbd, which kiss-verify reports.
"""

import argparse
import subprocess
import sys
from collections.abc import Mapping, Sequence
from typing import Any

from kisscluster import drbd, names

DEFAULT_SCHEDULE = "weekly"
SERVICE = "kiss-drbd-verify.service"
TIMER = "kiss-drbd-verify.timer"
BANNER = "# Managed by Salt (kiss.vms) from the kiss pillar: local edits are overwritten.\n"
COMMAND_TIMEOUT = 120


def _run(argv: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        argv, capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
    )


def check_schedule(schedule: str, systemd_analyze: str = "systemd-analyze") -> str:
    """`schedule` if systemd takes it as an OnCalendar event, else ValueError with its words."""
    if not isinstance(schedule, str) or not schedule.strip() or "\n" in schedule:
        raise ValueError(f"verify_schedule must be one line of OnCalendar syntax, got {schedule!r}")
    done = _run([systemd_analyze, "calendar", schedule])
    if done.returncode != 0:
        reason = (done.stderr or done.stdout).strip().splitlines() or ["no message"]
        raise ValueError(f"verify_schedule {schedule!r} is not a calendar event: {reason[-1]}")
    return schedule


def home_resources(vms: Mapping[str, Mapping[str, Any]], node: str) -> list[str]:
    """The DRBD resources of the active VMs whose `primary_on` is `node`, by name."""
    return sorted(
        names.validate_vm_name(vm["drbd_resource"])
        for vm in vms.values()
        if vm["primary_on"] == node
    )


def timer_unit(schedule: str) -> str:
    """The text of kiss-drbd-verify.timer (`schedule` checked by `check_schedule` first)."""
    if "\n" in schedule:
        raise ValueError(f"verify_schedule must be one line, got {schedule!r}")
    return (
        f"{BANNER}[Unit]\n"
        "Description=kisscluster: DRBD online verify of this node's VMs' resources\n\n"
        "[Timer]\n"
        f"OnCalendar={schedule}\n"
        "# A run missed while the node was down happens at the next boot.\n"
        "Persistent=true\n"
        "RandomizedDelaySec=10min\n\n"
        "[Install]\n"
        "WantedBy=timers.target\n"
    )


def service_unit(vms: Mapping[str, Mapping[str, Any]], node: str, python: str, drbdadm: str) -> str:
    """The text of kiss-drbd-verify.service on `node`: verify the resources at home there."""
    resources = " ".join(home_resources(vms, node))
    command = f"{python} -m kisscluster.onlineverify --drbdadm {drbdadm} {resources}".rstrip()
    return (
        f"{BANNER}[Unit]\n"
        f"Description=kisscluster: DRBD online verify of the VMs at home on {node}\n"
        "After=drbd.service\n\n"
        "[Service]\n"
        "Type=oneshot\n"
        f"ExecStart={command}\n"
    )


def verify(drbdadm: str, resources: Sequence[str]) -> int:
    """Start `drbdadm verify` on each Connected resource; 1 if any could not be started."""
    failed = 0
    for resource in resources:
        resource = names.validate_vm_name(resource)
        state = _run([drbdadm, "cstate", resource])
        states = state.stdout.split()
        if state.returncode != 0 or not states or set(states) != {"Connected"}:
            shown = " ".join(states) or drbd.error_line(state.stderr)
            print(f"{resource}: not verified, not Connected ({shown})", flush=True)
            continue
        done = _run([drbdadm, "verify", resource])
        if done.returncode != 0:
            failed = 1
            print(f"{resource}: verify failed: {drbd.error_line(done.stderr)}", flush=True)
        else:
            print(f"{resource}: online verify started", flush=True)
    return failed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python3 -m kisscluster.onlineverify", description=__doc__
    )
    parser.add_argument("--drbdadm", default="drbdadm")
    parser.add_argument("resources", nargs="*")
    args = parser.parse_args(argv)
    try:
        return verify(args.drbdadm, args.resources)
    except (ValueError, OSError, subprocess.TimeoutExpired) as exc:
        print(f"kisscluster.onlineverify: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
