"""A node whose disks were replaced comes back into the pair (issue: never two writers; disks
over a node's life). node1 crashes and boots with an empty data disk; the operator recreates
the volume group and runs kiss-configure. Every VM keeps running on node2 until node1's copy of
it is UpToDate again, and the data flows from node2 to node1, never the other way: a marker
written on node2 before the rejoin is on both copies afterwards."""

import time
from collections.abc import Iterator

import pytest
from faults import (
    DURING,
    TAKEOVER_TIMEOUT,
    begin,
    check,
    node1_vms_run_on_node2,
    protection,
    read_marker,
    settle,
)
from labtest import Lab, Sampler, in_sync, vm_running, wait_until

from kisscluster.lab import cluster

pytestmark = pytest.mark.lab


@pytest.fixture(autouse=True, scope="module")
def no_fencing(rolled_out: Lab) -> Iterator[None]:
    """These scenarios run the documented default: no witness, no power fencing."""
    with protection(rolled_out, witness=False, power=False):
        yield


def stopped_early(sampler: Sampler, vm: str, since: float) -> list[str]:
    """Samples of node2 after `since` in which `vm` did not run there although node1's copy
    of it was not yet UpToDate (the failback must wait for that)."""
    node1 = sampler.samples["node1"]
    ready_at = min((b for b, _, s in node1 if s and in_sync(s, vm)), default=float("inf"))
    return [
        f"t={began:.0f}: {vm} stopped on node2 before node1's copy was UpToDate"
        for began, _, state in sampler.samples["node2"]
        if since < began < ready_at and not vm_running(state, vm)
    ]


def test_node1_back_with_an_empty_volume_group_resyncs_from_node2(rolled_out: Lab) -> None:
    lab = rolled_out
    vms, markers = begin(lab, "empty vg", "settled before node1 loses its disks")
    node1_vms = [vm for vm, record in vms.items() if record["primary_on"] == "node1"]
    with Sampler(lab) as sampler:
        lab.node1.kill()
        lab.node1.data_disk.unlink()  # the replaced disk: node1 boots with an empty one
        wait_until("node2 runs node1's VMs", lambda: node1_vms_run_on_node2(lab, vms),
                   TAKEOVER_TIMEOUT)  # fmt: skip
        taken = time.monotonic()
        for vm in vms:
            markers.write(vm, DURING, lab.node2)  # only node2 has these: they must reach node1
        began = time.monotonic()
        cluster.boot(lab.layout, lab.progress, ("node1",))
        cluster.ensure_volume_group(lab.node1)
        lab.sh(lab.node1, "kiss-configure", timeout=cluster.SALT_TIMEOUT)
        configured = time.monotonic() - began
        took = settle(lab, vms, "settled after node1's rebuild")
    lab.record("empty vg: boot + vgcreate + kiss-configure on node1", configured)
    lab.record("empty vg: node1 boot -> settled", time.monotonic() - began)
    lab.record("empty vg: kiss-configure -> settled", took)
    check(sampler, markers)
    early = [line for vm in node1_vms for line in stopped_early(sampler, vm, taken)]
    assert not early, early
    for vm in vms:  # both copies hold what node2 wrote before the rejoin
        for machine in lab.nodes:
            on_disk = read_marker(lab, machine, vm, DURING, backing=True)
            assert markers.written[(vm, DURING)] in on_disk, (machine.name, vm, on_disk)
