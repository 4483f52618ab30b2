"""kiss.vms through real `salt-call --local` on the example site, both nodes, files under a root.

LVM runs for real on a loop device without device-mapper activation, drbdadm is the real
drbdadm-84 in --dry-run mode (no DRBD kernel module here), systemctl a recorder (no systemd as
PID 1): see conftest.py. The lab runs the same states on real nodes.
"""

import subprocess
from pathlib import Path

import yaml
from kisstest import salt_call

EXPECTED = Path(__file__).parent / "expected"

LV_SIZES = {
    "db_root": 64 << 20,
    "db_data": 32 << 20,
    "db_logs": 16 << 20,
    "mail_root": 32 << 20,
    "web_root": 64 << 20,
}
SKELETON = "kiss-vms-disks-{}-lvs-and-drbd"


def changed(results: dict) -> dict:
    return {sid: ret for sid, ret in results.items() if ret["changes"]}


def assert_all_succeeded(results: dict) -> None:
    failed = {sid: ret["comment"] for sid, ret in results.items() if ret["result"] is False}
    assert not failed


def planned_steps(results: dict, vm: str) -> list[str]:
    return list(results[SKELETON.format(vm)]["changes"])


def test_fresh_node_test_mode_lists_lvs_metadata_and_sync_on_primary_only(nodes):
    for node in nodes.values():
        results = node.apply("kiss.vms", test=True)
        assert_all_succeeded(results)
        for vm in ("db", "mail", "web"):
            steps = planned_steps(results, vm)
            assert [s for s in steps if s.startswith("create LV")], (node.name, vm, steps)
            assert f"create DRBD metadata {vm}/0" in steps
            primary_on = {"db": "node2", "mail": "node1", "web": "node1"}[vm]
            sync = f"start the initial sync of {vm} from {node.name} unless the peer holds its data"
            assert (sync in steps) == (primary_on == node.name), (node.name, vm, steps)
        assert planned_steps(results, "db")[:3] == [
            "create LV vg0/db_root (64M)",
            "create LV vg0/db_data (32M)",
            "create LV vg0/db_logs (16M)",
        ]
        # test mode touched nothing: no LV, no file, no command
        assert node.vg.lvs() == {}
        assert not (node.root / "etc" / "vm").exists()
        assert node.drbd_calls() == [] and node.systemctl_calls() == []


def test_apply_creates_skeleton_then_second_apply_changes_nothing(node1):
    first = node1.apply("kiss.vms")
    assert_all_succeeded(first)
    assert node1.vg.lvs() == LV_SIZES
    # create-md on every new volume, adjust, and the initial sync only for node1's VMs
    assert node1.drbd_calls() == [
        ["--force", "create-md", "db/0"],
        ["--force", "create-md", "db/1"],
        ["--force", "create-md", "db/2"],
        ["adjust", "db"],
        ["--force", "create-md", "mail/0"],
        ["adjust", "mail"],
        ["dstate", "mail"],
        ["primary", "--force", "mail"],
        ["secondary", "mail"],
        ["--force", "create-md", "web/0"],
        ["adjust", "web"],
        ["dstate", "web"],
        ["primary", "--force", "web"],
        ["secondary", "web"],
    ]
    # the online verify timer is started once, when it is first enabled
    assert node1.systemctl_calls() == [["daemon-reload"], ["start", "kiss-drbd-verify.timer"]]

    # one lvs per run, plus one to confirm the LVs after creating them
    assert len(node1.lvs_calls()) == 1 + 3

    second = node1.apply("kiss.vms")
    assert_all_succeeded(second)
    assert changed(second) == {}
    assert len(node1.lvs_calls()) == 1 + 3 + 1
    assert len(node1.drbd_calls()) == 14
    assert node1.systemctl_calls() == [["daemon-reload"], ["start", "kiss-drbd-verify.timer"]]

    again = node1.apply("kiss.vms", test=True)
    assert changed(again) == {}
    assert all(planned_steps(again, vm) == [] for vm in ("db", "mail", "web"))


def test_rendered_files_match_expectations_and_differ_between_nodes_only_where_they_must(nodes):
    for node in nodes.values():
        assert_all_succeeded(node.apply("kiss.vms"))
    node1, node2 = nodes["node1"], nodes["node2"]
    for path in ("etc/drbd.d/db.res", "etc/vm/db.conf", "etc/vm/web.conf", "etc/vm/mail.conf"):
        expected = (EXPECTED / Path(path).name).read_text(encoding="utf-8")
        assert node1.file(path) == expected, path
        assert node2.file(path) == expected, path
    for node in nodes.values():
        wants = node.root / "etc/systemd/system/all-vms.target.wants"
        assert sorted(p.name for p in wants.iterdir()) == [
            "vm@db.service",
            "vm@mail.service",
            "vm@web.service",
        ]
        assert {str(p.readlink()) for p in wants.iterdir()} == {"/etc/systemd/system/vm@.service"}
    drop_in = "etc/systemd/system/primary-vms.target.d/kisscluster-vms.conf"
    assert node1.file(drop_in) == (EXPECTED / "primary-vms-node1.conf").read_text()
    assert node2.file(drop_in) == (EXPECTED / "primary-vms-node2.conf").read_text()
    # everything else the two nodes hold is byte for byte the same
    files = {
        name: {
            str(p.relative_to(node.root)): p.read_bytes()
            for p in node.root.rglob("*")
            if p.is_file() and not p.is_symlink() and p.name != "drbd.conf"
        }
        for name, node in nodes.items()
    }
    differing = {p for p in files["node1"] if files["node1"][p] != files["node2"].get(p)}
    # and the online verify service, which verifies the resources of the VMs at home there
    assert differing == {drop_in, "etc/systemd/system/kiss-drbd-verify.service"}
    # the initial sync ran on each VM's primary_on node only
    assert ["primary", "--force", "db"] in node2.drbd_calls()
    assert ["primary", "--force", "db"] not in node1.drbd_calls()


def test_generated_resources_pass_the_real_drbdadm_parser(node1):
    """drbdadm-84 parses the whole configuration as it would on node1 (dump needs no module)."""
    assert_all_succeeded(node1.apply("kiss.vms"))
    dump = subprocess.run(
        ["/usr/lib/drbd/drbdadm-84", "-c", str(node1.root / "etc/drbd.conf"), "dump", "all"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    for resource in ("db", "mail", "web"):
        assert f"resource {resource} {{" in dump
    assert "device       /dev/drbd2 minor 2;" in dump  # db's third volume


def test_a_resource_drbdadm_rejects_is_never_written(node1, tmp_path):
    """kiss.vms's own check_cmd, taken from the rendered SLS, on db's resource made invalid."""
    assert_all_succeeded(node1.apply("kiss.vms"))
    resource = node1.root / "etc/drbd.d/db.res"
    good = resource.read_text()
    (chunk,) = [
        c
        for c in salt_call(node1.config, "state.show_low_sls", "kiss.vms")
        if c["__id__"] == "kiss-vms-disks-db-drbd-resource"
    ]
    assert chunk["check_cmd"] == "/usr/lib/drbd/drbdadm-84 dump all -c"
    broken = tmp_path / "broken.res"
    broken.write_text(good.replace("minor 1;", "minor 0;"))  # two volumes on one minor
    (ret,) = salt_call(
        node1.config,
        "state.single",
        "file.managed",
        f"name={resource}",
        f"source={broken}",
        f"check_cmd={chunk['check_cmd']}",
        check=False,
    ).values()
    assert ret["result"] is False
    assert "explicit minor number must match with device name" in ret["comment"]
    assert resource.read_text() == good


def test_existing_lvs_mean_no_metadata_and_no_forced_primary_whatever_changed(node1, site):
    """A VM whose root LV exists never gets create-md or primary --force again."""
    assert_all_succeeded(node1.apply("kiss.vms"))
    calls_before = len(node1.drbd_calls())
    db = site / "vm-config/example/db.yml"
    spec = yaml.safe_load(db.read_text())
    spec["more_disks"].append({"name": "scratch", "size": "8M"})
    spec["more_disks"][0]["size"] = "48M"
    db.write_text(yaml.safe_dump(spec))
    from kisscluster import inventory

    inventory.run(site)

    preview = node1.apply("kiss.vms", test=True)
    assert planned_steps(preview, "db") == ["create LV vg0/db_scratch (8M)"]

    results = node1.apply("kiss.vms")
    assert_all_succeeded(results)
    db_ret = results[SKELETON.format("db")]
    # the same changes as the preview's: each step and its command
    assert db_ret["changes"] == preview[SKELETON.format("db")]["changes"]
    assert db_ret["changes"] == {
        "create LV vg0/db_scratch (8M)": f"{node1.lookup['lvcreate']} --yes --name db_scratch "
        "--size 8388608b vg0"
    }
    assert any("`lvextend -L 48M vg0/db_data` on both" in w for w in db_ret["warnings"])
    assert any("`drbdadm resize db/1` on one" in w for w in db_ret["warnings"])
    assert any("drbdadm create-md db/3" in w for w in db_ret["warnings"])
    assert node1.vg.lvs()["db_data"] == 32 << 20  # reported, not grown
    assert len(node1.drbd_calls()) == calls_before
    assert "volume 3 {" in node1.file("etc/drbd.d/db.res")


def test_disabled_vm_is_disabled_not_stopped_and_its_files_kept(node1, site):
    assert_all_succeeded(node1.apply("kiss.vms"))
    (site / "vm-config/example/web.yml").rename(site / "vm-config/example/web.yml.off")
    from kisscluster import inventory

    inventory.run(site)
    results = node1.apply("kiss.vms")
    assert_all_succeeded(results)
    assert results["kiss-vms-units-web-disabled"]["changes"]
    link = node1.root / "etc/systemd/system/all-vms.target.wants/vm@web.service"
    assert not link.is_symlink()
    assert (node1.root / "etc/vm/web.conf").exists()
    assert "web" not in node1.file("etc/systemd/system/primary-vms.target.d/kisscluster-vms.conf")
    started = ["start", "kiss-drbd-verify.timer"]
    assert node1.systemctl_calls() == [["daemon-reload"], started, ["daemon-reload"]]
    assert all("stop" not in call for call in node1.systemctl_calls())
