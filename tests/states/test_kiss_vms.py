"""kiss.vms through real `salt-call --local` on the example site, both nodes, files under a root.

LVM runs for real on a loop device without device-mapper activation, drbdadm is the real
drbdadm-84 in --dry-run mode (no DRBD kernel module here), systemctl a recorder (no systemd as
PID 1): see conftest.py. The lab runs the same states on real nodes.
"""

import subprocess
from pathlib import Path

import yaml
from kisstest import salt_call

from kisscluster import drbd, inventory, placement

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


def test_a_new_disk_and_a_grown_one_on_an_existing_vm_then_nothing_then_a_refused_shrink(
    node1, site
):
    """db exists on node1 and runs there (after a failover): a disk added (LV, metadata of
    volume 3 only, adjust, its sync from here) and one grown (lvextend, drbdadm resize); the
    test run shows each step and does none; the real run's changes are the same; existing
    volumes get no metadata and no forced sync; applied again, nothing; a smaller size fails
    and runs nothing."""
    assert_all_succeeded(node1.apply("kiss.vms"))
    calls_before = len(node1.drbd_calls())
    running_here = "cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate"
    node1.drbd_says({m: (running_here, drbd.usable_bytes(LV_SIZES[lv]))
                     for m, lv in ((0, "db_root"), (1, "db_data"), (2, "db_logs"))})  # fmt: skip
    db = site / "vm-config/example/db.yml"
    spec = yaml.safe_load(db.read_text())
    spec["more_disks"].append({"name": "scratch", "size": "8M"})
    spec["more_disks"][0]["size"] = "48M"
    db.write_text(yaml.safe_dump(spec))
    inventory.run(site)

    preview = node1.apply("kiss.vms", test=True)
    assert planned_steps(preview, "db") == [
        "grow LV vg0/db_data to 48M",
        "create LV vg0/db_scratch (8M)",
        "create DRBD metadata db/3 (this volume only)",
        "add the new volumes to DRBD resource db",
        "start the initial sync of db/3 from here unless the peer's copy has data",
        "resize DRBD volume db/1",
    ]
    assert preview[SKELETON.format("db")]["result"] is None
    # the dry run's summary line names each step (kiss-configure --dry-run prints the comment)
    assert preview[SKELETON.format("db")]["comment"].startswith(
        "VM db: would run: grow LV vg0/db_data to 48M; create LV vg0/db_scratch (8M); "
    )
    assert (
        "VM db sees its new disk scratch (volume 3) after its next start"
        in (preview[SKELETON.format("db")]["comment"])
    )
    assert node1.vg.lvs() == LV_SIZES and len(node1.drbd_calls()) == calls_before

    results = node1.apply("kiss.vms")
    assert_all_succeeded(results)
    db_ret = results[SKELETON.format("db")]
    assert db_ret["changes"] == preview[SKELETON.format("db")]["changes"]
    assert db_ret["changes"]["grow LV vg0/db_data to 48M"] == (
        f"{node1.lookup['lvextend']} --size {48 << 20}b vg0/db_data"
    )
    assert node1.vg.lvs() == dict(LV_SIZES, db_data=48 << 20, db_scratch=8 << 20)
    # the stand-in answers dstate as two new copies: db/3 is forced and stays Primary with the
    # rest of the resource (the VM runs here); volumes 0-2 are never touched
    assert node1.drbd_calls()[calls_before:] == [
        ["--force", "create-md", "db/3"],
        ["adjust", "db"],
        ["dstate", "db/3"],
        ["primary", "--force", "db/3"],
        ["resize", "db/1"],
    ]
    assert "volume 3 {" in node1.file("etc/drbd.d/db.res")

    # DRBD as the peer's run leaves it: the new volume synced, volume 1 grown on both nodes
    node1.drbd_says({m: (running_here, drbd.usable_bytes(size)) for m, size in
                     ((0, 64 << 20), (1, 48 << 20), (2, 16 << 20), (3, 8 << 20))})  # fmt: skip
    assert changed(node1.apply("kiss.vms")) == {}
    assert changed(node1.apply("kiss.vms", test=True)) == {}

    spec["more_disks"][0]["size"] = "16M"
    db.write_text(yaml.safe_dump(spec))
    inventory.run(site)
    calls = len(node1.drbd_calls())
    refused = node1.apply("kiss.vms")[SKELETON.format("db")]
    assert refused["result"] is False
    assert (
        "asks for 16M, LV vg0/db_data holds 48M: kisscluster never shrinks a disk"
        in (refused["comment"])
    )
    assert node1.vg.lvs()["db_data"] == 48 << 20 and len(node1.drbd_calls()) == calls


def test_disabled_vm_is_disabled_not_stopped_and_its_files_kept(node1, site):
    assert_all_succeeded(node1.apply("kiss.vms"))
    (site / "vm-config/example/web.yml").rename(site / "vm-config/example/web.yml.off")
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


def test_an_install_iso_named_in_the_vm_file_reaches_its_qemu_parameters(node1, site):
    assert_all_succeeded(node1.apply("kiss.vms"))
    vm_file = site / "vm-config/example/web.yml"
    vm_file.write_text(vm_file.read_text() + "install_iso: debian-12.8.0-amd64-netinst.iso\n")
    inventory.run(site)
    results = node1.apply("kiss.vms")
    assert_all_succeeded(results)
    assert list(changed(results)) == ["kiss-vms-config-web-qemu-parameters"]
    iso = "/var/lib/kisscluster/iso/debian-12.8.0-amd64-netinst.iso"
    assert (
        f"QEMU_INSTALL_ARGS=-drive file={iso},if=none,id=install,media=cdrom,readonly=on,"
        "format=raw -device ide-cd,drive=install,bootindex=0\n"
    ) in node1.file("etc/vm/web.conf")
    vm_file.write_text(vm_file.read_text().replace("install_iso: ", "# install_iso: "))
    inventory.run(site)
    assert_all_succeeded(node1.apply("kiss.vms"))
    assert "QEMU_INSTALL_ARGS" not in node1.file("etc/vm/web.conf")
    assert node1.file("etc/vm/web.conf") == (EXPECTED / "web.conf").read_text(encoding="utf-8")


def test_a_vm_kiss_migrate_placed_on_the_peer_stays_there_after_kiss_vms(node1, site):
    """kiss.vms renders primary-vms.target's drop-in from primary_on and the placement file,
    so a roll-out never hands a migrated VM back (kisscluster/placement.py)."""
    drop_in = "etc/systemd/system/primary-vms.target.d/kisscluster-vms.conf"
    placed = node1.root / "var/lib/kisscluster/placement.json"
    placement.save(placement.AT_HOME.moved("web", "node2", "node1"), placed)
    assert_all_succeeded(node1.apply("kiss.vms"))
    assert placement.drop_in_lists(node1.file(drop_in)) == (["mail"], ["db", "web"])
    placement.save(placement.AT_HOME, placed)
    results = node1.apply("kiss.vms")
    assert results["kiss-vms-units-primary-vms-target"]["changes"]
    assert node1.file(drop_in) == (EXPECTED / "primary-vms-node1.conf").read_text()
