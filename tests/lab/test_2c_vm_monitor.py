"""kiss-vm-monitor and kiss-console on either node reach a VM where it runs: web runs on node1,
and node2 forwards the commands to it through the cluster's remote command."""

import json

import pytest
from labtest import Lab, snapshot, vm_running

pytestmark = pytest.mark.lab_extended


def test_either_node_reaches_the_vm_where_it_runs(rolled_out: Lab) -> None:
    lab = rolled_out
    assert vm_running(snapshot(lab.node1), "web")
    for machine in lab.nodes:
        shown = lab.sh(machine, "kiss-vm-monitor", "web", "info")
        assert json.loads(shown.removeprefix("web: "))["status"] == "running", shown
        console = lab.sh(machine, "kiss-console", "web")
        assert "web runs on node1: its screen is VNC 127.0.0.1:5908 there" in console, console
    lab.sh(lab.node2, "kiss-vm-monitor", "web", "pause")
    assert '"status": "paused"' in lab.sh(lab.node1, "kiss-vm-monitor", "web", "info")
    lab.sh(lab.node2, "kiss-vm-monitor", "web", "resume")
    assert '"status": "running"' in lab.sh(lab.node1, "kiss-vm-monitor", "web", "info")
    failed = lab.node1.ssh(["kiss-vm-monitor", "nosuch", "info"], check=False)
    assert failed.returncode != 0
