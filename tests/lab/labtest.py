"""Helpers of the lab tests: the session's Lab, polling, snapshots of both nodes, and the
sampler that checks no VM ever runs on both nodes."""

import contextlib
import itertools
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest

from kisscluster.lab import cluster
from kisscluster.lab.layout import Layout, Progress
from kisscluster.lab.machine import Machine

# The 8.4 front end of drbd-utils 9, as kiss.vms calls it (salt/states/kiss/defaults.yaml).
DRBDADM = "/usr/lib/drbd/drbdadm-84"
SUMMARY = re.compile(r"(\d+) states, (\d+) changed, (\d+) failed")  # one per node's run


@dataclass
class Lab:
    layout: Layout
    progress: Progress
    node1: Machine
    node2: Machine
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[Machine, Machine]:
        return (self.node1, self.node2)

    def sh(self, machine: Machine, *command: str, timeout: float = 120) -> str:
        return machine.ssh(list(command), timeout=timeout).stdout

    def ok(self, machine: Machine, *command: str, timeout: float = 120) -> bool:
        return machine.ssh(list(command), timeout=timeout, check=False).returncode == 0

    def record(self, name: str, seconds: float) -> None:
        self.progress.timings[name] = seconds
        path = self.layout.root / "timings.json"
        path.write_text(json.dumps(self.progress.timings, indent=2, sort_keys=True) + "\n")


def snapshot(machine: Machine) -> dict[str, Any]:
    """What the node runs now (kisscluster.lab.probe); {} while it is powered off."""
    return cluster.snapshot(machine) or {}


def wait_until(
    what: str,
    check: Callable[[], bool],
    timeout: float,
    every: float = 2.0,
    explain: Callable[[], str] | None = None,
) -> float:
    """Poll `check` until it holds; the seconds it took. Fails the test after `timeout`, with
    what `explain` tells of the state that kept `check` false."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            found = f"\n{explain()}" if explain else ""
            pytest.fail(f"not within {timeout:.0f}s: {what}{found}")
        time.sleep(every)
    return time.monotonic() - began


def assert_changed_nothing(out: str) -> None:
    """kiss-configure's output `out`: both nodes' runs changed nothing and nothing failed."""
    summaries = SUMMARY.findall(out)
    assert len(summaries) == 2, out
    assert all(changed == "0" and failed == "0" for _, changed, failed in summaries), out


def kiss_pillar(lab: Lab) -> dict[str, Any]:
    out = lab.sh(lab.node1, "salt-call", "--local", "--out=json", "pillar.get", "kiss")
    pillar: dict[str, Any] = json.loads(out)["local"]
    return pillar


def vm_running(state: dict[str, Any], vm: str) -> bool:
    return state.get("units", {}).get(f"vm@{vm}.service") == "active"


def target_active(state: dict[str, Any], target: str) -> bool:
    return state.get("targets", {}).get(f"{target}.target") == "active"


def in_sync(state: dict[str, Any], resource: str) -> bool:
    volumes = [v for k, v in state.get("drbd", {}).items() if k.split("/")[0] == resource]
    return bool(volumes) and all(
        v.get("cs") == "Connected" and v.get("disk") == v.get("peer_disk") == "UpToDate"
        for v in volumes
    )


class Sampler:
    """Samples each node in its own thread, so that a node that does not answer (killed,
    booting, hung) holds up only its own samples; checks afterwards that no VM ever ran on
    both nodes and no DRBD volume was ever primary on both. A sample is (began, ended, state):
    the node was in that state at some moment between the two (host monotonic seconds).

    A writer is a VM or volume that can get a write acknowledged (see _writes). A node resumed
    from a hang is a Primary that acknowledges nothing until it stands down: its DRBD first
    still believes itself connected (and waits for acks that never come), then holds its I/O
    frozen (fencing) until the fence-peer handler has decided. It is not a second writer."""

    def __init__(self, lab: Lab, every: float = 1.0) -> None:
        self.lab = lab
        self.every = every
        self.samples: dict[str, list[tuple[float, float, dict[str, Any]]]] = {
            machine.name: [] for machine in lab.nodes
        }
        self._stop = threading.Event()
        self._idle = {machine.name: threading.Event() for machine in lab.nodes}
        self._held: set[str] = set()
        self._threads = [
            threading.Thread(target=self._run, args=(machine,), daemon=True)
            for machine in lab.nodes
        ]

    def __enter__(self) -> "Sampler":
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=120)

    @contextlib.contextmanager
    def held(self, machine: Machine) -> Iterator[None]:
        """No sample of `machine` in flight or started inside this block. For a hang: a probe
        that spans it shows the node either before or after, and would overlap every sample
        of the peer taken meanwhile."""
        self._idle[machine.name].clear()
        self._held.add(machine.name)
        self._idle[machine.name].wait(timeout=120)
        try:
            yield
        finally:
            self._held.discard(machine.name)

    def _run(self, machine: Machine) -> None:
        while not self._stop.is_set():
            if machine.name in self._held:
                self._idle[machine.name].set()
                self._stop.wait(0.1)
                continue
            began = time.monotonic()
            try:
                state = snapshot(machine)
            except Exception:
                state = {}
            self.samples[machine.name].append((began, time.monotonic(), state))
            self._stop.wait(self.every)

    def longest_gap(self, machine: Machine) -> float:
        """The most seconds between the starts of two samples of `machine`."""
        starts = [began for began, _, _ in self.samples[machine.name]]
        return max((b - a for a, b in itertools.pairwise(starts)), default=float("inf"))

    def both_ran(self) -> list[str]:
        """Every pair of samples, one per node and overlapping in time, in which a VM unit was
        active, or a DRBD volume Primary, on both nodes; and every Primary/Primary volume. Not
        inside a live migration's window: while both nodes show kiss-migrate's mark."""
        found = []
        one, two = (self.samples[machine.name] for machine in self.lab.nodes)
        for began, _, state in one + two:
            for volume, drbd in state.get("drbd", {}).items():
                migrating = volume.split("/")[0] in state.get("migrating", [])
                if drbd.get("role") == "Primary" == drbd.get("peer_role") and not migrating:
                    found.append(f"t={began:.0f}: {volume} Primary/Primary")
        for began, ended, first in one:
            for other_began, other_ended, second in two:
                if other_began > ended or began > other_ended:
                    continue
                at = f"t={max(began, other_began):.0f}"
                # A live migration's window: both nodes show the VM as being migrated.
                window = set(first.get("migrating", [])) & set(second.get("migrating", []))
                found += [
                    f"{at}: {u} active on both ({_volumes(first, u)} | {_volumes(second, u)})"
                    for u in sorted(_vms(first, second) & _vms(second, first))
                    if u[3:-8] not in window
                ]
                found += [
                    f"{at}: {v} Primary on both"
                    for v in sorted(_primaries(first, second) & _primaries(second, first))
                    if v.split("/")[0] not in window
                ]
        return found


def _volumes(state: dict[str, Any], unit: str) -> str:
    """The DRBD state of a VM unit's volumes in a snapshot, for a message."""
    vm = unit[3:-8]
    return ", ".join(
        f"{k} {v.get('cs')} {v.get('role')}/{v.get('peer_role')} io {v.get('io')}"
        for k, v in sorted(state.get("drbd", {}).items())
        if k.split("/")[0] == vm
    )


def _writes(state: dict[str, Any], other: dict[str, Any], volume: str) -> bool:
    """Whether `volume` can get a write acknowledged on the node of `state`, seen beside a
    sample of the peer taken at about the same time. Not when it is Secondary, nor when DRBD
    holds its I/O frozen (fencing), nor when it still believes itself Connected while the peer
    is a Primary that is not: with protocol C a write completes only once the peer acked it,
    and a Primary peer is never connected to another Primary. Nor when each sample shows its
    node Connected: connected, each node's DRBD sees the peer's role as it is, and a
    Primary/Primary view is checked on its own (both_ran). Two samples of which neither sees
    its peer Primary at that moment (a handover), or only one does (the end of a live
    migration's window, seen on one side before its mark went, on the other after), were
    taken at different moments, however much their intervals overlap."""
    mine, theirs = state.get("drbd", {}).get(volume, {}), other.get("drbd", {}).get(volume, {})
    if mine.get("role") != "Primary" or mine.get("io") == "s":
        return False
    stale_view = theirs.get("role") == "Primary" and theirs.get("cs") != "Connected"
    handover = all(v.get("cs") == "Connected" for v in (mine, theirs))
    return not (mine.get("cs") == "Connected" and stale_view) and not handover


def _vms(state: dict[str, Any], other: dict[str, Any]) -> set[str]:
    """The VM units active in a snapshot that can get a write acknowledged (see _writes)."""
    found = set()
    for unit, active in state.get("units", {}).items():
        if not unit.startswith("vm@") or active != "active":
            continue
        volumes = [k for k in state.get("drbd", {}) if k.split("/")[0] == unit[3:-8]]
        if not volumes or any(_writes(state, other, v) for v in volumes):
            found.add(unit)
    return found


def _primaries(state: dict[str, Any], other: dict[str, Any]) -> set[str]:
    """The DRBD volumes in a snapshot that can get a write acknowledged (see _writes)."""
    return {volume for volume in state.get("drbd", {}) if _writes(state, other, volume)}


def runner(lab: Lab, vm: str) -> Machine | None:
    """The node whose VM unit for `vm` is active (at most one, by the invariant)."""
    for machine in lab.nodes:
        if vm_running(snapshot(machine), vm):
            return machine
    return None


def settled_clean(lab: Lab, vms: dict[str, Any]) -> bool:
    """Settled, and every volume of every VM Connected and UpToDate on both nodes."""
    states = {m.name: snapshot(m) for m in lab.nodes}
    return settled(lab, vms) and all(in_sync(s, vm) for s in states.values() for vm in vms)


def describe(lab: Lab, vms: dict[str, Any]) -> str:
    """Each node's targets, VM units, DRBD volumes and the tail of its kissclusterd and kernel
    journal: what a failed settle leaves to read."""
    lines = []
    for machine in lab.nodes:
        state = snapshot(machine)
        if not state:
            lines.append(f"{machine.name}: no answer")
            continue
        targets = ", ".join(f"{t} {a}" for t, a in sorted(state.get("targets", {}).items()))
        running = ", ".join(vm for vm in vms if vm_running(state, vm)) or "none"
        lines.append(f"{machine.name}: targets {targets}; VMs running: {running}")
        lines += [
            f"  {volume} {d.get('cs')} {d.get('role')}/{d.get('peer_role')} "
            f"{d.get('disk')}/{d.get('peer_disk')} io {d.get('io')}"
            for volume, d in sorted(state.get("drbd", {}).items())
        ]
        journal = machine.ssh(
            ["journalctl", "-t", "kissclusterd", "-t", "kernel", "-n", "40", "--no-pager", "-q"],
            check=False,
        )
        lines += [f"  | {line}" for line in journal.stdout.splitlines()]
    return "\n".join(lines)


def split_brains(lab: Lab) -> list[str]:
    """The kernel's split-brain lines on either node since it booted."""
    found = []
    for machine in lab.nodes:
        log = lab.sh(machine, "dmesg")
        found += [f"{machine.name}: {line}" for line in log.splitlines() if "Split-Brain" in line]
    return found


def settled(lab: Lab, vms: dict[str, Any]) -> bool:
    """Both nodes on primary-vms, each VM running on its primary_on node only."""
    states = {m.name: snapshot(m) for m in lab.nodes}
    return all(target_active(s, "primary-vms") for s in states.values()) and all(
        vm_running(states[name], vm) == (record["primary_on"] == name)
        for vm, record in vms.items()
        for name in states
    )
