"""A cache written by the original KISScluster inventory is read and extended, minors intact."""

import pytest
import yaml

from kisscluster import drbd, inventory, pillar

pytestmark = pytest.mark.fast

ORIGINAL = """\
vm:
  - name: web
    primary_on: node1
    drbd_minor: 0
    disabled: false
    more_disks: []
  - name: db
    primary_on: node2
    drbd_minor: 8
    disabled: false
    more_disks:
      - name: data
        drbd_volume: 1
        drbd_minor: 9
  - name: old
    primary_on: node1
    drbd_minor: 4
    disabled: true
active_vm:
  - name: web
    primary_on: node1
    drbd_minor: 0
    disabled: false
  - name: db
    primary_on: node2
    drbd_minor: 8
    disabled: false
    more_disks:
      - name: data
        drbd_volume: 1
        drbd_minor: 9
disabled_vm:
  - name: old
    primary_on: node1
    drbd_minor: 4
    disabled: true
"""


def test_original_cache_keeps_every_minor_and_extends(example_site):
    cache = example_site / "vm-config" / "example.yml"
    cache.write_text(ORIGINAL)
    db = example_site / "vm-config" / "example" / "db.yml"
    spec = yaml.safe_load(db.read_text())
    spec["more_disks"] = [{"name": "data", "size": "32M"}, {"name": "logs", "size": "16M"}]
    db.write_text(yaml.safe_dump(spec))

    result = inventory.run(example_site)

    _, new = inventory.read(example_site)
    assert result.allocated == ["mail"]
    assert result.added_disks == ["db/logs"]
    assert new.vms["web"].drbd_minor == 0
    assert new.vms["old"].drbd_minor == 4 and new.vms["old"].disabled
    assert new.vms["db"].drbd_minor == 8
    assert {d.name: d.minor for d in new.vms["db"].more_disks} == {"data": 9, "logs": 10}
    assert new.vms["mail"].drbd_minor == 12
    assert new.next_minor == 16
    # Written in the new format, read back the same.
    assert "next_minor: 16" in cache.read_text()
    assert not inventory.run(example_site).changed


def test_original_cache_with_name_lists(example_site):
    cache = example_site / "vm-config" / "example.yml"
    cache.write_text(
        yaml.safe_dump(
            {
                "vm": [
                    {"name": "web", "drbd_minor": 4, "primary_on": "node1"},
                    {"name": "gone", "drbd_minor": 20, "primary_on": "node2"},
                ],
                "active_vm": ["web"],
                "disabled_vm": ["gone"],
            }
        )
    )

    inventory.run(example_site)

    _, new = inventory.read(example_site)
    assert new.vms["gone"].disabled and new.vms["gone"].drbd_minor == 20
    assert new.vms["web"].drbd_minor == 4
    assert [new.vms[n].drbd_minor for n in ("db", "mail")] == [24, 28]


ORIGINAL_WITH_WORDS = """\
vm:
  - name: no
    primary_on: node1
    drbd_minor: 0
  - name: off
    primary_on: node1
    drbd_minor: 4
    disabled: true
active_vm:
  - name: no
    primary_on: node1
    drbd_minor: 0
disabled_vm:
  - name: off
    primary_on: node1
    drbd_minor: 4
    disabled: true
"""


def test_vms_named_like_yaml_booleans_stay_names(example_site):
    # The original's Perl YAML writes names bare; YAML 1.1 reads `no` and `off` as booleans.
    (example_site / "vm-config" / "example.yml").write_text(ORIGINAL_WITH_WORDS)
    vm_dir = example_site / "vm-config" / "example"
    spec = yaml.safe_load((vm_dir / "web.yml").read_text())
    (vm_dir / "no.yml").write_text(yaml.safe_dump({**spec, "name": "XX"}).replace("XX", "no"))

    inventory.run(example_site)

    _, cache = inventory.read(example_site)
    assert cache.vms["no"].drbd_minor == 0 and not cache.vms["no"].disabled
    assert cache.vms["off"].drbd_minor == 4 and cache.vms["off"].disabled


def test_the_original_cache_is_kept_beside_the_converted_one(example_site, capsys):
    from kisscluster import cli_inventory

    cache = example_site / "vm-config" / "example.yml"
    cache.write_text(ORIGINAL)
    assert cli_inventory.main(["--site", str(example_site)]) == 0
    said = capsys.readouterr().out
    copy = example_site / "vm-config" / "example.yml.original"
    assert copy.read_text() == ORIGINAL
    assert "its copy is kept in vm-config/example.yml.original" in said
    assert "vms" in yaml.safe_load(cache.read_text())
    copy.write_text("# an operator's note: kept as it is\n")
    cache.write_text(ORIGINAL)  # converted again: the existing copy is never overwritten
    inventory.run(example_site)
    assert copy.read_text() == "# an operator's note: kept as it is\n"


def test_a_dry_run_names_the_copy_but_writes_neither(example_site):
    cache = example_site / "vm-config" / "example.yml"
    cache.write_text(ORIGINAL)
    result = inventory.run(example_site, dry_run=True)
    assert result.original_kept == "vm-config/example.yml.original"
    assert cache.read_text() == ORIGINAL
    assert not (example_site / "vm-config" / "example.yml.original").exists()


ORIGINAL_LEGACY_NAME = """\
vm:
  - name: Mail_Server
    primary_on: node1
    drbd_minor: 0
active_vm:
  - name: Mail_Server
    primary_on: node1
    drbd_minor: 0
disabled_vm: []
"""


def test_an_adopted_vm_keeps_its_legacy_name_and_a_new_vm_follows_todays_rules(example_site):
    (example_site / "vm-config" / "example.yml").write_text(ORIGINAL_LEGACY_NAME)
    vm_dir = example_site / "vm-config" / "example"
    spec = yaml.safe_load((vm_dir / "mail.yml").read_text())
    (vm_dir / "Mail_Server.yml").write_text(yaml.safe_dump({**spec, "name": "Mail_Server"}))
    inventory.run(example_site)
    kiss = pillar.build(example_site)
    legacy = kiss["vms"]["Mail_Server"]
    assert legacy["drbd_minor"] == 0
    assert [d["lv"] for d in legacy["disks"]] == ["Mail_Server_root"]
    assert "resource Mail_Server {" in drbd.render_resource(
        legacy, kiss["cluster"]["members"], "vg0"
    )

    (vm_dir / "New_Server.yml").write_text(yaml.safe_dump({**spec, "name": "New_Server"}))
    with pytest.raises(inventory.InventoryError) as error:
        inventory.run(example_site)
    assert "vm-config/example/New_Server.yml: name: VM name 'New_Server' is not a safe" in str(
        error.value
    )
