"""kiss-adopt on a site laid out as the original KISScluster keeps it (`group_vars/`, VM files
and the Perl inventory's cache): the new site keeps every minor, name, port and MAC, and nothing
is written when the inventory refuses the result."""

import textwrap

import pytest
import yaml

from kisscluster import adopt, inventory, pillar

pytestmark = pytest.mark.fast

GROUP_VARS = """\
# group vars for "cluster1" cluster
cluster_name: cluster1
cluster_members:
  - name: node1
    prod_addr: 192.168.123.17
    stor_addr: 192.168.124.17
  - name: node2
    prod_addr: 192.168.123.18
    stor_addr: 192.168.124.18
prod_if: eth0
stor_if: eth1
ping_addr: 192.168.123.2
vmvg_part: /dev/md1
vnc_keyboard_lang: de
mac_addr_base: 02:00:c0:ff:ee
"""

VMS = {
    "web": "template: linux\nprimary_on: node1\n",
    "Mail_Server": "template: linux\nprimary_on: node2\n",
    "no": "template: virtio-blk\nprimary_on: node1\n",
    "fw": "template: gaia\nprimary_on: node2\n",
    "old": "template: linux\nprimary_on: node1\ndisabled: true\n",
}

# As the Perl inventory dumps it: `vm`, then `active_vm` and `disabled_vm`, names bare.
CACHE = """\
---
active_vm:
  - drbd_minor: 0
    name: web
  - drbd_minor: 4
    name: Mail_Server
  - drbd_minor: 8
    name: no
  - drbd_minor: 12
    name: fw
disabled_vm:
  - disabled: true
    drbd_minor: 16
    name: old
vm:
  - drbd_minor: 0
    more_disks:
      - drbd_minor: 1
        drbd_volume: 1
        name: var
        size: 100g
    name: web
  - drbd_minor: 4
    name: Mail_Server
  - drbd_minor: 8
    name: no
  - drbd_minor: 12
    name: fw
  - disabled: true
    drbd_minor: 16
    name: old
"""


@pytest.fixture
def original(tmp_path):
    source = tmp_path / "original"
    (source / "group_vars").mkdir(parents=True)
    (source / "group_vars" / "cluster1.yml").write_text(GROUP_VARS)
    vm_dir = source / "vm-config" / "cluster1"
    vm_dir.mkdir(parents=True)
    for name, keys in VMS.items():
        disks = "more_disks:\n  - name: var\n    size: 100G\n" if name == "web" else ""
        (vm_dir / f"{name}.yml").write_text(
            f"name: {name}\nnetwork_bridge: br0\nram_megs: 512\nroot_disk_size: 10G\ncpus: 2\n"
            + keys
            + disks
        )
    (source / "vm-config" / "cluster1.yml").write_text(CACHE)
    return source


def test_the_adopted_site_keeps_minors_names_ports_and_macs(original, tmp_path):
    site = tmp_path / "site"
    result = adopt.adopt(original, site).result
    assert result.allocated == []  # every VM keeps what the original gave it
    assert result.original_kept == "vm-config/cluster1.yml.original"
    inventory.run(site)
    kiss = pillar.build(site)
    assert kiss["cluster"]["volume_group"] == "vmvg"
    assert set(kiss["vms"]) == {"web", "Mail_Server", "no", "fw"}
    assert set(kiss["disabled_vms"]) == {"old"}
    web, mail = kiss["vms"]["web"], kiss["vms"]["Mail_Server"]
    assert (web["drbd_port"], web["mac"], web["vnc_display"]) == (7788, "02:00:c0:ff:ee:00", 0)
    assert [d["lv_path"] for d in web["disks"]] == ["/dev/vmvg/web_root", "/dev/vmvg/web_var"]
    assert [d["minor"] for d in web["disks"]] == [0, 1]
    assert (mail["drbd_port"], mail["disks"][0]["lv"]) == (7792, "Mail_Server_root")
    assert kiss["vms"]["no"]["drbd_minor"] == 8
    assert (site / "vm-config" / "cluster1.yml.original").read_text() == CACHE
    cluster = yaml.safe_load((site / "pillar" / "cluster.yml").read_text())["cluster"]
    assert (cluster["keyboard"], cluster["default_bridge"]) == ("de", "br0")
    # the original's devices for each template the VMs use (tests/states/test_original_templates.py)
    own = sorted(p.name for p in (site / "vm-templates").iterdir())
    assert own == ["gaia.conf.jinja", "linux.conf.jinja", "virtio-blk.conf.jinja"]


def test_a_template_of_the_sites_own_is_kept(original, tmp_path):
    site = tmp_path / "site"
    (site / "vm-templates").mkdir(parents=True)
    (site / "vm-templates" / "gaia.conf.jinja").write_text("QEMU_ARGS=-name {{ name }}\n")
    adopt.adopt(original, site)
    assert (site / "vm-templates" / "gaia.conf.jinja").read_text() == "QEMU_ARGS=-name {{ name }}\n"


def test_a_template_nobody_has_is_named_and_nothing_is_written(original, tmp_path, capsys):
    (original / "vm-config" / "cluster1" / "bsd.yml").write_text(
        "name: bsd\nnetwork_bridge: br0\nram_megs: 512\nroot_disk_size: 10G\ncpus: 2\n"
        "template: bsd\nprimary_on: node1\n"
    )
    site = tmp_path / "site"
    assert adopt.main([str(original), "--site", str(site)]) == 1
    said = capsys.readouterr().err
    assert "vm-config/cluster1/bsd.yml: template" in said and "'bsd'" in said
    assert not site.exists()


def test_an_existing_site_is_never_overwritten(original, tmp_path):
    site = tmp_path / "site"
    (site / "pillar").mkdir(parents=True)
    (site / "pillar" / "cluster.yml").write_text("cluster: {}\n")
    with pytest.raises(adopt.AdoptError, match="exist already"):
        adopt.adopt(original, site)
    assert (site / "pillar" / "cluster.yml").read_text() == "cluster: {}\n"


def test_a_source_that_is_not_an_original_site_is_refused(tmp_path):
    (tmp_path / "group_vars").mkdir()
    (tmp_path / "group_vars" / "all.yml").write_text(textwrap.dedent("ntp: pool.ntp.org\n"))
    with pytest.raises(adopt.AdoptError, match="no cluster_members"):
        adopt.adopt(tmp_path, tmp_path / "site")
