"""Helpers that vm@.service and drbd-resource@.service run (`python3 -m kisscluster.unitctl`).

promote RESOURCE      retry `drbdadm primary RESOURCE` until it works: after a failover the peer
                      may still be letting go; systemd's TimeoutStartSec ends the wait. A copy
                      that cannot run the VM (Outdated, Inconsistent, no disk) is refused at
                      once: it missed writes, and the VM must run where the copy is UpToDate.
demote RESOURCE       retry `drbdadm secondary RESOURCE` while the copy is still Primary here: a
                      process that still holds the device open (a qemu in its last moments,
                      udev probing after a state change) refuses it for a moment, and a copy
                      left Primary keeps its VM from starting on the peer for good. systemd's
                      TimeoutStopSec ends the wait.
retry-failed -- ACTION  reset the failed vm@ and drbd-resource@ units and run ACTION (the
                      heartbeat's action for its state) to start them again; exits 3 if it did.
initial-sync RESOURCE  kiss.vms on a VM's primary_on node, for a resource it just created: start
                      the initial sync from here unless the peer holds the data
                      (kisscluster.initialsync); with --volume, one new volume of a running
                      resource, forced only when the peer's copy of it is new too.
powerdown VM PID      ask the guest to shut down (`system_powerdown` on the human monitor) and wait
                      for qemu PID to exit; systemd's TimeoutStopSec ends the wait with SIGTERM.
                      A qemu that holds no running guest (it waits for an incoming migration, or
                      its guest was migrated away) is told to quit instead.
adjust RESOURCE       `drbdadm adjust RESOURCE`, then, while kiss-migrate moves the VM
                      (`<run_dir>/<vm>.migration` exists, kisscluster.migration), allow two
                      primaries again: adjust alone would take back what the migration set.
"""

import argparse
import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

from kisscluster import drbd, initialsync, names

RETRY_SECONDS = 2.0
CANNOT_RUN = ("Outdated", "Inconsistent", "Diskless", "Failed", "Attaching", "Negotiating")
RETRIED = 3
# `info status` of a qemu whose guest runs elsewhere: powering it down would wait for nothing.
NO_GUEST_HERE = ("inmigrate", "postmigrate")
UNANSWERED = "unanswered"  # a qemu that does not answer its monitor: taken to hold its guest


def stale_volumes(drbdadm: str, resource: str) -> list[str]:
    """This node's volumes of `resource` whose disk state cannot run the VM."""
    done = subprocess.run(
        [drbdadm, "dstate", resource], capture_output=True, text=True, check=False
    )
    local = [line.split("/")[0] for line in done.stdout.split()]
    return [f"volume {n} {state}" for n, state in enumerate(local) if state in CANNOT_RUN]


def promote(drbdadm: str, resource: str, retry: float = RETRY_SECONDS) -> int:
    resource = names.validate_vm_name(resource)
    attempt = 0
    while True:
        stale = stale_volumes(drbdadm, resource)
        if stale:
            print(
                f"{resource}: refusing to run on this copy ({', '.join(stale)}): it missed writes "
                "or is still syncing; the VM runs where its copy is UpToDate",
                file=sys.stderr,
                flush=True,
            )
            return 2
        attempt += 1
        completed = subprocess.run(
            [drbdadm, "primary", resource], capture_output=True, text=True, check=False
        )
        if completed.returncode == 0:
            print(f"{resource}: primary after {attempt} attempt(s)", flush=True)
            return 0
        if attempt == 1 or attempt % 10 == 0:
            reason = drbd.error_line(completed.stderr)
            print(f"{resource}: not primary yet ({reason}), retrying", flush=True)
        time.sleep(retry)


def demote(drbdadm: str, resource: str, retry: float = RETRY_SECONDS) -> int:
    resource = names.validate_vm_name(resource)
    attempt = 0
    while True:
        attempt += 1
        completed = subprocess.run(
            [drbdadm, "secondary", resource], capture_output=True, text=True, check=False
        )
        if completed.returncode == 0:
            if attempt > 1:
                print(f"{resource}: secondary after {attempt} attempts", flush=True)
            return 0
        roles = subprocess.run(
            [drbdadm, "role", resource], capture_output=True, text=True, check=False
        ).stdout.split()
        if not any(role.startswith("Primary") for role in roles):
            return 0  # not up, or Secondary already: nothing holds the peer back
        if attempt == 1 or attempt % 10 == 0:
            reason = drbd.error_line(completed.stderr)
            print(f"{resource}: still primary ({reason}), retrying", flush=True)
        time.sleep(retry)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read_until_second_prompt(connection: socket.socket) -> str:
    """Let qemu answer before hanging up: the banner's prompt, then the one after our command."""
    seen = b""
    while seen.count(b"(qemu)") < 2:
        chunk = connection.recv(4096)
        if not chunk:
            break
        seen += chunk
    return seen.decode(errors="replace")


def human_monitor(run_dir: Path, vm: str, command: str, timeout: float = 10) -> str:
    """One human-monitor command; its answer."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(timeout)
        connection.connect(str(run_dir / f"{vm}.monitor"))
        connection.sendall(command.encode() + b"\n")
        return _read_until_second_prompt(connection)


def run_state(run_dir: Path, vm: str, timeout: float = 10) -> str | None:
    """The run state of the VM's qemu from its human monitor (QMP takes one client, and
    kiss-migrate holds it while qemu sends the guest): `running`, `paused`, or why it is paused
    (`inmigrate`, `postmigrate`, `finish-migrate`, ...). None if no qemu listens there,
    UNANSWERED if one does but does not answer."""
    try:
        shown = human_monitor(run_dir, vm, "info status", timeout)
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except OSError:
        return UNANSWERED
    line = shown.partition("VM status: ")[2].partition("\n")[0].strip()
    if not line:
        return UNANSWERED
    reasons = re.findall(r"\(([\w-]+)\)", line)  # "paused (inmigrate)"; not "(single step mode)"
    return reasons[-1] if reasons else line.split()[0]


def powerdown(run_dir: Path, vm: str, pid: int, poll: float = 0.5) -> int:
    vm = names.validate_vm_name(vm)
    command = "quit" if run_state(run_dir, vm) in NO_GUEST_HERE else "system_powerdown"
    human_monitor(run_dir, vm, command)
    print(f"{vm}: {command} sent, waiting for qemu {pid} to exit", flush=True)
    while _alive(pid):
        time.sleep(poll)
    return 0


def adjust(drbdadm: str, resource: str, run_dir: Path) -> int:
    resource = names.validate_vm_name(resource)
    subprocess.run([drbdadm, "adjust", resource], check=True)
    if (run_dir / f"{resource}.migration").exists():
        subprocess.run(drbd.two_primaries_command(drbdadm, resource, True), check=True)
        print(f"{resource}: two primaries allowed while kiss-migrate moves it", flush=True)
    return 0


def retry_failed(action: list[str]) -> int:
    listing = subprocess.run(
        ["systemctl", "list-units", "--state=failed", "--plain", "--no-legend",
         "vm@*", "drbd-resource@*"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    failed = [line.split()[0] for line in listing.stdout.splitlines() if line.strip()]
    if listing.returncode != 0 or not failed:
        return 0
    print(f"retrying failed units: {' '.join(failed)}", flush=True)
    subprocess.run(["systemctl", "reset-failed", *failed], check=False)
    subprocess.run(action, stdin=subprocess.DEVNULL, check=False)
    return RETRIED


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kisscluster.unitctl", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    promote_parser = commands.add_parser("promote")
    promote_parser.add_argument("--drbdadm", default="drbdadm")
    promote_parser.add_argument("resource")
    powerdown_parser = commands.add_parser("powerdown")
    powerdown_parser.add_argument("--run-dir", type=Path, default=Path("/run/kvm"))
    powerdown_parser.add_argument("vm")
    powerdown_parser.add_argument("pid", type=int)
    sync_parser = commands.add_parser("initial-sync")
    sync_parser.add_argument("--drbdadm", default="drbdadm")
    sync_parser.add_argument("resource")
    sync_parser.add_argument("--volume", type=int, help="only this new volume of the resource")
    sync_parser.add_argument("--keep-primary", action="store_true")
    adjust_parser = commands.add_parser("adjust")
    adjust_parser.add_argument("--drbdadm", default="drbdadm")
    adjust_parser.add_argument("--run-dir", type=Path, default=Path("/run/kvm"))
    adjust_parser.add_argument("resource")
    demote_parser = commands.add_parser("demote")
    demote_parser.add_argument("--drbdadm", default="drbdadm")
    demote_parser.add_argument("resource")
    retry_parser = commands.add_parser("retry-failed")
    retry_parser.add_argument("action", nargs="+")
    args = parser.parse_args(argv)
    try:
        if args.command == "promote":
            return promote(args.drbdadm, args.resource)
        if args.command == "adjust":
            return adjust(args.drbdadm, args.resource, args.run_dir)
        if args.command == "demote":
            return demote(args.drbdadm, args.resource)
        if args.command == "retry-failed":
            return retry_failed(args.action)
        if args.command == "initial-sync":
            said = initialsync.initial_sync(
                args.drbdadm, args.resource, volume=args.volume, keep_primary=args.keep_primary
            )
            print(said, flush=True)
            return 0
        return powerdown(args.run_dir, args.vm, args.pid)
    except (ValueError, OSError, RuntimeError, subprocess.CalledProcessError) as exc:
        print(f"kisscluster.unitctl {args.command}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
