"""kiss.node through real `salt-call --local`: its files applied for real under a temporary root,
the rest (packages, the DRBD module, the VM user, daemon-reload) in test mode only - this host
has no DRBD module, no systemd as PID 1, and its users are not ours to change."""

import os
import subprocess

import pytest
import yaml
from kisstest import salt_call, write_minion_config

from kisscluster.inventory.errors import InventoryError
from kisscluster.inventory.schema import load_cluster

UNITS = (
    "vm@.service",
    "drbd-resource@.service",
    "kissclusterd.service",
    "all-vms.target",
    "primary-vms.target",
    "no-vms.target",
    "manual-vms.target",
)
TARGETS = ("all-vms", "primary-vms", "no-vms", "manual-vms")
SECRET = "etc/kisscluster/kissclusterd.secret"


def results_ok(results: dict) -> None:
    failed = {sid: ret["comment"] for sid, ret in results.items() if ret["result"] is False}
    assert not failed


def unit_setting(text: str, key: str) -> list[str]:
    return [line.split("=", 1)[1] for line in text.splitlines() if line.startswith(f"{key}=")]


def test_node_files_applied_then_second_apply_changes_nothing(node1):
    first = node1.apply("kiss.node.files")
    results_ok(first)
    system = node1.root / "etc/systemd/system"
    for unit in UNITS:
        assert (system / unit).is_file(), unit
    assert (system / "multi-user.target.wants/kissclusterd.service").readlink().name == (
        "kissclusterd.service"
    )
    assert node1.file("etc/qemu/bridge.conf").splitlines()[-1] == "allow br0"
    assert "d /run/kvm 0750 kiss-vm kiss-vm -" in node1.file("etc/tmpfiles.d/kisscluster.conf")
    assert node1.file("etc/kisscluster/kissclusterd.conf").split("[kissclusterd]\n")[1] == (
        "stor_addrs = 10.99.0.1 10.99.0.2\n"
        "prod_addrs = 192.0.2.11 192.0.2.12\n"
        "# Their names: kiss-maintenance marks one by name (kisscluster/placement.py).\n"
        "members = node1 node2\n"
        "ping_addr = 192.0.2.1\n"
        "# Power fencing of each member (kisscluster/heartbeat/power.py); empty: none.\n"
        "fence1 =\n"
        "fence2 =\n"
        "placement_file = /var/lib/kisscluster/placement.json\n"
        "port = 694\n"
        "secret_file = /etc/kisscluster/kissclusterd.secret\n"
        "base_priority = 100\n"
        "priority_penalty = 10\n"
        "interval = 1\n"
        "dead_time = 3\n"
        "init_dead = 60\n"
        "action = systemctl start {state}.target\n"
        "fence_timeout = 5\n"
        "fence_patience = 60\n"
        "peer_silent = takeover\n"
        f"drbdadm = {node1.lookup['drbdadm']}\n"  # kiss.drbdadm: the handlers use the node's
        "witness_addr =\n"
        "witness_port = 694\n"
        "fence_secret_file = /etc/kisscluster/fence.secret\n"
    )
    second = node1.apply("kiss.node.files")
    results_ok(second)
    assert {sid for sid, ret in second.items() if ret["changes"]} == set()


def test_targets_conflict_with_each_other_and_manual_stops_the_daemon(node1):
    results_ok(node1.apply("kiss.node.files"))
    system = node1.root / "etc/systemd/system"
    for target in TARGETS:
        conflicts = set(
            unit_setting((system / f"{target}.target").read_text(), "Conflicts")[0].split()
        )
        assert conflicts >= {f"{other}.target" for other in TARGETS if other != target}
    manual = unit_setting((system / "manual-vms.target").read_text(), "Conflicts")[0].split()
    assert "kissclusterd.service" in manual
    daemon = (system / "kissclusterd.service").read_text()
    assert unit_setting(daemon, "Type") == ["notify"]
    assert unit_setting(daemon, "RuntimeDirectory") == ["kissclusterd"]  # its status.json
    assert unit_setting(daemon, "Restart") == ["always"]  # a clock jump exits non-zero
    vm = (system / "vm@.service").read_text()
    assert unit_setting(vm, "Requires") == ["drbd-resource@%i.service"]
    assert "drbd-resource@%i.service" in unit_setting(vm, "After")[0]
    assert unit_setting(vm, "User") == ["kiss-vm"]
    assert unit_setting(vm, "EnvironmentFile") == ["/etc/vm/%i.conf", "-/run/kvm/%i.conf"]
    assert unit_setting(vm, "Restart") == ["on-failure"]
    # The promotion outwaits the peer's guest shutdown, or a failback leaves the VM nowhere.
    promote = (system / "drbd-resource@.service").read_text()
    stop = unit_setting(vm, "TimeoutStopSec")[0]
    assert int(unit_setting(promote, "TimeoutStartSec")[0]) > int(stop)


def test_secret_is_created_once_with_mode_0600_and_never_overwritten(node1):
    preview = node1.apply("kiss.node.files", test=True)
    assert preview["kiss-node-files-kissclusterd-secret"]["result"] is None
    assert not (node1.root / SECRET).exists()

    results_ok(node1.apply("kiss.node.files"))
    secret = node1.root / SECRET
    first = secret.read_text()
    assert len(first.strip()) == 64
    assert secret.stat().st_mode & 0o7777 == 0o600
    assert first not in str(node1.apply("kiss.node.files"))  # never shown

    secret.write_text("copied-from-the-primary\n")  # what kiss-init does on the peer
    secret.chmod(0o644)
    results = node1.apply("kiss.node.files")
    assert results["kiss-node-files-kissclusterd-secret"]["changes"] == {"mode": "0600"}
    assert secret.read_text() == "copied-from-the-primary\n"
    assert secret.stat().st_mode & 0o7777 == 0o600


def test_node_in_test_mode_lists_every_change_and_touches_nothing(node1):
    results = node1.apply("kiss.node", test=True)
    results_ok(results)
    assert results["kiss-node-services-systemd-daemon-reload"]["result"] is None
    assert results["kiss-node-services-drbd-module-loaded"]["result"] is not False
    run_dir = results["kiss-node-services-run-dir-created"]
    tmpfiles = f"/bin/systemd-tmpfiles --create {node1.root}/etc/tmpfiles.d/kisscluster.conf"
    assert (run_dir["result"], run_dir["changes"]) == (None, {"cmd": tmpfiles})
    assert results["kiss-node-services-kissclusterd-reloaded"]["result"] is None
    for unit in UNITS:
        assert results[f"kiss-node-files-unit-{unit}"]["result"] is None
    assert not (node1.root / "etc/systemd").exists()
    assert node1.systemctl_calls() == []


def set_heartbeat(site, **settings) -> None:
    cluster_file = site / "pillar" / "cluster.yml"
    data = yaml.safe_load(cluster_file.read_text())
    data["cluster"]["heartbeat"] = settings
    cluster_file.write_text(yaml.safe_dump(data))


def test_kissclusterd_conf_is_checked_by_the_daemon_before_it_is_installed(node1, site):
    results_ok(node1.apply("kiss.node.files"))
    installed = node1.file("etc/kisscluster/kissclusterd.conf")
    set_heartbeat(site, dead_time=1)  # less than twice the interval: the daemon refuses it
    results = node1.apply("kiss.node.files")
    conf = results["kiss-node-files-kissclusterd-conf"]
    assert conf["result"] is False
    assert "[kissclusterd] dead_time: 1.0 s must be at least twice the interval" in conf["comment"]
    assert node1.file("etc/kisscluster/kissclusterd.conf") == installed
    set_heartbeat(site, dead_time=4)
    results_ok(node1.apply("kiss.node.files"))
    assert "dead_time = 4\n" in node1.file("etc/kisscluster/kissclusterd.conf")


def test_running_daemon_is_reloaded_only_when_its_config_changed(node1, site):
    """The reload and what it requires (the files, daemon-reload) from kiss.node, nothing else:
    systemctl is the recorder."""
    reload = ["try-reload-or-restart", "kissclusterd.service"]

    def apply() -> dict:
        results = salt_call(
            node1.config, "state.sls_id", "kiss-node-services-kissclusterd-reloaded", "kiss.node"
        )
        results_ok({ret["__id__"]: ret for ret in results.values()})
        return results

    apply()
    assert node1.systemctl_calls() == [["daemon-reload"], reload]
    apply()
    assert node1.systemctl_calls() == [["daemon-reload"], reload]
    set_heartbeat(site, port=695)
    apply()
    assert node1.systemctl_calls()[2:] == [["daemon-reload"], reload]


def test_run_dir_is_created_at_once_from_its_tmpfiles_entry(node1, tmp_path):
    """kiss.node's own state, taken from the rendered SLS, on a run_dir under tmp_path owned by
    root: the kiss-vm user of the product's entry does not exist on this host."""
    run_dir = tmp_path / "run" / "kvm"
    lookup = {**node1.lookup, "run_dir": str(run_dir), "vm_user": "root"}
    write_minion_config(node1.config, node1.site, node1.name, kiss_lookup=lookup)
    results_ok(node1.apply("kiss.node.files"))
    (chunk,) = [
        c
        for c in salt_call(node1.config, "state.show_low_sls", "kiss.node")
        if c["__id__"] == "kiss-node-services-run-dir-created"
    ]
    assert (chunk["state"], chunk["fun"], chunk["creates"]) == ("cmd", "run", str(run_dir))
    config = node1.root / "etc/tmpfiles.d/kisscluster.conf"
    assert chunk["name"] == f"/bin/systemd-tmpfiles --create {config}"
    state = ["state.single", "cmd.run", f"name={chunk['name']}", f"creates={chunk['creates']}"]

    def apply(*extra: str) -> dict:
        (ret,) = salt_call(node1.config, *state, *extra).values()
        return ret

    preview = apply("test=True")
    assert (preview["result"], bool(preview["changes"])) == (None, True)
    assert not run_dir.exists()
    created = apply()
    assert (created["result"], created["changes"]["retcode"]) == (True, 0)
    assert run_dir.stat().st_mode & 0o7777 == 0o750
    again = apply()
    assert (again["result"], again["changes"]) == (True, {})


def test_systemd_analyze_verify_accepts_every_unit_target_and_vm_instance(node1):
    """Real `systemd-analyze verify` on the files as written, with the drop-in and .wants links
    of kiss.vms; SYSTEMD_UNIT_PATH puts the temporary root's unit directory first."""
    results_ok(node1.apply("kiss.node.files"))
    results_ok(node1.apply("kiss.vms"))
    system = node1.root / "etc/systemd/system"
    units = [u for u in UNITS if "@" not in u] + [
        "vm@web.service",
        "vm@db.service",
        "drbd-resource@db.service",
    ]
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{system}:", "SYSTEMD_LOG_LEVEL": "notice"}
    verify = subprocess.run(
        ["systemd-analyze", "verify", *units],
        cwd=system,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert verify.returncode == 0, verify.stderr
    assert verify.stderr == "", verify.stderr


@pytest.mark.parametrize("drop_in", ["node1", "node2"])
def test_primary_vms_drop_in_wants_own_vms_and_conflicts_with_the_peers(nodes, drop_in):
    node = nodes[drop_in]
    results_ok(node.apply("kiss.vms"))
    text = node.file("etc/systemd/system/primary-vms.target.d/kisscluster-vms.conf")
    own = {"node1": {"mail", "web"}, "node2": {"db"}}[drop_in]
    assert {
        v.removeprefix("vm@").removesuffix(".service") for v in unit_setting(text, "Wants")
    } == own
    assert {
        v.removeprefix("vm@").removesuffix(".service") for v in unit_setting(text, "Conflicts")
    } == {"db", "mail", "web"} - own


def test_each_members_fence_device_and_the_witness_reach_the_daemons_config(node1, site):
    cluster_file = site / "pillar" / "cluster.yml"
    data = yaml.safe_load(cluster_file.read_text())
    data["cluster"]["members"][1]["fence"] = "fence_ipmilan ip=10.0.0.12  lanplus=1"
    data["cluster"]["heartbeat"] = {"witness_addr": "192.0.2.5"}
    cluster_file.write_text(yaml.safe_dump(data))
    results_ok(node1.apply("kiss.node.files"))
    conf = node1.file("etc/kisscluster/kissclusterd.conf")
    assert "fence1 =\nfence2 = fence_ipmilan ip=10.0.0.12 lanplus=1\n" in conf
    assert "witness_addr = 192.0.2.5\nwitness_port = 694\n" in conf
    data["cluster"]["members"][0]["fence"] = "ip=10.0.0.11"  # options without an agent
    cluster_file.write_text(yaml.safe_dump(data))
    with pytest.raises(InventoryError, match=r"members\[0\]\.fence: 'ip=10.0.0.11' names no"):
        load_cluster(site)
    with pytest.raises(AssertionError, match="Pillar failed to render"):
        node1.apply("kiss.node.files")
    assert node1.file("etc/kisscluster/kissclusterd.conf") == conf
