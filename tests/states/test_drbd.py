"""DRBD resource files and commands against the real drbdadm-84 of drbd-utils.

`dump` needs no kernel module. The commands kiss.vms runs need the DRBD module, which this host
does not have: here they run through drbdadm-84 `--dry-run`, in a UTS namespace named like the
node (drbdadm picks its `on <host>` section by host name), which parses the config and the
command and prints the drbdsetup/drbdmeta calls it would make. The real run is the lab's.
"""

import subprocess
from pathlib import Path

import pytest
from kisstest import DRBDADM_84, unshare_uts

from kisscluster import drbd, initialsync, pillar, skeleton, steps

NODE_FILES = Path(__file__).resolve().parents[2] / "salt/states/kiss/templates/node"


@pytest.fixture
def kiss(site):
    return pillar.build(site)


def write_resources(kiss: dict, directory: Path) -> Path:
    for name, vm in kiss["vms"].items():
        text = drbd.render_resource(vm, kiss["cluster"]["members"], "vg0")
        (directory / f"{name}.res").write_text(text)
    config = directory / "drbd.conf"
    config.write_text(f'include "{directory}/*.res";\n')
    return config


def dry_run(config: Path, node: str, argv: list[str]) -> list[str]:
    completed = subprocess.run(
        [DRBDADM_84, "--dry-run", "-c", str(config), *argv[1:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=unshare_uts(node),
    )
    assert completed.returncode == 0, completed.stderr
    return completed.stdout.splitlines()


@pytest.mark.fast
def test_every_resource_of_the_example_parses_with_its_minors_and_port(kiss, tmp_path):
    config = write_resources(kiss, tmp_path)
    dump = subprocess.run(
        drbd.dump_command(DRBDADM_84, config), capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    db = dump.stdout.split("resource db {")[1].split("\nresource ")[0]
    for minor, lv in ((0, "db_root"), (1, "db_data"), (2, "db_logs")):
        assert f"device       /dev/drbd{minor} minor {minor};" in db
        assert f"disk         /dev/vg0/{lv};" in db
    assert "address          ipv4 10.99.0.1:10000;" in db
    assert "address          ipv4 10.99.0.2:10000;" in db


@pytest.mark.fast
def test_ipv6_storage_addresses_are_bracketed_and_accepted(kiss, tmp_path):
    members = [
        dict(m, stor_addr=f"fd00::{i + 1}") for i, m in enumerate(kiss["cluster"]["members"])
    ]
    text = drbd.render_resource(kiss["vms"]["web"], members, "vg0")
    assert "address ipv6 [fd00::1]:10008;" in text
    (tmp_path / "web.res").write_text(text)
    dump = subprocess.run(
        drbd.dump_command(DRBDADM_84, tmp_path / "web.res"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert dump.returncode == 0, dump.stderr


@pytest.mark.parametrize(("node", "syncs"), [("node1", False), ("node2", True)])
def test_new_vm_commands_are_what_drbdadm_84_would_run(kiss, tmp_path, node, syncs):
    config = write_resources(kiss, tmp_path)
    plan = skeleton.plan(
        kiss["vms"]["db"], node, "vg0", {}, steps.Programs("lvcreate", "lvextend", DRBDADM_84), None
    )
    drbd_steps = [list(s.argv) for s in plan.steps if s.argv[0] == DRBDADM_84]
    printed = [line for argv in drbd_steps for line in dry_run(config, node, argv)]
    for minor, lv in ((0, "db_root"), (1, "db_data"), (2, "db_logs")):
        assert f"drbdmeta {minor} v08 /dev/vg0/{lv} internal create-md --force" in printed
    assert any(" connect db ipv4:" in line for line in printed)
    assert any(step.function == "kiss.drbd_initial_sync" for step in plan.steps) == syncs
    # what the initial sync runs when both copies are new (kisscluster.initialsync)
    forcing = [
        drbd.primary_force_command(DRBDADM_84, "db"),
        drbd.secondary_command(DRBDADM_84, "db"),
    ]
    printed = [line for argv in forcing for line in dry_run(config, node, argv)]
    assert any(line.endswith("primary 0 --force") for line in printed), printed
    assert any(line.endswith("secondary 0") for line in printed), printed


@pytest.mark.fast
def test_global_common_conf_parses_with_the_resources(kiss, tmp_path):
    """The global_common.conf of kiss.node (rendered by Salt in test_kiss_node.py) as drbdadm
    reads it: protocol C, checksums, split-brain policies, fencing and its handlers."""
    import jinja2

    template = (NODE_FILES / "global_common.conf.jinja").read_text()
    kiss_settings = {"split_brain_notify": "root", "kissclusterd": "/usr/local/bin/kissclusterd"}
    text = jinja2.Template(template).render(kiss=kiss_settings)
    (tmp_path / "global_common.conf").write_text(text)
    config = write_resources(kiss, tmp_path)
    config.write_text(f'include "{tmp_path}/global_common.conf";\n' + config.read_text())
    dump = subprocess.run(
        drbd.dump_command(DRBDADM_84, config), capture_output=True, text=True, timeout=60
    )
    assert dump.returncode == 0, dump.stderr
    settings = {" ".join(line.split()) for line in dump.stdout.splitlines()}
    assert {
        "protocol C;",
        "csums-alg sha1;",
        "verify-alg sha1;",
        "after-sb-0pri discard-zero-changes;",
        "after-sb-1pri consensus;",
        "after-sb-2pri disconnect;",
        "on-io-error detach;",
        "fencing resource-and-stonith;",
        'fence-peer "/usr/local/bin/kissclusterd fence-peer";',
        'after-resync-target "/usr/local/bin/kissclusterd notify after-resync-target";',
        'split-brain "/usr/local/bin/kissclusterd notify split-brain --mail root";',
    } <= settings


def test_one_volume_commands_are_what_drbdadm_84_would_run(kiss, tmp_path):
    """A new extra disk and a grown one touch their own minor only: create-md, primary --force,
    secondary and resize of db/2 (minor 2) reach drbdmeta/drbdsetup for minor 2 alone."""
    config = write_resources(kiss, tmp_path)
    argvs = [
        drbd.create_md_command(DRBDADM_84, "db", 2),
        drbd.primary_force_command(DRBDADM_84, "db", 2),
        drbd.secondary_command(DRBDADM_84, "db", 2),
        drbd.resize_command(DRBDADM_84, "db", 2),
    ]
    printed = [dry_run(config, "node2", argv) for argv in argvs]
    assert any("drbdmeta 2 v08 /dev/vg0/db_logs internal create-md --force" in line
               for line in printed[0])  # fmt: skip
    assert [line.split()[1:] for line in printed[1] + printed[2] + printed[3]] == [
        ["primary", "2", "--force"],
        ["secondary", "2"],
        ["resize", "2"],
        ["check-resize", "2"],  # records the backing size (/var/lib/drbd)
    ]
    assert initialsync.volume_command(DRBDADM_84, "db", 2, True)[-4:] == [
        "db", "--volume", "2", "--keep-primary",
    ]  # fmt: skip
