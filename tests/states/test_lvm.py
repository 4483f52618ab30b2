"""LVM commands against real LVM metadata on a loop device (device-mapper activation is off:
this host has no device-mapper; see conftest.py). The lab creates active LVs."""

import subprocess

import pytest

from kisscluster import lvm


def test_lvcreate_makes_exactly_the_size_and_lvs_reads_it_back(node1):
    vg = node1.vg
    for name, size in (("web_root", 64 << 20), ("web_data", 12 << 20)):
        subprocess.run(
            lvm.lvcreate_command("lvcreate", "vg0", name, size),
            env=vg.env,
            capture_output=True,
            check=True,
            timeout=60,
        )
    assert vg.lvs() == {"web_root": 64 << 20, "web_data": 12 << 20}


def test_unreadable_lvs_output_is_an_error_that_shows_it():
    with pytest.raises(lvm.LvmError, match="cannot read the output of lvs"):
        lvm.parse_lvs("  Volume group vg0 not found\n")


def test_lv_names_join_validated_parts_only():
    assert lvm.lv_name("db", "data") == "db_data"
    # an adopted VM keeps the original's name; disk names have no '_', so the join stays unique
    assert lvm.lv_name("Old_Web", "root") == "Old_Web_root"
    for vm, disk in (("db/x", "data"), ("../db", "data"), ("db", "x_data"), ("db", "Data")):
        with pytest.raises(ValueError):
            lvm.lv_name(vm, disk)


def test_a_missing_volume_group_fails_each_vm_with_lvms_message(node1, site):
    cluster = site / "pillar/cluster.yml"
    cluster.write_text(cluster.read_text().replace("volume_group: vg0", "volume_group: vgmissing"))
    results = node1.apply("kiss.vms")
    skeleton = results["kiss-vms-disks-web-lvs-and-drbd"]
    assert skeleton["result"] is False
    assert skeleton["comment"].startswith("VM web: ")
    assert 'Volume group "vgmissing" not found' in skeleton["comment"]
    assert results["kiss-vms-config-web-qemu-parameters"]["result"] is True
