"""Retiring a VM: disabling keeps it running but out of the cluster's hands; kiss-nuke-vm then
removes it from both nodes."""

import pytest
from labtest import Lab, in_sync, kiss_pillar, snapshot, vm_running, wait_until

from kisscluster.lab import cluster
from kisscluster.lab.layout import VOLUME_GROUP

pytestmark = pytest.mark.lab

VM = "mail"


def test_disabled_vm_is_disabled_on_both_nodes_but_not_stopped(rolled_out: Lab) -> None:
    lab = rolled_out
    owner = lab.node1 if kiss_pillar(lab)["vms"][VM]["primary_on"] == "node1" else lab.node2
    wait_until(f"{VM} running on {owner.name}", lambda: vm_running(snapshot(owner), VM), 300)
    site = cluster.SITE_IN_GUEST
    lab.sh(lab.node1, "git", "-C", site, "mv", f"vm-config/example/{VM}.yml",
           f"vm-config/example/{VM}.yml.disabled")  # fmt: skip
    lab.sh(lab.node1, "kiss-configure", timeout=cluster.SALT_TIMEOUT)
    pillar = kiss_pillar(lab)
    assert VM not in pillar["vms"] and VM in pillar["disabled_vms"]
    for machine in lab.nodes:
        enabled = machine.ssh(["systemctl", "is-enabled", f"vm@{VM}.service"], check=False)
        assert enabled.stdout.strip() == "disabled", machine.name
    assert vm_running(snapshot(owner), VM)


def test_nuke_removes_the_vm_from_both_nodes(rolled_out: Lab) -> None:
    lab = rolled_out
    wait_until(f"{VM} in sync", lambda: all(in_sync(snapshot(m), VM) for m in lab.nodes), 300)
    lab.sh(lab.node1, "kiss-nuke-vm", "--force", VM, timeout=cluster.SALT_TIMEOUT)
    for machine in lab.nodes:
        state = snapshot(machine)
        assert not vm_running(state, VM), machine.name
        assert not [v for v in state["drbd"] if v.startswith(f"{VM}/")], machine.name
        lvs = lab.sh(machine, "lvs", "--noheadings", "-o", "lv_name", VOLUME_GROUP).split()
        assert not [lv for lv in lvs if lv.startswith(f"{VM}_")], (machine.name, lvs)
        for path in (f"/etc/drbd.d/{VM}.res", f"/etc/vm/{VM}.conf"):
            assert not lab.ok(machine, "test", "-e", path), (machine.name, path)
    assert VM not in kiss_pillar(lab)["disabled_vms"]
