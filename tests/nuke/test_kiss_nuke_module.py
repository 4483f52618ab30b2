"""`salt-call --local kiss.nuke` through the real Salt loader: pillar, minion options and the
execution module together. systemctl, lvs, lvremove and drbdadm are fake_node_tool.py, set
through the minion option kiss_lookup (this host has no systemd as PID 1, no device-mapper and no
DRBD module); files under a temporary root are removed for real."""

import json
from pathlib import Path

import pytest
from kisstest import salt_call, write_minion_config

from kisscluster import inventory

pytestmark = pytest.mark.fast

FAKE_TOOL = Path(__file__).parent / "fake_node_tool.py"
PROGRAMS = ("systemctl", "lvs", "lvremove", "drbdadm")


@pytest.fixture
def node(example_site: Path, tmp_path: Path):
    """node1 of the example site with `mail` disabled; mail's files and LV exist."""
    inventory.run(example_site)
    mail = example_site / "vm-config" / "example" / "mail.yml"
    mail.rename(mail.with_suffix(".yml.off"))
    inventory.run(example_site)
    root = tmp_path / "root"
    (root / "bin").mkdir(parents=True)
    for program in PROGRAMS:
        (root / "bin" / program).symlink_to(FAKE_TOOL)
    for path in (root / "etc" / "drbd.d" / "mail.res", root / "etc" / "vm" / "mail.conf"):
        path.parent.mkdir(parents=True)
        path.write_text("made by kiss.vms\n")
    (root / "lvs").write_text("mail_root\n")
    lookup = {"root": str(root), **{p: str(root / "bin" / p) for p in PROGRAMS}}
    config = write_minion_config(tmp_path / "salt", example_site, "node1", kiss_lookup=lookup)
    return config, root


def calls(root: Path) -> list[list[str]]:
    return [json.loads(line) for line in (root / "commands.log").read_text().splitlines()]


def test_kiss_nuke_test_mode_lists_the_steps(node):
    config, root = node

    lines = salt_call(config, "kiss.nuke", "mail", "test=True")

    assert f"would remove the DRBD resource file: remove {root}/etc/drbd.d/mail.res" in lines
    assert f"would remove LV mail_root: {root}/bin/lvremove --yes vg0/mail_root" in lines
    assert (root / "etc" / "vm" / "mail.conf").exists()
    assert not [c for c in calls(root) if c[0] == "lvremove"]


def test_kiss_nuke_refuses_a_vm_with_a_file_and_an_active_one(node):
    config, root = node

    with pytest.raises(AssertionError, match=r"kiss.nuke.*vm-config/example/web.yml still exists"):
        salt_call(config, "kiss.nuke", "web")

    (root / "running").touch()
    with pytest.raises(AssertionError, match=r"kiss.nuke.*vm@mail.service is active"):
        salt_call(config, "kiss.nuke", "mail")
    assert (root / "etc" / "drbd.d" / "mail.res").exists()


def test_kiss_nuke_removes_the_vm_from_this_node(node):
    config, root = node

    done = salt_call(config, "kiss.nuke", "mail")

    assert f"remove the VM config: remove {root}/etc/vm/mail.conf" in done
    assert not (root / "etc" / "vm" / "mail.conf").exists()
    assert not (root / "etc" / "drbd.d" / "mail.res").exists()
    assert (root / "lvs").read_text().split() == []
    assert ["systemctl", "disable", "vm@mail.service"] in calls(root)
