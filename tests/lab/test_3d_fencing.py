"""The recommended pair: power fencing through the lab's stand-in BMC and a witness on the
host (kiss-lab up sets up both; `faults.protection` turns either off for one scenario).

A hung node is powered off before its VMs move; both links cut between two live nodes costs no
split brain, with a witness (only its lease holder runs VMs) or with power fencing (member 1
switches member 2 off). Every scenario samples both nodes throughout, ends settled with every
volume Connected UpToDate/UpToDate, and checks that each marker written with fsync is on the
disk of the node that runs its VM.
"""

import os
import signal
import threading
import time
from typing import Any

import pytest
from faults import (
    DURING,
    TAKEOVER_TIMEOUT,
    begin,
    check,
    links_cut,
    mark_survivor_runs,
    node1_vms_run_on_node2,
    protection,
    settle,
)
from labtest import Lab, Sampler, snapshot, vm_running, wait_until

from kisscluster.lab import cluster
from kisscluster.lab.machine import PRODUCTION_NIC, STORAGE_NIC

# CI runs the tests marked lab; the others are lab_extended (README, "Tests").

LINKS = (STORAGE_NIC, PRODUCTION_NIC)


@pytest.mark.lab
def test_a_hung_node_is_powered_off_before_its_vms_move(rolled_out: Lab) -> None:
    """node1 stops (SIGSTOP to its qemu) and stays stopped: node2 switches it off through the
    BMC, then starts its VMs; node1, powered on again, rejoins and takes its VMs back."""
    lab = rolled_out
    vms, markers = begin(lab, "hang, power fencing", "settled before the hang")
    stop = threading.Event()
    watcher = threading.Thread(target=mark_survivor_runs, args=(lab, vms, markers, stop))
    with Sampler(lab) as sampler:
        watcher.start()
        try:
            with sampler.held(lab.node1):
                pid = lab.node1.pid()
                assert pid is not None
                os.kill(pid, signal.SIGSTOP)
                hung_at = time.monotonic()
                off = wait_until("node2 powers node1 off", lambda: lab.node1.pid() is None, 120)
            took_over = wait_until(
                "node2 runs node1's VMs", lambda: node1_vms_run_on_node2(lab, vms), TAKEOVER_TIMEOUT
            )
            took_over = time.monotonic() - hung_at
        finally:
            stop.set()
            watcher.join()
        fenced = lab.sh(lab.node2, "journalctl", "-t", "kissclusterd", "--no-pager", "-q")
        assert "power fencing: the peer is off" in fenced
        cluster.boot(lab.layout, lab.progress, ("node1",))
        took = settle(lab, vms, "settled after node1 is powered on again")
    lab.record("hang, power fencing: hang -> node1 off", off)
    lab.record("hang, power fencing: hang -> node2 runs its VMs", took_over)
    lab.record("hang, power fencing: node1 boot -> settled", took)
    check(sampler, markers)
    assert any(slot == DURING for _, slot in markers.written)


def one_node_runs_everything(lab: Lab, vms: dict[str, Any]) -> bool:
    states = [snapshot(machine) for machine in lab.nodes]
    running = [sum(vm_running(state, vm) for vm in vms) for state in states]
    return sorted(running) == [0, len(vms)]


@pytest.mark.lab_extended
def test_both_links_cut_with_a_witness_leaves_the_vms_with_the_lease_holder(
    rolled_out: Lab,
) -> None:
    """Witness, no power fencing: node1 loses its storage and production links for 30 s while
    both nodes reach the switch and the witness. The node holding the witness's lease runs
    every VM, the other gives its VMs up (its copies stand down and resync afterwards)."""
    lab = rolled_out
    with protection(lab, witness=True, power=False):
        vms, markers = begin(lab, "both links cut, witness", "settled before the cut")
        with Sampler(lab) as sampler:
            with links_cut(lab.node1, LINKS, 30):
                apart = wait_until(
                    "one node runs every VM, the other none",
                    lambda: one_node_runs_everything(lab, vms),
                    TAKEOVER_TIMEOUT,
                )
                for vm in vms:
                    markers.write(vm, DURING)
            took = settle(lab, vms, "settled after the links are back")
    lab.record("both links cut 30s, witness: cut -> one node runs every VM", apart)
    lab.record("both links cut 30s, witness: healed -> settled", took)
    check(sampler, markers)


@pytest.mark.lab_extended
def test_both_links_cut_with_power_fencing_leaves_the_vms_with_member_1(rolled_out: Lab) -> None:
    """Power fencing, no witness: node1 loses its storage and production links. Both nodes see
    a silent peer; member 2 waits before it fences, so node1 switches node2 off first and runs
    every VM. node2, powered on after the links are back, resyncs and takes its VMs back."""
    lab = rolled_out
    with protection(lab, witness=False, power=True):
        vms, markers = begin(lab, "both links cut, power", "settled before the cut")
        with Sampler(lab) as sampler:
            with links_cut(lab.node1, LINKS, 30):
                off = wait_until("node1 powers node2 off", lambda: lab.node2.pid() is None, 120)
                alone = wait_until(
                    "node1 runs every VM",
                    lambda: all(vm_running(snapshot(lab.node1), vm) for vm in vms),
                    TAKEOVER_TIMEOUT,
                )
                for vm in vms:
                    markers.write(vm, DURING)
            assert lab.node1.pid() is not None, "node2 switched node1 off too"
            cluster.boot(lab.layout, lab.progress, ("node2",))
            took = settle(lab, vms, "settled after node2 is powered on again")
    lab.record("both links cut 30s, power: cut -> node2 off", off)
    lab.record("both links cut 30s, power: cut -> node1 runs every VM", off + alone)
    lab.record("both links cut 30s, power: node2 boot -> settled", took)
    check(sampler, markers)
