"""Faults that break a pair without fencing: a hung node, a cut storage link, a crash while the
peer's copy is stale. DRBD fencing (`fencing resource-and-stonith` and kissclusterd's fence-peer
handler) must keep every one of them from producing two writers or losing a written block.

Every scenario samples both nodes throughout (labtest.Sampler), ends with the pair settled and
every volume Connected UpToDate/UpToDate, and checks the data: a marker written with fsync to
each VM's disk, on the node running it, before the fault (and on the survivor during it) must
be on the disk of whichever node runs the VM afterwards.
"""

import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from faults import (
    DURING,
    SETTLE_TIMEOUT,
    TAKEOVER_TIMEOUT,
    Markers,
    begin,
    check,
    links_cut,
    mark_survivor_runs,
    node1_vms_run_on_node2,
    protection,
    settle,
    vms_of,
)
from labtest import Lab, Sampler, snapshot, vm_running, wait_until

from kisscluster.lab import cluster
from kisscluster.lab.machine import PRODUCTION_NIC, STORAGE_NIC, SWITCH_NIC

# CI runs the scenarios marked lab; the others are lab_extended (README, "Tests").
EXTENDED = pytest.mark.lab_extended


@pytest.fixture(autouse=True, scope="module")
def no_fencing(rolled_out: Lab) -> Iterator[None]:
    """These scenarios run the documented default: no witness, no power fencing."""
    with protection(rolled_out, witness=False, power=False):
        yield


@pytest.mark.parametrize(
    "seconds",
    [
        pytest.param(5, marks=EXTENDED),
        pytest.param(20, marks=EXTENDED),
        pytest.param(60, marks=pytest.mark.lab),  # the one that moves VMs: CI runs it
    ],
)
def test_a_hung_node_never_makes_two_writers(rolled_out: Lab, seconds: int) -> None:
    """node1 stopped for `seconds` (SIGSTOP to its qemu), then resumed. A short hang moves
    nothing; a long one lets node2 take node1's VMs, and node1, resumed with its I/O frozen,
    stands down: it kills its copies of the VMs and resyncs from node2 before failback."""
    lab = rolled_out
    vms, markers = begin(lab, f"hang {seconds}s", "settled before the hang")
    stop = threading.Event()
    watcher = threading.Thread(target=mark_survivor_runs, args=(lab, vms, markers, stop))
    with Sampler(lab) as sampler:
        watcher.start()
        try:
            with sampler.held(lab.node1):
                lab.node1.hang(seconds)
        finally:
            stop.set()
            watcher.join()
        took = settle(lab, vms, f"settled after a {seconds} s hang of node1")
    lab.record(f"hang {seconds}s: resumed -> settled", took)
    lab.record(f"hang {seconds}s: VMs that ran on node2", len([k for k in markers.written
                                                               if k[1] == DURING]))  # fmt: skip
    check(sampler, markers)


@EXTENDED
def test_a_cut_storage_link_outdates_the_peer_and_moves_nothing(rolled_out: Lab) -> None:
    lab = rolled_out
    vms, markers = begin(lab, "storage cut", "settled before the cut")
    with Sampler(lab) as sampler:
        with links_cut(lab.node1, (STORAGE_NIC,), 30):
            wait_until(
                "each side's copy of the other's VMs Outdated",
                lambda: stale_copies_outdated(lab, vms), 120,
            )  # fmt: skip
            for vm in vms:
                markers.write(vm, DURING)  # written while the peer's copy is stale
        took = settle(lab, vms, "settled after the storage link is back")
    lab.record("storage cut 30s: healed -> settled", took)
    check(sampler, markers)


def stale_copies_outdated(lab: Lab, vms: dict[str, Any]) -> bool:
    """On each node, the copies of the VMs the other node runs are Outdated."""
    for machine in lab.nodes:
        volumes = snapshot(machine).get("drbd", {})
        for name, volume in volumes.items():
            home = vms[name.split("/")[0]]["primary_on"]
            if home != machine.name and volume.get("disk") != "Outdated":
                return False
    return True


@pytest.mark.lab
def test_a_crash_while_the_peer_is_stale_never_starts_the_stale_copy(rolled_out: Lab) -> None:
    """Storage link cut, then node1 crashes: node2's copies of web and mail are Outdated, so
    node2 keeps running db and refuses to start web and mail on stale data (reported in its
    journal and by `kissclusterd status`); they run again when node1 is back."""
    lab = rolled_out
    vms = vms_of(lab)
    settle(lab, vms, "settled before the cut")
    markers = Markers(lab, "cut then crash")
    node1_vms = [vm for vm, record in vms.items() if record["primary_on"] == "node1"]
    with Sampler(lab) as sampler:
        lab.node1.set_link(STORAGE_NIC, up=False)
        wait_until("node2's copies of node1's VMs Outdated",
                   lambda: stale_copies_outdated(lab, vms), 120)  # fmt: skip
        for vm in vms:
            markers.write(vm, DURING)  # node2 never gets these: they must survive on node1
        lab.node1.kill()  # its links come back up with its next boot
        wait_until(
            "node2 on all-vms",
            lambda: snapshot(lab.node2).get("targets", {}).get("all-vms.target") == "active",
            TAKEOVER_TIMEOUT,
        )
        time.sleep(60)  # node2 must hold out on stale copies, not start them after a while
        state = snapshot(lab.node2)
        assert not any(vm_running(state, vm) for vm in node1_vms), state["units"]
        journal = lab.sh(lab.node2, "journalctl", "-u", "drbd-resource@web", "--no-pager")
        assert "refusing to run on this copy" in journal
        began = time.monotonic()
        cluster.boot(lab.layout, lab.progress, ("node1",))
        took = settle(lab, vms, "settled after node1 is back")
    lab.record("cut then crash: node1 boot -> settled", time.monotonic() - began)
    lab.record("cut then crash: settled after boot", took)
    check(sampler, markers)


@EXTENDED
def test_a_node_cut_off_from_everything_stands_down_and_its_peer_takes_over(
    rolled_out: Lab,
) -> None:
    """node1 loses its storage link, its production link and the switch for 30 s (its cables
    are out). node2 still has the switch: it takes web and mail. node1 has neither peer nor
    switch: it knows it is the one cut off, keeps its DRBD I/O frozen and stands down, so that
    nothing it writes after the cut is acknowledged; back on the network its copies resync in
    full from node2 before failback."""
    lab = rolled_out
    vms, markers = begin(lab, "node1 cut off", "settled before the cut")
    nics = (STORAGE_NIC, PRODUCTION_NIC, SWITCH_NIC)
    stop = threading.Event()
    watcher = threading.Thread(target=mark_survivor_runs, args=(lab, vms, markers, stop))
    with Sampler(lab) as sampler:
        watcher.start()
        try:
            with links_cut(lab.node1, nics, 30):
                took_over = wait_until(
                    "node2 runs node1's VMs",
                    lambda: node1_vms_run_on_node2(lab, vms),
                    TAKEOVER_TIMEOUT,
                )
        finally:
            stop.set()
            watcher.join()
        took = settle(lab, vms, "settled after node1 is back on the network")
    lab.record("node1 cut off 30s: cut -> node2 runs its VMs", took_over)
    lab.record("node1 cut off 30s: healed -> settled", took)
    check(sampler, markers)


def every_vm_on_both(lab: Lab, vms: dict[str, Any]) -> bool:
    states = [snapshot(machine) for machine in lab.nodes]
    return all(vm_running(state, vm) for state in states for vm in vms)


def apart_at_home(lab: Lab, vms: dict[str, Any]) -> bool:
    """Each VM runs on its primary_on node alone, and DRBD left every resource StandAlone."""
    states = {machine.name: snapshot(machine) for machine in lab.nodes}
    homes = all(
        vm_running(state, vm) == (record["primary_on"] == name)
        for vm, record in vms.items()
        for name, state in states.items()
    )
    volumes = [v for state in states.values() for v in state.get("drbd", {}).values()]
    return homes and all(volume.get("cs") == "StandAlone" for volume in volumes)


@EXTENDED
def test_both_links_cut_while_both_reach_the_switch_is_the_documented_double_fault(
    rolled_out: Lab,
) -> None:
    """No witness, no power fencing, peer_silent = takeover (the default): node1 loses its
    storage and production links for 30 s while both nodes still reach the switch. Neither can
    tell that from a dead peer, so each takes the other's VMs: two writers, the cost the README
    states. When the links return, DRBD finds the split brain and disconnects, each VM goes back
    to its home node, and `kiss-split-brain` shows both sides and, on the operator's word,
    discards the other node's changes: what each VM wrote at home survives."""
    lab = rolled_out
    vms, markers = begin(lab, "both links cut", "settled before the cut")
    home = {vm: lab.node1 if r["primary_on"] == "node1" else lab.node2 for vm, r in vms.items()}
    with Sampler(lab) as sampler:
        with links_cut(lab.node1, (STORAGE_NIC, PRODUCTION_NIC), 30):
            both = wait_until(
                "both nodes run every VM", lambda: every_vm_on_both(lab, vms), TAKEOVER_TIMEOUT
            )
            for vm in vms:
                markers.write(vm, DURING, home[vm])  # the side the operator keeps below
        healed = time.monotonic()
        wait_until("each VM at home, its resource StandAlone (split brain)",
                   lambda: apart_at_home(lab, vms), SETTLE_TIMEOUT)  # fmt: skip
        for vm in vms:
            shown = lab.node1.ssh(["kiss-split-brain", vm], check=False)
            assert shown.returncode == 1 and "SPLIT BRAIN" in shown.stdout, shown.stdout
            other = lab.node2 if home[vm] is lab.node1 else lab.node1
            lab.sh(lab.node1, "kiss-split-brain", vm, "--discard", other.name)
        took = settle(lab, vms, "settled after kiss-split-brain")
    lab.record("both links cut 30s: cut -> every VM on both nodes", both)
    lab.record("both links cut 30s: samples with two writers", len(sampler.both_ran()))
    lab.record("both links cut 30s: kiss-split-brain -> settled", took)
    lab.record("both links cut 30s: healed -> settled", time.monotonic() - healed)
    assert sampler.both_ran(), "the documented double fault did not make two writers"
    assert markers.new_split_brains()
    assert not markers.lost(), markers.lost()


@EXTENDED
def test_both_nodes_powered_off_and_on_together(rolled_out: Lab) -> None:
    """A power cut of the rack: neither node may start the other's VMs while both boot, and
    the pair settles with every VM on its primary_on node and its data intact."""
    lab = rolled_out
    vms, markers = begin(lab, "power cut", "settled before the power cut")
    with Sampler(lab) as sampler:
        for machine in lab.nodes:
            machine.kill()
        began = time.monotonic()
        cluster.boot(lab.layout, lab.progress)
        took = settle(lab, vms, "settled after both nodes booted")
    lab.record("power cut: boot of both -> settled", took)
    lab.record("power cut: power on -> settled", time.monotonic() - began)
    check(sampler, markers)
