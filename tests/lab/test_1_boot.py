"""Boot-level facts of the lab that every end-to-end test builds on: real guests with a DRBD
module, LVM on their second disk, the storage and production links between them, and a switch
address each node can lose on its own."""

import json

import pytest
from labtest import Lab

from kisscluster.lab.layout import SWITCH_ADDR, VOLUME_GROUP, production_addr, storage_addr
from kisscluster.lab.machine import SWITCH_NIC

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


def test_switch_answers_each_node_until_that_node_loses_its_uplink(lab: Lab) -> None:
    for node in lab.nodes:
        assert lab.ok(node, "fping", "-q", "-r", "2", SWITCH_ADDR), node.name
    lab.node1.set_link(SWITCH_NIC, up=False)
    try:
        assert not lab.ok(lab.node1, "fping", "-q", "-r", "1", "-t", "500", SWITCH_ADDR)
        assert lab.ok(lab.node2, "fping", "-q", "-r", "2", SWITCH_ADDR)
        # The peer is still there on both links: only the switch is gone.
        assert lab.ok(lab.node1, "ping", "-c", "1", "-W", "3", production_addr("node2"))
    finally:
        lab.node1.set_link(SWITCH_NIC, up=True)
    assert lab.ok(lab.node1, "fping", "-q", "-r", "3", SWITCH_ADDR)
