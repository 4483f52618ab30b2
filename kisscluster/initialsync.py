"""The initial sync of a VM's resource that kiss.vms has just created on this node.

kiss.vms writes fresh DRBD metadata only on a node where its run created the VM's root LV, and
on the VM's `primary_on` node it then starts the initial sync by declaring this copy good
(`primary --force`). That is right when both copies are new, and a disaster when only this one
is: a node whose disks were replaced, or that was reinstalled, creates its LVs anew while the
peer still holds the VM's data (and may be running it), and forcing the empty copy would sync
emptiness over the peer's. So the new copy first waits a moment for its peer, and:

* connected, and no volume of the peer holds data (Inconsistent, or Diskless): both copies are
  new: force it here;
* connected, and the peer holds data (UpToDate, Outdated, Consistent): force nothing: DRBD makes
  this fresh copy the sync target and the data flows from the peer;
* no connection within the wait: the peer has no such resource up. kiss-configure applies the
  primary first and the peer after it, and checks first that the peer answers, so on a first
  roll-out the peer has not created its copy yet: both are new, force it here.

A disk added to an existing VM is one new volume of a running resource (kisscluster.disks),
forced the same way on the node where the resource is Primary: the peer's copy of that volume
is new too (connected, Inconsistent), or not there yet (the peer's run, after this one, creates
it; DRBD marks the absent copy Outdated and syncs into it once it is attached).
"""

import subprocess
import sys
import time

from kisscluster import drbd, names

CONNECT_WAIT = 15.0  # DRBD connects at once to a peer that listens; under TCG it takes seconds
POLL = 0.5
NO_DATA = ("Inconsistent", "Diskless")  # fresh metadata, or no disk at all


def decide(peer_disks: list[str]) -> str | None:
    """`force`, `from-peer`, or None while the peer's disks are unknown (not connected yet)."""
    if not peer_disks or any(disk == "DUnknown" for disk in peer_disks):
        return None
    if all(disk in NO_DATA for disk in peer_disks):
        return "force"
    return "from-peer"


def _states(drbdadm: str, command: str, resource: str) -> list[str]:
    done = subprocess.run(
        [drbdadm, command, resource], capture_output=True, text=True, timeout=60, check=False
    )
    return done.stdout.split() if done.returncode == 0 else []


def _must(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    if done.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv)} exited {done.returncode}: {drbd.error_line(done.stderr)}"
        )


# Five parameters: the resource, or one volume of it, and what to do once forced.
def initial_sync(
    drbdadm: str,
    resource: str,
    wait: float = CONNECT_WAIT,
    volume: int | None = None,
    keep_primary: bool = False,
) -> str:
    """Start the initial sync of `resource` (or of its `volume` only) from here unless the peer
    holds its data; what was done, as a line for the operator. `keep_primary`: the volume stays
    Primary, as the rest of a resource whose VM runs here."""
    target = (
        names.validate_vm_name(resource)
        if volume is None
        else drbd.resource_volume(resource, volume)
    )
    deadline = time.monotonic() + wait
    while True:
        peer_disks = [d.partition("/")[2] for d in _states(drbdadm, "dstate", target)]
        decision = decide(peer_disks)
        if decision is not None or time.monotonic() >= deadline:
            break
        time.sleep(POLL)
    if decision == "from-peer":
        return (
            f"{target}: the peer holds its data ({', '.join(peer_disks)}): this new copy is its "
            "sync target, nothing forced"
        )
    _must(drbd.primary_force_command(drbdadm, resource, volume))
    if not keep_primary:
        _must(drbd.secondary_command(drbdadm, resource, volume))
    why = "the peer's copy is new too" if decision == "force" else "no peer copy is up"
    return f"{target}: initial sync started from this node ({why})"


def command(drbdadm: str, resource: str) -> list[str]:
    """The command kiss.drbd_initial_sync runs, in Salt's Python (which has kisscluster)."""
    return [sys.executable, "-m", "kisscluster.unitctl", "initial-sync", "--drbdadm", drbdadm,
            names.validate_vm_name(resource)]  # fmt: skip


def volume_command(drbdadm: str, resource: str, volume: int, keep_primary: bool) -> list[str]:
    """The command kiss.drbd_volume_sync runs: the initial sync of one new volume."""
    return [*command(drbdadm, resource), "--volume", str(int(volume)),
            *(["--keep-primary"] if keep_primary else [])]  # fmt: skip
