"""The fixture generator (tests/original_site.py) writes what the original KISScluster writes:
outputs checked against the original's templates rendered by hand (cmock/kisscluster:
node/roles/kisscluster-vms/templates/drbd-vm.res.j2 and vm.conf.linux.j2, Ansible's
trim_blocks; node/roles/kisscluster-vms/helpers/kisscluster-vm-inventory and YAML.pm's dump),
and a cache kisscluster's inventory reads."""

import pytest
import yaml
from original_site import MANAGED, Disk, Site, Vm

from kisscluster.inventory import cache

pytestmark = pytest.mark.fast

MEMBERS = [
    {"name": "node1", "prod_addr": "192.168.123.17", "stor_addr": "192.168.124.17"},
    {"name": "node2", "prod_addr": "192.168.123.18", "stor_addr": "192.168.124.18"},
]
SITE = Site(
    "cluster1",
    MEMBERS,
    "192.168.123.2",
    [
        Vm("vm1", "node1", "linux", "10G", (Disk("var", "100G"),), cpus=2),
        Vm("old", "node2", "gaia", "5G", disabled="true"),
    ],
)
RES = f"""\
# {MANAGED.format("drbd-vm.res.j2")}
#
# Guest config for vm1

resource vm1 {{
  volume 0 {{
    disk /dev/vmvg/vm1_root;
    device /dev/drbd_vm1_root minor 0;
    meta-disk internal;
  }}

  volume 1 {{
    disk /dev/vmvg/vm1_var;
    device /dev/drbd_vm1_var minor 1;
    meta-disk internal;
  }}

  on node1 {{
    address 192.168.124.17:7788;
  }}

  on node2 {{
    address 192.168.124.18:7788;
  }}

}}

# {MANAGED.format("drbd-vm.res.j2")}
"""
# The original template leaves a space after the last drive option.
SPACE = " "
CONF = f"""\
# {MANAGED.format("vm.conf.linux.j2")}
# Configuration for vm@.service for VM vm1
SMP=2
RAM=512
BRIDGE=br0
MACADDR=02:00:c0:ff:ee:0
VNCDISPLAY=0
KEYBOARDLANG=de
RTC=utc
DRIVES=-device virtio-scsi-pci,id=scsi -device scsi-hd,drive=sda \\
  -drive file=/dev/drbd/by-res/vm1/0,id=sda,if=none,aio=native,discard=on \\
  -device scsi-hd,drive=sdb \\
  -drive file=/dev/drbd/by-res/vm1/1,id=sdb,if=none,aio=native,discard=on \\
  -drive index=0,media=cdrom{SPACE}
# {MANAGED.format("vm.conf.linux.j2")}
"""
CACHE = """\
---
active_vm:
  - &1
    cpus: 2
    drbd_minor: 0
    more_disks:
      - drbd_minor: 1
        drbd_volume: 1
        name: var
        size: 100g
    name: vm1
    network_bridge: br0
    primary_on: node1
    ram_megs: 512
    root_disk_size: 10g
    template: linux
disabled_vm:
  - &2
    cpus: 1
    disabled: true
    drbd_minor: 4
    more_disks: []
    name: old
    network_bridge: br0
    primary_on: node2
    ram_megs: 512
    root_disk_size: 5g
    template: gaia
vm:
  - *1
  - *2
"""


def test_node_files_are_the_original_templates_rendered():
    files = SITE.node_files()
    assert files["/etc/drbd.d/vm1.res"] == (RES, 0o444)
    assert files["/etc/vm/vm1.conf"] == (CONF, 0o440)
    assert "/etc/drbd.d/old.res" in files  # disabled later: the role never removed its files
    unit = "/etc/systemd/system/vm@.service"
    assert SITE.node_links("node2") == {
        "/etc/systemd/system/all-vms.target.wants/vm@vm1.service": unit,
        "/etc/systemd/system/primary-vms.target.conflicts/vm@vm1.service": unit,
    }
    assert SITE.lvs() == {"vm1_root": "10g", "vm1_var": "100g", "old_root": "5g"}


def test_the_cache_is_yaml_pm_s_dump_and_kisscluster_reads_it(tmp_path):
    assert SITE.cache() == CACHE
    assert yaml.safe_load(CACHE)["vm"][1]["name"] == "old"  # the aliases resolve
    path = tmp_path / "cluster1.yml"
    path.write_text(CACHE)
    records = cache.load_cache(path, "vm-config/cluster1.yml").vms
    assert (records["vm1"].drbd_minor, records["old"].disabled) == (0, True)
