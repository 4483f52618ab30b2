"""kiss-nuke-vm on two nodes of one machine: salt-run state.orchestrate kiss.nuke with real git,
sshd, salt-call and salt-run. systemctl, lvs, lvremove and drbdadm are replaced per node
by fake_node_tool.py through the pillar lookup (this host has no systemd as PID 1, no
device-mapper, no DRBD module); the real commands run in the lab. Files are removed for real under
each node's root."""

import json
from pathlib import Path

import pytest
import yaml
from twonodes import NodeDirs, Pair

FAKE_TOOL = Path(__file__).parent / "fake_node_tool.py"
PROGRAMS = ("systemctl", "lvs", "lvremove", "drbdadm")


def node_files(node: NodeDirs, vm: str) -> list[Path]:
    return [node.root / "etc" / "drbd.d" / f"{vm}.res", node.root / "etc" / "vm" / f"{vm}.conf"]


def actions(node: NodeDirs) -> list[list[str]]:
    """The non-probe commands a node ran."""
    log = node.root / "commands.log"
    calls = [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []
    return [c for c in calls if c[0] != "lvs" and not {"is-active", "role"} & set(c)]


def cache_minors(pair: Pair, bare: Path) -> dict[str, int]:
    """VM name -> first DRBD minor, from the cache committed in a bare repository."""
    cache = yaml.safe_load(pair.git(bare, "show", "main:vm-config/example.yml"))
    return {vm["name"]: vm["drbd_minor"] for vm in cache["vms"]}


@pytest.fixture
def with_disabled_mail(pair: Pair) -> Pair:
    """Initialised, configured, `mail` disabled; mail's files and LV exist on both nodes."""
    for node in (pair.node1, pair.node2):
        (node.root / "bin").mkdir(parents=True)
        for program in PROGRAMS:
            (node.root / "bin" / program).symlink_to(FAKE_TOOL)
        minion = node.config_dir / "minion"
        config = yaml.safe_load(minion.read_text())
        config["kiss_lookup"].update({p: str(node.root / "bin" / p) for p in PROGRAMS})
        minion.write_text(yaml.safe_dump(config))
    init = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))
    assert init.returncode == 0, init.stdout + init.stderr
    assert pair.run("kiss-configure", pair.node1).returncode == 0
    mail = pair.node1.site / "vm-config" / "example" / "mail.yml"
    mail.rename(mail.with_suffix(".yml.off"))
    disable = pair.run("kiss-configure", pair.node1)
    assert disable.returncode == 0, disable.stdout + disable.stderr
    assert "inventory: disabled mail" in disable.stdout
    for node in (pair.node1, pair.node2):
        for path in node_files(node, "mail"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("made by kiss.vms\n")
        (node.root / "lvs").write_text("mail_root\nweb_root\n")
    return pair


def test_refusals_stop_before_anything_is_removed(with_disabled_mail: Pair):
    pair = with_disabled_mail
    before = pair.head(pair.node1.bare)

    has_file = pair.run("kiss-nuke-vm", pair.node1, "web")

    assert has_file.returncode == 1
    assert "vm-config/example/web.yml still exists" in has_file.stdout
    assert "FAILED on node1" in has_file.stdout

    (pair.node2.root / "running").touch()
    running = pair.run("kiss-nuke-vm", pair.node1, "mail")

    assert running.returncode == 1
    assert "node2: vm@mail.service is active" in running.stdout
    assert "FAILED on node2 (kiss-orchestrate-nuke-check-peer)" in running.stdout
    for node in (pair.node1, pair.node2):
        assert all(path.exists() for path in node_files(node, "mail"))
        assert actions(node) == []
    assert pair.head(pair.node1.bare) == before


def test_test_mode_lists_the_steps_of_both_nodes(with_disabled_mail: Pair):
    pair = with_disabled_mail
    before = pair.head(pair.node1.bare)

    run = pair.run("kiss-nuke-vm", pair.node1, "mail", "--test")

    assert run.returncode == 0, run.stdout + run.stderr
    for node in ("node1", "node2"):
        assert f"{node}: would DRBD wipe-md:" in run.stdout
        assert f"{node}: would remove LV mail_root: " in run.stdout
    assert "would forget mail from the cache" in run.stdout
    for node in (pair.node1, pair.node2):
        assert all(path.exists() for path in node_files(node, "mail"))
        assert actions(node) == []
    assert pair.head(pair.node1.bare) == before


def test_nuke_removes_the_vm_on_both_nodes_and_its_minors_stay_spent(with_disabled_mail: Pair):
    pair = with_disabled_mail
    minors = cache_minors(pair, pair.node1.bare)
    assert "mail" in minors

    run = pair.run("kiss-nuke-vm", pair.node1, "mail")

    assert run.returncode == 0, run.stdout + run.stderr
    for node in (pair.node1, pair.node2):
        assert not any(path.exists() for path in node_files(node, "mail"))
        assert (node.root / "lvs").read_text().split() == ["web_root"]
        assert ["systemctl", "disable", "vm@mail.service"] in actions(node)
    head = pair.head(pair.node1.bare)
    assert pair.head(pair.node2.bare) == head
    assert "mail" not in cache_minors(pair, pair.node2.bare)

    new_vm = pair.node1.site / "vm-config" / "example" / "newcomer.yml"
    new_vm.write_text(
        yaml.safe_dump(
            {
                "name": "newcomer",
                "primary_on": "node1",
                "network_bridge": "br0",
                "ram_megs": 64,
                "cpus": 1,
                "root_disk_size": "32M",
            }
        )
    )
    configure = pair.run("kiss-configure", pair.node1)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    assert cache_minors(pair, pair.node2.bare)["newcomer"] > max(minors.values())
