"""The decision kiss.vms makes per VM and node: new LV -> create-md -> adjust -> initial sync on
primary_on only; a VM whose root LV exists is kisscluster.disks's (tests/test_disks.py). Pure
logic on the real pillar of the example site; the commands it yields are run against real
drbdadm in test_drbd.py and through Salt in test_kiss_vms.py."""

import sys

import pytest

from kisscluster import disks, pillar, skeleton

pytestmark = pytest.mark.fast

PROGRAMS = skeleton.Programs(lvcreate="lvcreate", lvextend="lvextend", drbdadm="drbdadm")


@pytest.fixture
def vms(site):
    return pillar.build(site)["vms"]


def whats(plan: skeleton.Plan) -> list[str]:
    return [step.what for step in plan.steps]


def test_fresh_primary_node_creates_lvs_metadata_and_starts_the_sync(vms):
    plan = skeleton.plan(vms["db"], "node2", "vg0", {}, PROGRAMS, None)
    assert plan.new_vm
    assert whats(plan) == [
        "create LV vg0/db_root (64M)",
        "create LV vg0/db_data (32M)",
        "create LV vg0/db_logs (16M)",
        "create DRBD metadata db/0",
        "create DRBD metadata db/1",
        "create DRBD metadata db/2",
        "bring up DRBD resource db",
        "start the initial sync of db from node2 unless the peer holds its data",
    ]
    assert [list(step.argv) for step in plan.steps][-3:] == [
        ["drbdadm", "--force", "create-md", "db/2"],
        ["drbdadm", "adjust", "db"],
        [sys.executable, "-m", "kisscluster.unitctl", "initial-sync", "--drbdadm", "drbdadm", "db"],
    ]
    assert plan.steps[0].argv == (
        "lvcreate", "--yes", "--name", "db_root", "--size", "67108864b", "vg0",
    )  # fmt: skip


def test_fresh_peer_node_never_starts_the_initial_sync(vms):
    plan = skeleton.plan(vms["db"], "node1", "vg0", {}, PROGRAMS, None)
    assert whats(plan)[-1] == "bring up DRBD resource db"
    assert not any(step.function == "kiss.drbd_initial_sync" for step in plan.steps)


def test_an_existing_vm_is_planned_from_what_drbd_says_and_needs_it(vms):
    existing = {"db_root": 64 << 20, "db_data": 32 << 20, "db_logs": 16 << 20}
    with pytest.raises(ValueError, match="needs DRBD's and qemu's view"):
        skeleton.plan(vms["db"], "node2", "vg0", existing, PROGRAMS, None)
    plan = skeleton.plan(
        vms["db"], "node2", "vg0", existing, PROGRAMS, disks.Observed(4 << 20, {}, None, "/run")
    )
    assert not plan.new_vm and plan.steps == () and plan.notes == ()


def test_new_root_beside_a_leftover_data_lv_keeps_its_metadata(vms):
    """create-md only ever touches an LV this run created."""
    plan = skeleton.plan(vms["db"], "node2", "vg0", {"db_data": 32 << 20}, PROGRAMS, None)
    assert "create DRBD metadata db/1" not in whats(plan)
    assert {"create DRBD metadata db/0", "create DRBD metadata db/2"} <= set(whats(plan))
    assert any("db_data already existed" in note for note in plan.notes)


def test_names_are_validated_before_they_reach_a_command(vms):
    bad = dict(vms["web"], name="web;reboot")
    with pytest.raises(ValueError, match="safe identifier"):
        skeleton.plan(bad, "node1", "vg0", {}, PROGRAMS, None)
