"""Boot-level facts of the lab that every end-to-end test builds on: real guests with a DRBD
module, LVM on their second disk, the storage and production links between them, and the switch
both reach. (That a node can lose the switch on its own is checked where a cut has its effect,
in test_3_failover: on a pair that `kiss-lab up` rolled out, a cut moves VMs.)"""

import json
import shlex
import time

import pytest
from labtest import Lab, wait_until

from kisscluster.lab.layout import SWITCH_ADDR, VOLUME_GROUP, production_addr, storage_addr
from kisscluster.lab.machine import Machine

pytestmark = pytest.mark.lab


def test_both_nodes_answer_with_their_own_name(lab: Lab) -> None:
    for node in lab.nodes:
        assert lab.sh(node, "hostname").strip() == node.name
        minion_id = lab.sh(node, "salt-call", "--local", "--out=json", "grains.get", "id")
        assert json.loads(minion_id) == {"local": node.name}


def test_drbd_84_module_loads(lab: Lab) -> None:
    for node in lab.nodes:
        lab.sh(node, "modprobe", "drbd")
        assert lab.sh(node, "cat", "/proc/drbd").startswith("version: 8.4")


def test_volume_group_on_the_second_disk(lab: Lab) -> None:
    for node in lab.nodes:
        pvs = lab.sh(node, "pvs", "--noheadings", "-o", "pv_name,vg_name").split()
        assert pvs == ["/dev/vdb", VOLUME_GROUP]


def test_storage_and_production_links_reach_the_peer(lab: Lab) -> None:
    for node, peer in (lab.nodes, lab.nodes[::-1]):
        for address in (storage_addr(peer.name), production_addr(peer.name)):
            assert lab.ok(node, "ping", "-c", "2", "-W", "3", address), (node.name, address)


def test_both_nodes_reach_the_switch(lab: Lab) -> None:
    for node in lab.nodes:
        assert lab.ok(node, "fping", "-q", "-r", "2", SWITCH_ADDR), node.name


def clock_offset(lab: Lab, node: Machine) -> float:
    """The node's clock minus the host's, from the quickest of five readings over ssh."""
    readings = []
    for _ in range(5):
        before = time.time()
        theirs = float(lab.sh(node, "date", "+%s.%N"))
        after = time.time()
        readings.append((after - before, theirs - (before + after) / 2))
    return min(readings)[1]


def test_a_clock_set_back_returns_to_the_hosts(lab: Lab) -> None:
    """kiss-lab-clock keeps each node's clock on the qemu RTC, which follows the host's, as NTP
    keeps a real node's: kissclusterd drops the heartbeats of a peer whose clock is more than
    the dead time away. The RTC ticks a fraction of a second behind the host's clock."""
    node = lab.nodes[1]
    restarts = lab.sh(node, "systemctl", "show", "-P", "NRestarts", "kissclusterd")
    before = clock_offset(lab, node)
    assert abs(before) < 1.5, before  # the RTC's lag, and the readings' error
    # Less than kissclusterd's interval (1 s), which it would take for a clock jump.
    set_back = "import time; time.clock_settime(time.CLOCK_REALTIME, time.time() - 0.8)"
    lab.sh(node, "python3", "-c", shlex.quote(set_back))
    wait_until(
        f"{node.name}'s clock back within 0.4 s of where it was ({before:+.2f} s)",
        lambda: abs(clock_offset(lab, node) - before) < 0.4, 30,
    )  # fmt: skip
    assert lab.sh(node, "systemctl", "show", "-P", "NRestarts", "kissclusterd") == restarts
