"""The exact reader of the cache: it accepts only the bytes the inventory itself writes."""

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from kisscluster import inventory
from kisscluster.inventory import canonical
from kisscluster.inventory.cache import Cache, Disk, VmRecord, dump_cache

pytestmark = pytest.mark.fast

# Words YAML reads as something else than a string, or writes quoted, beside ordinary ones.
TRICKY = ("yes", "No", "on", "null", "true", "1", "1.5", "0x10", "1_0", "2024-01-01", "1e3", "-a")
words = st.one_of(
    st.sampled_from(TRICKY),
    st.from_regex(r"[a-z0-9][a-z0-9._-]{0,8}", fullmatch=True),
    st.text(max_size=6),
)
numbers = st.one_of(st.integers(0, 5000), st.booleans())


@st.composite
def caches(draw):
    cache = Cache(next_minor=draw(st.integers(0, 4096)))
    for name in draw(st.lists(words, max_size=4, unique=True)):
        record = VmRecord(name, draw(st.integers(0, 4095)), draw(st.booleans()))
        for key in ("primary_on", "template", "network_bridge", "root_disk_size"):
            setattr(record, key, draw(st.none() | words))
        record.cpus = draw(st.none() | numbers)
        record.ram_megs = draw(st.none() | numbers)
        for disks in (record.more_disks, record.retired_disks):
            for volume in range(draw(st.integers(0, 2))):
                disks.append(
                    Disk(draw(words), volume, draw(st.integers(0, 9)), draw(st.none() | words))
                )
        cache.vms[name] = record
    return cache


CLUSTER = inventory.Cluster("example", (), "", "", "", "", "", "", {}, {})


def assert_exact_or_refused(text: str) -> None:
    data = canonical.read(text)
    if data is not None:
        expected = canonical.HEADER + yaml.safe_dump(
            data, sort_keys=False, default_flow_style=False
        )
        assert text == expected
        assert data == yaml.safe_load(text)


@settings(max_examples=300, deadline=None)
@given(caches())
def test_what_it_accepts_is_byte_for_byte_what_yaml_writes(cache):
    assert_exact_or_refused(dump_cache(CLUSTER, cache))


@settings(max_examples=300, deadline=None)
@given(caches(), st.data())
def test_an_edited_cache_is_refused_or_still_exact(cache, data):
    text = dump_cache(CLUSTER, cache)
    at = data.draw(st.integers(0, len(text)))
    cut = data.draw(st.integers(0, 3))
    inserted = data.draw(st.sampled_from(["", " ", "'", '"', "\n", "-", ":", "#", "0", "a", "~"]))
    edited = text[:at] + inserted + text[at + cut :]
    if data.draw(st.booleans()):
        edited = edited.replace("'", "")
    assert_exact_or_refused(edited)


@pytest.mark.parametrize(
    ("written", "edited"),
    [
        ("drbd_minor: 4", "drbd_minor: 04"),
        ("next_minor: 12", "next_minor: 0xc"),
        ("disabled: false", "disabled: False"),
        ("primary_on: node1", "primary_on: on"),
        ("template: linux", "template: 'linux'"),
        ("name: web", "name:  web"),
        ("  more_disks: []", "  more_disks: [ ]"),
    ],
)
def test_any_other_spelling_is_left_to_yaml(example_site, written, edited):
    inventory.run(example_site)
    text = (example_site / "vm-config" / "example.yml").read_text()
    assert written in text

    assert canonical.read(text.replace(written, edited, 1)) is None


def test_the_caches_the_inventory_writes_are_read_exactly(example_site):
    inventory.run(example_site)
    text = (example_site / "vm-config" / "example.yml").read_text()

    assert canonical.read(text) == yaml.safe_load(text)


def test_a_cache_in_another_layout_is_rewritten_in_the_inventory_s(example_site):
    inventory.run(example_site)
    cache = example_site / "vm-config" / "example.yml"
    written = cache.read_text()
    cache.write_text(written.replace("name: web", "name: 'web'"))

    assert inventory.run(example_site, dry_run=True).changed
    assert inventory.run(example_site).changed
    assert cache.read_text() == written
    assert not inventory.run(example_site).changed
