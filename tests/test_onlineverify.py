"""DRBD online verify on a schedule (kisscluster.onlineverify): the schedule check with the real
`systemd-analyze calendar`, the units' text, and the service's run against a stand-in drbdadm."""

import json
import sys
from pathlib import Path

import pytest
import yaml

from kisscluster import inventory, onlineverify, pillar

pytestmark = pytest.mark.fast

VMS = {
    "web": {"drbd_resource": "web", "primary_on": "node1"},
    "mail": {"drbd_resource": "mail", "primary_on": "node1"},
    "db": {"drbd_resource": "db", "primary_on": "node2"},
}

FAKE_DRBDADM = """#!{python}
import json, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
command, resource = sys.argv[1], sys.argv[2]
if command == "cstate":
    print({states!r}[resource])
elif resource == "broken":
    sys.exit(print("drbdadm-84 8.4\\nbroken: State change failed: (-15) Need a verify algorithm",
                   file=sys.stderr) or 10)
"""


@pytest.mark.parametrize("schedule", ["weekly", "Sun *-*-* 03:00:00", "Mon..Fri 02:30"])
def test_systemd_takes_these_schedules(schedule):
    assert onlineverify.check_schedule(schedule) == schedule


@pytest.mark.parametrize("schedule", ["every tuesday", "25:00", "", "weekly\nmonthly"])
def test_systemd_refuses_these_schedules_and_says_why(schedule):
    with pytest.raises(ValueError, match="verify_schedule"):
        onlineverify.check_schedule(schedule)


def test_each_node_verifies_the_resources_of_its_own_vms():
    assert onlineverify.home_resources(VMS, "node1") == ["mail", "web"]
    service = onlineverify.service_unit(
        VMS, "node2", "/opt/k/bin/python3", "/usr/lib/drbd/drbdadm-84"
    )
    assert "ExecStart=/opt/k/bin/python3 -m kisscluster.onlineverify --drbdadm " \
        "/usr/lib/drbd/drbdadm-84 db\n" in service  # fmt: skip
    timer = onlineverify.timer_unit("Sun *-*-* 03:00:00")
    assert "OnCalendar=Sun *-*-* 03:00:00\n" in timer and "WantedBy=timers.target" in timer


def test_the_cluster_file_takes_a_schedule_and_defaults_to_weekly(example_site: Path):
    inventory.run(example_site)
    assert pillar.build(example_site)["cluster"]["verify_schedule"] == "weekly"
    path = example_site / "pillar" / "cluster.yml"
    data = yaml.safe_load(path.read_text())
    data["cluster"]["verify_schedule"] = 'Sun "03:00"'
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(inventory.InventoryError, match=r"cluster\.verify_schedule"):
        pillar.build(example_site)


def test_verify_starts_on_connected_resources_and_skips_the_others(tmp_path, capsys):
    log = tmp_path / "drbdadm.log"
    states = {"web": "Connected", "db": "Connected\nWFConnection", "broken": "Connected"}
    drbdadm = tmp_path / "drbdadm"
    drbdadm.write_text(FAKE_DRBDADM.format(python=sys.executable, log=str(log), states=states))
    drbdadm.chmod(0o755)
    assert onlineverify.main(["--drbdadm", str(drbdadm), "web", "db", "broken"]) == 1
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    assert calls == [
        ["cstate", "web"], ["verify", "web"], ["cstate", "db"], ["cstate", "broken"],
        ["verify", "broken"],
    ]  # fmt: skip
    out = capsys.readouterr().out
    assert "web: online verify started" in out
    assert "db: not verified, not Connected (Connected WFConnection)" in out
    assert "broken: verify failed: broken: State change failed" in out


def test_a_name_that_is_no_vm_name_is_refused_before_drbdadm_runs(tmp_path):
    assert onlineverify.main(["--drbdadm", str(tmp_path / "none"), "web;reboot"]) == 1
