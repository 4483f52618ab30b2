"""kiss.nuke on one node: the step plan, the refusals, execution order and resumption.

This host has no DRBD kernel module, no device-mapper and no systemd as PID 1, so systemctl,
lvs, lvremove and drbdadm cannot run here: `RecordingSystem` stands in for the one
command seam of kisscluster.nuke (`System.run`). The DRBD commands of the plan are still checked
against real `drbdadm -d` (dry run) with the resource file kiss.vms renders. Files are removed
for real under a temporary root."""

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml

from kisscluster import drbd, inventory, nuke, pillar

pytestmark = pytest.mark.fast


class RecordingSystem:
    """Answers the probes like a node where the VM is stopped and its LVs and DRBD are up."""

    def __init__(self, lvs: set[str], active: str = "inactive", fail: str | None = None):
        self.lvs = set(lvs)
        self.active = active
        self.resource_up = True
        self.fail = fail
        self.calls: list[list[str]] = []

    def run(self, argv):
        argv = list(argv)
        self.calls.append(argv)
        program = Path(argv[0]).name

        def answer(returncode=0, stdout="", stderr=""):
            return subprocess.CompletedProcess(argv, returncode, stdout, stderr)

        if self.fail and self.fail in argv:
            return answer(1, stderr=f"{self.fail}: simulated failure")
        if "is-active" in argv:
            return answer(0 if self.active == "active" else 3, stdout=self.active + "\n")
        if "stop" in argv:
            self.active = "inactive"
        if program == "lvs":
            rows = [{"lv_name": lv, "lv_size": "33554432"} for lv in sorted(self.lvs)]
            return answer(stdout=json.dumps({"report": [{"lv": rows}]}))
        if "role" in argv:
            return answer(0 if self.resource_up else 10)
        if "down" in argv:
            self.resource_up = False
        if program == "lvremove":
            self.lvs.discard(argv[-1].split("/")[1])
        return answer()

    def commands(self) -> list[list[str]]:
        """The calls that change something (not the probes is-active, lvs, role)."""
        probes = ("is-active", "role")
        return [c for c in self.calls if Path(c[0]).name != "lvs" and not set(probes) & set(c)]


DB_LVS = {"db_root", "db_data", "db_logs"}
DRBDADM = "/usr/lib/drbd/drbdadm-84"  # salt/states/kiss/defaults.yaml


@pytest.fixture
def node(example_site: Path, tmp_path: Path):
    """The example site with `db` disabled, and db's files under a temporary root."""
    inventory.run(example_site)
    vm_file = example_site / "vm-config" / "example" / "db.yml"
    vm_file.rename(vm_file.with_suffix(".yml.off"))
    inventory.run(example_site)
    kiss = pillar.build(example_site)
    assert "db" in kiss["disabled_vms"]
    root = tmp_path / "root"
    resource = root / "etc" / "drbd.d" / "db.res"
    config = root / "etc" / "vm" / "db.conf"
    for path in (resource, config):
        path.parent.mkdir(parents=True)
    members = [dict(m) for m in kiss["cluster"]["members"]]
    members[0]["name"] = os.uname().nodename
    resource.write_text(drbd.render_resource(kiss["disabled_vms"]["db"], members, "vg0"))
    config.write_text("# qemu parameters\n")
    return example_site, kiss, root, resource, config


def run_nuke(node, system, **kwargs):
    site, kiss, root, _, _ = node
    return nuke.nuke(
        site, kiss, "db", lookup_overrides={"root": str(root)}, system=system, **kwargs
    )


def test_test_mode_lists_every_step_and_removes_nothing(node):
    _, _, _, resource, config = node
    system = RecordingSystem(DB_LVS)

    lines = run_nuke(node, system, test=True)

    drbdadm = f"{DRBDADM} -c {resource}"
    assert lines == [
        "already done, skip stop the VM: /bin/systemctl stop vm@db.service",
        f"would DRBD disconnect: {drbdadm} disconnect db",
        f"would DRBD down: {drbdadm} down db",
        f"would DRBD wipe-md: {drbdadm} -- --force wipe-md db",
        f"would remove the DRBD resource file: remove {resource}",
        "would disable the unit: /bin/systemctl disable vm@db.service",
        f"would remove the VM config: remove {config}",
        "would remove LV db_root: /sbin/lvremove --yes vg0/db_root",
        "would remove LV db_data: /sbin/lvremove --yes vg0/db_data",
        "would remove LV db_logs: /sbin/lvremove --yes vg0/db_logs",
    ]
    assert system.commands() == []
    assert resource.exists() and config.exists()


def test_drbd_steps_are_commands_drbdadm_accepts(node):
    """The real drbdadm (the states' default, drbdadm-84, and drbd-utils 9's drbdadm) parses each
    DRBD step against the resource file kiss.vms renders; -d prints what it would do instead of
    doing it."""
    steps = nuke.plan(
        "db", node[1]["disabled_vms"]["db"], "vg0", {"root": str(node[2])}, RecordingSystem(DB_LVS)
    )
    drbd_steps = [step for step in steps if step.argv[:1] == (DRBDADM,)]
    assert [step.what for step in drbd_steps] == ["DRBD disconnect", "DRBD down", "DRBD wipe-md"]
    for drbdadm in (DRBDADM, "drbdadm"):
        for step in drbd_steps:
            dry = subprocess.run(
                [drbdadm, "-d", *step.argv[1:]], capture_output=True, text=True, timeout=30
            )
            assert dry.returncode == 0, (drbdadm, step.argv, dry.stderr)
        assert "/dev/vg0/db_root internal wipe-md --force" in dry.stdout
        assert "/dev/vg0/db_logs internal wipe-md --force" in dry.stdout


def test_active_vm_is_refused_unless_forced(node):
    system = RecordingSystem(DB_LVS, active="active")

    with pytest.raises(nuke.NukeError, match=r"vm@db.service is active.*force=True"):
        run_nuke(node, system)
    assert system.commands() == []

    done = run_nuke(node, system, force=True)

    assert system.commands()[0] == ["/bin/systemctl", "stop", "vm@db.service"]
    assert done[0] == "stop the VM: /bin/systemctl stop vm@db.service"


def test_vm_that_still_has_a_file_is_refused(node):
    site, kiss, root, _, _ = node
    system = RecordingSystem({"web_root"})

    with pytest.raises(nuke.NukeError, match=r"vm-config/example/web.yml still exists"):
        nuke.nuke(site, kiss, "web", lookup_overrides={"root": str(root)}, system=system, test=True)
    assert system.calls == []


def test_nuke_runs_the_steps_in_order_and_a_second_run_has_nothing_left(node):
    _, _, _, resource, config = node
    system = RecordingSystem(DB_LVS)

    run_nuke(node, system)

    drbdadm = [DRBDADM, "-c", str(resource)]
    assert system.commands() == [
        [*drbdadm, "disconnect", "db"],
        [*drbdadm, "down", "db"],
        [*drbdadm, "--", "--force", "wipe-md", "db"],
        ["/bin/systemctl", "disable", "vm@db.service"],
        ["/sbin/lvremove", "--yes", "vg0/db_root"],
        ["/sbin/lvremove", "--yes", "vg0/db_data"],
        ["/sbin/lvremove", "--yes", "vg0/db_logs"],
    ]
    assert not resource.exists() and not config.exists()
    assert system.lvs == set()

    again = run_nuke(node, system, test=True)
    assert [line for line in again if line.startswith("would ")] == [
        "would disable the unit: /bin/systemctl disable vm@db.service"
    ]


def test_failed_step_stops_the_nuke_and_a_rerun_finishes_it(node):
    _, _, _, resource, config = node
    system = RecordingSystem(DB_LVS, fail="vg0/db_data")

    with pytest.raises(nuke.NukeError, match=r"failed at remove LV db_data.*simulated failure"):
        run_nuke(node, system)
    assert not resource.exists() and not config.exists()
    assert system.lvs == {"db_data", "db_logs"}

    system.fail = None
    done = run_nuke(node, system)

    assert done == [
        "disable the unit: /bin/systemctl disable vm@db.service",
        "remove LV db_data: /sbin/lvremove --yes vg0/db_data",
        "remove LV db_logs: /sbin/lvremove --yes vg0/db_logs",
    ]


def test_unknown_vm_is_refused(node):
    with pytest.raises(nuke.NukeError, match="no VM 'ghost' in the cache"):
        nuke.nuke(node[0], node[1], "ghost", system=RecordingSystem(set()), test=True)


def test_forgotten_vm_keeps_its_minors_spent(node):
    site = node[0]
    cache = site / "vm-config" / "example.yml"
    db_minor = pillar.build(site)["disabled_vms"]["db"]["drbd_minor"]
    highest = max(vm["drbd_minor"] for vm in pillar.build(site)["vms"].values())

    assert inventory.forget(site, "db")
    new_file = site / "vm-config" / "example" / "fresh.yml"
    new_file.write_text(
        yaml.safe_dump(
            {
                "name": "fresh",
                "primary_on": "node1",
                "network_bridge": "br0",
                "ram_megs": 64,
                "cpus": 1,
                "root_disk_size": "32M",
            }
        )
    )
    inventory.run(site)

    fresh = pillar.build(site)["vms"]["fresh"]["drbd_minor"]
    assert "db" not in cache.read_text()
    assert fresh > max(db_minor, highest)
