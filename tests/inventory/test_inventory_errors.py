"""Bad input stops the inventory with a message naming file and field, and loses nothing."""

from pathlib import Path

import pytest
import yaml

from kisscluster import inventory

pytestmark = pytest.mark.fast

WEB = "vm-config/example/web.yml"
DB = "vm-config/example/db.yml"
CLUSTER = "pillar/cluster.yml"


def edit_yaml(site: Path, relative: str, change) -> None:
    path = site / relative
    data = yaml.safe_load(path.read_text())
    change(data)
    path.write_text(yaml.safe_dump(data))


def set_key(key, value):
    return lambda data: data.__setitem__(key, value)


def drop_key(key):
    return lambda data: data.pop(key)


def set_cluster_key(key, value):
    return lambda data: data["cluster"].__setitem__(key, value)


# (case id, file edited, edit, file named in the message, field named, words in the message)
CASES = [
    ("unparsable-yaml", WEB, "name: [web\n", WEB, "(file)", "not valid YAML at line"),
    ("not-a-mapping", WEB, "- web\n", WEB, "(file)", "must hold a mapping"),
    ("unknown-key", WEB, set_key("ram_mgs", 64), WEB, "ram_mgs", "did you mean 'ram_megs'"),
    ("missing-field", WEB, drop_key("cpus"), WEB, "cpus", "is missing"),
    ("unsafe-name", WEB, set_key("name", "Web_1"), WEB, "name", "not a safe identifier"),
    ("name-not-stem", WEB, set_key("name", "www"), WEB, "name", "must equal the file name"),
    ("duplicate-name", DB, set_key("name", "web"), DB, "name", "must equal the file name 'db'"),
    ("long-name", WEB, set_key("name", "w" * 33), WEB, "name", "longer than 32"),
    ("unknown-member", WEB, set_key("primary_on", "node3"), WEB, "primary_on", "node1, node2"),
    ("bad-size", WEB, set_key("root_disk_size", "10Q"), WEB, "root_disk_size", "not a size"),
    ("tiny-size", WEB, set_key("root_disk_size", "512k"), WEB, "root_disk_size", "smaller"),
    ("fraction-size", WEB, set_key("root_disk_size", "1.3b"), WEB, "root_disk_size", "whole"),
    ("ram-not-number", WEB, set_key("ram_megs", "lots"), WEB, "ram_megs", "whole number"),
    ("cpus-bool", WEB, set_key("cpus", True), WEB, "cpus", "whole number"),
    ("cpus-zero", WEB, set_key("cpus", 0), WEB, "cpus", "from 1"),
    ("bad-bridge", WEB, set_key("network_bridge", "br 0"), WEB, "network_bridge", "interface"),
    ("unknown-template", WEB, set_key("template", "linx"), WEB, "template", "did you mean"),
    (
        "too-many-disks",
        WEB,
        set_key("more_disks", [{"name": n, "size": "8M"} for n in ("a", "b", "c", "d")]),
        WEB,
        "more_disks",
        "at most 3",
    ),
    (
        "duplicate-disk",
        WEB,
        set_key("more_disks", [{"name": "a", "size": "8M"}, {"name": "a", "size": "8M"}]),
        WEB,
        "more_disks[1].name",
        "listed twice",
    ),
    (
        "disk-named-root",
        WEB,
        set_key("more_disks", [{"name": "root", "size": "8M"}]),
        WEB,
        "more_disks[0].name",
        "'root'",
    ),
    (
        "disk-with-underscore",
        WEB,
        set_key("more_disks", [{"name": "my_data", "size": "8M"}]),
        WEB,
        "more_disks[0].name",
        "no '_'",
    ),
    (
        "disk-unknown-key",
        WEB,
        set_key("more_disks", [{"name": "a", "sise": "8M"}]),
        WEB,
        "more_disks[0].sise",
        "did you mean 'size'",
    ),
    (
        "disk-removed-silently",
        DB,
        set_key("more_disks", [{"name": "data", "size": "32M"}]),
        DB,
        "more_disks",
        "'logs' (DRBD minor 2) is gone",
    ),
    (
        "remove-unknown-disk",
        DB,
        set_key("remove_disks", ["scratch"]),
        DB,
        "remove_disks",
        "no disk 'scratch'",
    ),
    (
        "remove-disk-still-listed",
        DB,
        set_key("remove_disks", ["logs"]),
        DB,
        "remove_disks",
        "still in more_disks",
    ),
    ("cluster-unknown-key", CLUSTER, set_cluster_key("pingaddr", "x"), CLUSTER, "cluster.pingaddr",
     "did you mean 'ping_addr'"),
    ("cluster-bad-address", CLUSTER, set_cluster_key("ping_addr", "switch"), CLUSTER,
     "cluster.ping_addr", "IP address"),
    ("cluster-bad-mac", CLUSTER, set_cluster_key("mac_prefix", "52:54:00"), CLUSTER,
     "cluster.mac_prefix", "4 hex octets"),
    ("cluster-multicast-mac", CLUSTER, set_cluster_key("mac_prefix", "53:54:00:4b"), CLUSTER,
     "cluster.mac_prefix", "multicast"),
    ("cluster-one-member", CLUSTER,
     lambda d: d["cluster"].__setitem__("members", d["cluster"]["members"][:1]), CLUSTER,
     "cluster.members", "exactly two"),
    ("cluster-same-stor-addr", CLUSTER,
     lambda d: d["cluster"]["members"][1].__setitem__("stor_addr", "10.99.0.1"), CLUSTER,
     "cluster.members[1].stor_addr", "must differ"),
    ("cluster-missing-vg", CLUSTER, lambda d: d["cluster"].pop("volume_group"), CLUSTER,
     "cluster.volume_group", "is missing"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("relative", "edit", "named_file", "named_field", "words"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_bad_input_names_file_and_field_and_keeps_cache(
    example_site, relative, edit, named_file, named_field, words
):
    inventory.run(example_site)
    cache = example_site / "vm-config" / "example.yml"
    before = cache.read_bytes()
    if isinstance(edit, str):
        (example_site / relative).write_text(edit)
    else:
        edit_yaml(example_site, relative, edit)

    with pytest.raises(inventory.InventoryError) as caught:
        inventory.run(example_site)

    message = str(caught.value)
    assert f"{named_file}: {named_field}: " in message
    assert words in message
    assert "nothing was written" in message
    assert cache.read_bytes() == before
    assert sorted(p.name for p in cache.parent.iterdir()) == [
        "EXAMPLE.YML",
        "example",
        "example.yml",
    ]


def test_every_problem_is_listed_at_once(example_site):
    edit_yaml(example_site, WEB, set_key("cpus", "two"))
    edit_yaml(example_site, DB, set_key("primary_on", "nodeX"))

    with pytest.raises(inventory.InventoryError) as caught:
        inventory.run(example_site)

    fields = {(p.file, p.field) for p in caught.value.problems}
    assert fields == {(WEB, "cpus"), (DB, "primary_on")}
    assert not (example_site / "vm-config" / "example.yml").exists()


def test_a_file_not_ending_in_yml_is_no_vm(example_site):
    (example_site / "vm-config" / "example" / "web.yml").rename(
        example_site / "vm-config" / "example" / "web.yml.off"
    )
    (example_site / "vm-config" / "example" / "junk.yml~").write_text("not: [yaml")

    result = inventory.run(example_site)

    assert result.allocated == ["db", "mail"]


@pytest.mark.parametrize("prefix", ["52:54:00:4b:0f", "52:54:00:4b"])
def test_exhausted_minors_are_an_error_not_a_wrap_around(example_site, prefix):
    edit_yaml(example_site, CLUSTER, set_cluster_key("mac_prefix", prefix))
    limit = 256 if prefix.count(":") == 4 else 4096
    cache = example_site / "vm-config" / "example.yml"
    cache.write_text(
        yaml.safe_dump(
            {
                "cluster": "example",
                "next_minor": limit - 4,
                "vms": [{"name": "old", "drbd_minor": limit - 8, "disabled": True}],
            }
        )
    )
    before = cache.read_bytes()

    with pytest.raises(inventory.InventoryError) as caught:
        inventory.run(example_site)

    # One block is left: db (first by name) gets it, mail and web find none.
    assert f"no DRBD minors left for a new VM: all {limit} are assigned" in str(caught.value)
    assert {p.file for p in caught.value.problems} == {
        "vm-config/example/mail.yml",
        "vm-config/example/web.yml",
    }
    assert cache.read_bytes() == before
