"""The inventory rules that keep DRBD minors stable for the life of every VM."""

import os
import threading
import time
from pathlib import Path

import pytest
import yaml

from kisscluster import inventory, pillar

pytestmark = pytest.mark.fast


def write_vm(site: Path, name: str, **keys) -> Path:
    spec = {
        "name": name,
        "primary_on": "node1",
        "network_bridge": "br0",
        "ram_megs": 64,
        "cpus": 1,
        "root_disk_size": "32M",
        **keys,
    }
    path = site / "vm-config" / "example" / f"{name}.yml"
    path.write_text(yaml.safe_dump(spec))
    return path


def minors(site: Path) -> dict[str, dict[str, int]]:
    _, cache = inventory.read(site)
    return {name: {d.name: d.minor for d in r.disks()} for name, r in cache.vms.items()}


def test_first_run_allocates_blocks_of_four_in_name_order(example_site):
    result = inventory.run(example_site)

    assert result.allocated == ["db", "mail", "web"]
    assert result.changed
    assert minors(example_site) == {
        "db": {"root": 0, "data": 1, "logs": 2},
        "mail": {"root": 4},
        "web": {"root": 8},
    }


def test_second_run_changes_nothing_and_does_not_rewrite(example_site):
    inventory.run(example_site)
    cache = example_site / "vm-config" / "example.yml"
    stat = cache.stat()

    result = inventory.run(example_site)

    assert not result.changed
    assert result.allocated == result.disabled == result.activated == []
    assert cache.stat().st_ino == stat.st_ino
    assert cache.stat().st_mtime_ns == stat.st_mtime_ns


def test_new_vm_goes_after_the_highest_block_ever_assigned(example_site):
    inventory.run(example_site)
    (example_site / "vm-config" / "example" / "web.yml").unlink()  # web held minors 8..11
    inventory.run(example_site)
    write_vm(example_site, "aaa")

    result = inventory.run(example_site)

    assert result.allocated == ["aaa"]
    assert minors(example_site)["aaa"] == {"root": 12}
    assert minors(example_site)["web"] == {"root": 8}


def test_disabled_vm_keeps_minors_and_comes_back_with_them(example_site):
    inventory.run(example_site)
    vm_file = example_site / "vm-config" / "example" / "db.yml"
    vm_file.rename(vm_file.with_suffix(".off"))

    disabled = inventory.run(example_site)
    write_vm(example_site, "zzz")
    inventory.run(example_site)
    vm_file.with_suffix(".off").rename(vm_file)
    activated = inventory.run(example_site)

    assert disabled.disabled == ["db"]
    assert activated.activated == ["db"]
    assert minors(example_site)["db"] == {"root": 0, "data": 1, "logs": 2}
    assert minors(example_site)["zzz"] == {"root": 12}
    kiss = pillar.build(example_site)
    assert set(kiss["vms"]) == {"db", "mail", "web", "zzz"}
    assert kiss["disabled_vms"] == {}


def test_disabled_vm_is_in_the_pillar_as_disabled(example_site):
    inventory.run(example_site)
    (example_site / "vm-config" / "example" / "mail.yml").unlink()
    inventory.run(example_site)

    kiss = pillar.build(example_site)

    assert set(kiss["vms"]) == {"db", "web"}
    assert kiss["disabled_vms"]["mail"]["drbd_minor"] == 4


def test_disabled_true_in_a_vm_file_disables_it_as_the_original_did(example_site):
    inventory.run(example_site)
    vm_file = example_site / "vm-config" / "example" / "mail.yml"
    spec = yaml.safe_load(vm_file.read_text())
    vm_file.write_text(yaml.safe_dump({**spec, "disabled": True, "ram_megs": 96}))
    disabled = inventory.run(example_site)
    write_vm(
        example_site, "new-off", disabled=True
    )  # a new VM may start disabled: minors all the same
    new = inventory.run(example_site)
    vm_file.write_text(yaml.safe_dump({**spec, "disabled": False}))
    activated = inventory.run(example_site)

    assert disabled.disabled == ["mail"] and new.allocated == ["new-off"]
    assert activated.activated == ["mail"]
    kiss = pillar.build(example_site)
    assert kiss["disabled_vms"]["new-off"]["drbd_minor"] == 12
    assert kiss["vms"]["mail"]["drbd_minor"] == 4


def test_disabled_must_be_true_or_false(example_site):
    write_vm(example_site, "maybe", disabled="yes please")
    with pytest.raises(inventory.InventoryError) as error:
        inventory.run(example_site)
    assert "vm-config/example/maybe.yml: disabled: must be true or false" in str(error.value)


def test_added_disk_takes_the_next_volume_of_its_block(example_site):
    inventory.run(example_site)
    write_vm(example_site, "web", more_disks=[{"name": "data", "size": "8M"}])

    result = inventory.run(example_site)

    assert result.added_disks == ["web/data"]
    assert minors(example_site)["web"] == {"root": 8, "data": 9}


def test_removing_a_disk_needs_remove_disks_and_retires_its_minor(example_site):
    inventory.run(example_site)
    db = {"primary_on": "node2", "template": "virtio-blk", "root_disk_size": "64M"}
    write_vm(
        example_site,
        "db",
        **db,
        more_disks=[{"name": "logs", "size": "16M"}],
        remove_disks=["data"],
    )
    retired = inventory.run(example_site)
    write_vm(
        example_site,
        "db",
        **db,
        more_disks=[{"name": "logs", "size": "16M"}, {"name": "data", "size": "32M"}],
        remove_disks=[],
    )
    readded = inventory.run(example_site)

    assert retired.retired_disks == ["db/data"]
    assert readded.added_disks == ["db/data"]
    # minor 1 stays spent: the re-added disk is a new disk on volume 3
    assert minors(example_site)["db"] == {"root": 0, "logs": 2, "data": 3}
    _, cache = inventory.read(example_site)
    assert [(d.name, d.minor) for d in cache.vms["db"].retired_disks] == [("data", 1)]


def test_size_change_is_recorded_without_touching_minors(example_site):
    inventory.run(example_site)
    write_vm(example_site, "web", root_disk_size="128m")

    inventory.run(example_site)

    assert pillar.build(example_site)["vms"]["web"]["disks"][0]["size"] == "128M"
    assert minors(example_site)["web"] == {"root": 8}


def test_an_install_iso_reaches_the_pillar_until_the_file_drops_it(example_site):
    inventory.run(example_site)
    write_vm(example_site, "web", install_iso="debian-12.8.0-amd64-netinst.iso")
    assert inventory.run(example_site).changed
    cache_text = (example_site / "vm-config" / "example.yml").read_text()
    assert "install_iso: debian-12.8.0-amd64-netinst.iso" in cache_text
    kiss = pillar.build(example_site)
    assert kiss["vms"]["web"]["install_iso"] == "debian-12.8.0-amd64-netinst.iso"
    assert kiss["vms"]["mail"]["install_iso"] is None
    assert minors(example_site)["web"] == {"root": 8}

    write_vm(example_site, "web")
    assert inventory.run(example_site).changed
    assert pillar.build(example_site)["vms"]["web"]["install_iso"] is None
    assert "install_iso" not in (example_site / "vm-config" / "example.yml").read_text()


@pytest.mark.parametrize("iso", ["/srv/iso/debian.iso", "../debian.iso", "debian", "a b.iso"])
def test_an_install_iso_is_a_file_name_in_the_iso_directory(example_site, iso):
    write_vm(example_site, "web", install_iso=iso)
    with pytest.raises(inventory.InventoryError) as error:
        inventory.run(example_site)
    assert "vm-config/example/web.yml: install_iso: must be the file name of an ISO" in str(
        error.value
    )


@pytest.mark.parametrize(
    ("given", "normal"),
    [
        ("20G", "20G"),
        ("20g", "20G"),
        ("1024m", "1G"),
        ("1.5G", "1536M"),
        ("2048s", "1M"),
        ("3072K", "3M"),
        (512, "512M"),
        ("1t", "1T"),
        ("1048577k", "1048577K"),
    ],
)
def test_sizes_take_lvm_units_in_either_case(given, normal):
    assert inventory.normalize_size(given) == normal


def test_mac_and_vnc_follow_the_first_minor(example_site):
    inventory.run(example_site)
    kiss = pillar.build(example_site)

    db, web = kiss["vms"]["db"], kiss["vms"]["web"]
    assert (db["mac"], db["vnc_display"], db["drbd_port"]) == ("52:54:00:4b:00:00", 0, 10000)
    assert (web["mac"], web["vnc_display"], web["drbd_port"]) == ("52:54:00:4b:00:08", 8, 10008)
    assert [d["device"] for d in db["disks"]] == [f"/dev/drbd/by-res/db/{n}" for n in range(3)]
    assert [d["lv_path"] for d in db["disks"]] == [
        "/dev/vg0/db_root",
        "/dev/vg0/db_data",
        "/dev/vg0/db_logs",
    ]


def test_an_adopted_site_keeps_the_original_drbd_ports(example_site):
    # The original KISScluster listens on 7788 + minor; with its 5-octet MAC prefix (256 minors)
    # those ports stay clear of VNC's 5900 + minor.
    cluster_file = example_site / "pillar" / "cluster.yml"
    text = cluster_file.read_text().replace('"52:54:00:4b"', '"52:54:00:4b:01"')
    cluster_file.write_text(
        text.replace("  volume_group:", "  drbd_port_base: 7788\n  volume_group:")
    )
    inventory.run(example_site)
    kiss = pillar.build(example_site)
    assert (kiss["vms"]["db"]["drbd_port"], kiss["vms"]["web"]["drbd_port"]) == (7788, 7796)
    assert kiss["cluster"]["drbd_port_base"] == 7788


@pytest.mark.parametrize(
    ("base", "prefix", "complaint"),
    [
        (7788, '"52:54:00:4b"', "overlap the VNC ports 5900-9995 of 4096 minors: use 9996"),
        (63000, '"52:54:00:4b"', "ports 63000-67095 for 4096 minors end above 65535"),
        (80, '"52:54:00:4b"', "must be a whole number from 1024 to 65535, got 80"),
    ],
)
def test_drbd_ports_that_clash_or_overflow_are_refused(example_site, base, prefix, complaint):
    cluster_file = example_site / "pillar" / "cluster.yml"
    text = cluster_file.read_text().replace('"52:54:00:4b"', prefix)
    cluster_file.write_text(
        text.replace("  volume_group:", f"  drbd_port_base: {base}\n  volume_group:")
    )
    with pytest.raises(inventory.InventoryError) as error:
        inventory.run(example_site)
    assert "cluster.drbd_port_base" in str(error.value)
    assert complaint in str(error.value)


def test_wide_mac_scheme_uses_two_octets_for_1024_vms():
    cluster = inventory.load_cluster(Path(__file__).parents[2])
    assert cluster.minor_limit == 4096
    assert cluster.mac(4092) == "52:54:00:4b:0f:fc"
    assert cluster.mac(260) == "52:54:00:4b:01:04"


def test_narrow_mac_scheme_of_a_five_octet_prefix(example_site):
    cluster_file = example_site / "pillar" / "cluster.yml"
    cluster_file.write_text(cluster_file.read_text().replace('"52:54:00:4b"', '"52:54:00:4b:01"'))
    inventory.run(example_site)

    assert pillar.build(example_site)["vms"]["web"]["mac"] == "52:54:00:4b:01:08"


def test_same_input_gives_the_same_bytes(example_site, tmp_path):
    from kisstest import copy_example_site

    other = copy_example_site(tmp_path / "other")
    inventory.run(example_site)
    inventory.run(other)

    cache = Path("vm-config") / "example.yml"
    assert (example_site / cache).read_bytes() == (other / cache).read_bytes()


def test_dry_run_writes_nothing(example_site):
    result = inventory.run(example_site, dry_run=True)

    assert result.changed and result.allocated == ["db", "mail", "web"]
    assert not (example_site / "vm-config" / "example.yml").exists()


def test_crash_before_rename_leaves_old_cache(example_site, monkeypatch):
    inventory.run(example_site)
    cache = example_site / "vm-config" / "example.yml"
    before = cache.read_bytes()
    write_vm(example_site, "new")

    def power_cut(src, dst):
        raise OSError("power cut between write and rename")

    monkeypatch.setattr(os, "replace", power_cut)
    with pytest.raises(OSError, match="power cut"):
        inventory.run(example_site)
    monkeypatch.undo()

    assert cache.read_bytes() == before
    assert not [p for p in cache.parent.iterdir() if p.name.endswith(".tmp")]
    assert inventory.run(example_site).allocated == ["new"]


def test_two_runs_do_not_interleave(example_site):
    directory = example_site / "vm-config"
    finished = threading.Event()

    def second_run():
        inventory.run(example_site)
        finished.set()

    with inventory.locked(directory):
        thread = threading.Thread(target=second_run)
        thread.start()
        time.sleep(0.3)
        waited = not finished.is_set()
    thread.join(timeout=10)

    assert waited, "the second run went ahead while the lock was held"
    assert finished.is_set()


def test_forget_keeps_the_high_water_mark(example_site):
    inventory.run(example_site)
    with pytest.raises(inventory.InventoryError, match="still has a VM file"):
        inventory.forget(example_site, "web")
    (example_site / "vm-config" / "example" / "web.yml").unlink()
    inventory.run(example_site)

    assert inventory.forget(example_site, "web")
    assert not inventory.forget(example_site, "web")
    write_vm(example_site, "next")
    inventory.run(example_site)

    assert "web" not in minors(example_site)
    assert minors(example_site)["next"] == {"root": 12}
