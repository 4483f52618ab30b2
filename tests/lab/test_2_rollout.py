"""The example site rolled out by the project's own commands (kiss.node, kiss-init,
kiss-configure on node1), then configured again unchanged, then with one more VM."""

import time

import pytest
from labtest import (
    DRBDADM,
    Lab,
    assert_changed_nothing,
    in_sync,
    kiss_pillar,
    settled,
    snapshot,
    vm_running,
    wait_until,
)

from kisscluster.lab import cluster
from kisscluster.lab.layout import VOLUME_GROUP

# CI runs the tests marked lab; the others are lab_extended (README, "Tests").

SYNC_TIMEOUT = 600
SETTLE_TIMEOUT = 300
NEW_VM = "extra"
NEW_VM_FILE = (
    f"name: {NEW_VM}\nprimary_on: node2\nnetwork_bridge: br0\nram_megs: 64\ncpus: 1\n"
    "root_disk_size: 16M\n"
)


def lv_names(lab: Lab, machine) -> set[str]:
    out = lab.sh(machine, "lvs", "--noheadings", "-o", "lv_name", VOLUME_GROUP)
    return set(out.split())


@pytest.mark.lab
def test_rollout_reports_success(rolled_out: Lab) -> None:
    assert (
        "kiss-configure: applied cleanly on every node"
        in rolled_out.outputs["kiss-configure on node1"]
    ), rolled_out.outputs["kiss-configure on node1"]


@pytest.mark.lab
def test_every_vm_has_its_lvs_and_a_synced_resource_on_both_nodes(rolled_out: Lab) -> None:
    lab = rolled_out
    vms = kiss_pillar(lab)["vms"]
    assert sorted(vms) == ["db", "mail", "web"]
    for machine in lab.nodes:
        assert {d["lv"] for vm in vms.values() for d in vm["disks"]} <= lv_names(lab, machine)
    took = wait_until(
        "every example resource Connected and UpToDate/UpToDate on both nodes",
        lambda: all(in_sync(snapshot(m), vm) for m in lab.nodes for vm in vms),
        SYNC_TIMEOUT,
    )
    lab.record("initial sync after kiss-configure", took)
    state = snapshot(lab.node1)
    for vm in vms.values():
        for disk in vm["disks"]:
            assert state["drbd"][f"{vm['name']}/{disk['volume']}"]["minor"] == disk["minor"]


@pytest.mark.lab
def test_units_enabled_and_each_vm_runs_on_its_primary_on_node_only(rolled_out: Lab) -> None:
    lab = rolled_out
    vms = kiss_pillar(lab)["vms"]
    for machine in lab.nodes:
        for vm in vms:
            assert lab.sh(machine, "systemctl", "is-enabled", f"vm@{vm}.service").strip() == (
                "enabled"
            )

    took = wait_until("primary-vms settled", lambda: settled(lab, vms), SETTLE_TIMEOUT)
    lab.record("rollout to settled primary-vms", took)
    for vm, record in vms.items():
        owner = lab.node1 if record["primary_on"] == "node1" else lab.node2
        processes = lab.sh(owner, "ps", "-eo", "args")
        assert f"/dev/drbd/by-res/{vm}/0" in processes, vm
        assert snapshot(owner)["drbd"][f"{vm}/0"]["role"] == "Primary"


@pytest.mark.lab
def test_second_kiss_configure_changes_nothing_on_either_node(rolled_out: Lab) -> None:
    lab = rolled_out
    began = time.monotonic()
    out = lab.sh(lab.node1, "kiss-configure", timeout=cluster.SALT_TIMEOUT)
    lab.record("kiss-configure unchanged", time.monotonic() - began)
    assert_changed_nothing(out)


@pytest.mark.lab_extended
def test_a_new_vm_gets_its_own_resource_and_existing_ones_stay_as_they_were(
    rolled_out: Lab,
) -> None:
    lab = rolled_out
    before = {m.name: snapshot(m)["drbd"] for m in lab.nodes}
    generations = {
        (m.name, volume): lab.sh(m, DRBDADM, "get-gi", volume)
        for m in lab.nodes
        for volume in before[m.name]
    }
    cluster.write_guest_file(
        lab.node1, f"{cluster.SITE_IN_GUEST}/vm-config/example/{NEW_VM}.yml", NEW_VM_FILE
    )
    lab.sh(lab.node1, "kiss-configure", timeout=cluster.SALT_TIMEOUT)
    vms = kiss_pillar(lab)["vms"]
    assert NEW_VM in vms
    wait_until(
        f"{NEW_VM} Connected and UpToDate/UpToDate on both nodes",
        lambda: all(in_sync(snapshot(m), NEW_VM) for m in lab.nodes),
        SYNC_TIMEOUT,
    )
    for machine in lab.nodes:
        after = snapshot(machine)["drbd"]
        assert {k: v["minor"] for k, v in after.items() if k in before[machine.name]} == {
            k: v["minor"] for k, v in before[machine.name].items()
        }
        assert after[f"{NEW_VM}/0"]["minor"] == vms[NEW_VM]["disks"][0]["minor"]
        assert after[f"{NEW_VM}/0"]["minor"] > max(
            v["minor"] for v in before[machine.name].values()
        )
    # No create-md and no new initial sync for the resources that were there: their DRBD
    # generation identifiers are what they were.
    for (name, volume), gi in generations.items():
        machine = lab.node1 if name == "node1" else lab.node2
        assert lab.sh(machine, DRBDADM, "get-gi", volume) == gi, (name, volume)
    # kiss.vms starts no VM: the new one waits, enabled, for its operator (or the next target
    # change) to start it on its primary_on node.
    assert not any(vm_running(snapshot(m), NEW_VM) for m in lab.nodes)
    lab.sh(lab.node2, "systemctl", "start", f"vm@{NEW_VM}.service", timeout=300)
    assert vm_running(snapshot(lab.node2), NEW_VM)
    assert f"/dev/drbd/by-res/{NEW_VM}/0" in lab.sh(lab.node2, "ps", "-eo", "args")
