"""What the fault scenarios share: markers written with fsync into a VM's disk and read back
on whichever node runs it, and the settle and check every scenario ends with."""

import contextlib
import json
import shlex
import threading
import time
from collections.abc import Iterator
from typing import Any

from labtest import (
    Lab,
    Sampler,
    describe,
    kiss_pillar,
    runner,
    settled_clean,
    snapshot,
    split_brains,
    vm_running,
    wait_until,
)

from kisscluster import lvm, paths
from kisscluster.lab.layout import VOLUME_GROUP
from kisscluster.lab.machine import Machine

SETTLE_TIMEOUT = 600
TAKEOVER_TIMEOUT = 180
BLOCK = 4096
BEFORE, DURING = 2, 1  # markers live in these blocks, counted from the end of volume 0


def _block_script(vm: str, slot: int, device: str | None = None) -> str:
    """Shell that sets $dev (the VM's first DRBD volume, or `device`) and $n (the block `slot`
    blocks before the end of the DRBD device, whose size sysfs knows on a Secondary too)."""
    drbd = f"/dev/drbd/by-res/{vm}/0"
    return (
        f"size=$(cat /sys/class/block/$(basename $(readlink -f {drbd}))/size); "
        f"n=$(( size * 512 / {BLOCK} - {slot} )); dev={device or drbd}; "
    )


def write_marker(lab: Lab, machine: Machine, vm: str, slot: int, text: str) -> None:
    """`text` into one block of the VM's first volume on `machine`, with fsync (direct I/O)."""
    script = _block_script(vm, slot) + (
        f"printf %s {shlex.quote(text)} | dd of=$dev bs={BLOCK} count=1 seek=$n "
        "conv=sync,fsync oflag=direct iflag=fullblock status=none"
    )
    lab.sh(machine, "sh", "-c", shlex.quote(script))


def read_marker(lab: Lab, machine: Machine, vm: str, slot: int, backing: bool = False) -> str:
    """The block through DRBD (on the Primary), or (`backing`) straight from the copy's LV,
    which a Secondary cannot serve through DRBD: internal metadata sits after the data."""
    device = f"/dev/{VOLUME_GROUP}/{lvm.lv_name(vm, 'root')}" if backing else None
    script = _block_script(vm, slot, device) + (
        f"dd if=$dev bs={BLOCK} count=1 skip=$n iflag=direct status=none | tr -d '\\000'"
    )
    return lab.sh(machine, "sh", "-c", shlex.quote(script))


class Markers:
    """The markers written in one scenario, and where they must be found afterwards; and the
    kernel's split-brain lines from before it (an earlier scenario's, until a node reboots)."""

    def __init__(self, lab: Lab, scenario: str) -> None:
        self.lab = lab
        self.scenario = scenario
        self.written: dict[tuple[str, int], str] = {}
        self.earlier_split_brains = set(split_brains(lab))

    def new_split_brains(self) -> list[str]:
        return [line for line in split_brains(self.lab) if line not in self.earlier_split_brains]

    def write(self, vm: str, slot: int, machine: Machine | None = None) -> None:
        """On `machine`, or else on the node running the VM."""
        machine = machine or runner(self.lab, vm)
        assert machine is not None, f"{vm} runs nowhere"
        text = f"{self.scenario} {vm} slot {slot} on {machine.name} at {time.time():.3f}"
        write_marker(self.lab, machine, vm, slot, text)
        self.written[(vm, slot)] = text

    def lost(self) -> list[str]:
        """Every marker not on the disk of the node that runs its VM now."""
        missing = []
        for (vm, slot), text in sorted(self.written.items()):
            machine = runner(self.lab, vm)
            found = read_marker(self.lab, machine, vm, slot) if machine else "(VM runs nowhere)"
            if found != text:
                missing.append(f"{vm} slot {slot}: wrote {text!r}, found {found!r}")
        return missing


def vms_of(lab: Lab) -> dict[str, Any]:
    vms: dict[str, Any] = kiss_pillar(lab)["vms"]
    return vms


def settle(lab: Lab, vms: dict[str, Any], what: str) -> float:
    return wait_until(
        what, lambda: settled_clean(lab, vms), SETTLE_TIMEOUT, explain=lambda: describe(lab, vms)
    )


def begin(lab: Lab, scenario: str, before: str) -> tuple[dict[str, Any], Markers]:
    """A scenario's start: the VMs, the pair settled (`before` names that wait), and a marker
    written with fsync into each VM's disk on the node that runs it."""
    vms = vms_of(lab)
    settle(lab, vms, before)
    markers = Markers(lab, scenario)
    for vm in vms:
        markers.write(vm, BEFORE)
    return vms, markers


def check(sampler: Sampler, markers: Markers) -> None:
    both, brains, lost = sampler.both_ran(), markers.new_split_brains(), markers.lost()
    assert not both, both
    assert not brains, brains
    assert not lost, lost


def mark_survivor_runs(lab: Lab, vms: dict[str, Any], markers: Markers, stop: threading.Event):
    """While the fault lasts: a marker for each VM of node1's once node2 runs it."""
    while not stop.is_set():
        state = snapshot(lab.node2)
        for vm, record in vms.items():
            moved = record["primary_on"] == "node1" and vm_running(state, vm)
            if moved and (vm, DURING) not in markers.written:
                markers.write(vm, DURING, lab.node2)
        stop.wait(2)


def node1_vms_run_on_node2(lab: Lab, vms: dict[str, Any]) -> bool:
    state = snapshot(lab.node2)
    return all(vm_running(state, vm) for vm, r in vms.items() if r["primary_on"] == "node1")


@contextlib.contextmanager
def links_cut(machine: Machine, nics: tuple[str, ...], seconds: float) -> Iterator[None]:
    """`nics` of `machine` down for at least `seconds` (the body's time counts), and up again
    however the body ends."""
    for nic in nics:
        machine.set_link(nic, up=False)
    cut_at = time.monotonic()
    try:
        yield
        time.sleep(max(0.0, seconds - (time.monotonic() - cut_at)))
    finally:
        for nic in nics:
            machine.set_link(nic, up=True)


def protection_in_effect(lab: Lab, machine: Machine, witness: bool, power: bool) -> bool:
    shown = lab.ok(machine, "kissclusterd", "status", "--json") and json.loads(
        lab.sh(machine, "kissclusterd", "status", "--json")
    )
    return bool(shown) and (bool(shown["witness"]), shown["power_fencing"]) == (witness, power)


@contextlib.contextmanager
def protection(lab: Lab, *, witness: bool, power: bool) -> Iterator[None]:
    """kissclusterd on both nodes with the lab's witness and power fencing each kept or turned
    off (the lab pair has both, as `kiss-lab up` sets it up): the file kiss.node renders, those
    lines emptied, and the daemon reloaded. As it was again afterwards."""
    conf = paths.KISSCLUSTERD_CONF
    dropped = ({"witness_addr"} if not witness else set()) | (
        {"fence1", "fence2"} if not power else set()
    )
    originals = {machine.name: lab.sh(machine, "cat", conf) for machine in lab.nodes}

    def apply(texts: dict[str, str], witness: bool, power: bool) -> None:
        for machine in lab.nodes:
            machine.ssh(["install", "-m", "0644", "/dev/stdin", conf],
                        input_bytes=texts[machine.name].encode())  # fmt: skip
            lab.sh(machine, "systemctl", "reload", "kissclusterd.service")
        for machine in lab.nodes:
            what = f"{machine.name}'s kissclusterd with witness {witness}, power {power}"
            wait_until(what, lambda m=machine: protection_in_effect(lab, m, witness, power), 60)

    changed = {
        name: "".join(
            f"{line.split('=')[0].strip()} =\n"
            if line.split("=")[0].strip() in dropped
            else line + "\n"
            for line in text.splitlines()
        )
        for name, text in originals.items()
    }
    apply(changed, witness, power)
    try:
        yield
    finally:
        apply(originals, True, True)
