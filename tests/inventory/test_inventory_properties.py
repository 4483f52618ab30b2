"""Property tests: random histories of VM files never move, reuse or share a DRBD minor."""

import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kisstest import copy_example_site

from kisscluster import inventory, pillar

pytestmark = pytest.mark.fast

VM_NAMES = ("a", "b", "c", "d", "e")
DISK_NAMES = ("x", "y", "z", "w")

operations = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.sampled_from(VM_NAMES)),
        st.tuples(st.just("rename_away"), st.sampled_from(VM_NAMES)),
        st.tuples(st.just("add_disk"), st.sampled_from(VM_NAMES), st.sampled_from(DISK_NAMES)),
        st.tuples(st.just("remove_disk"), st.sampled_from(VM_NAMES), st.sampled_from(DISK_NAMES)),
        st.tuples(st.just("nuke"), st.sampled_from(VM_NAMES)),
    ),
    min_size=1,
    max_size=25,
)


class History:
    """The VM files of a site and what the cache has said about every VM, run after run."""

    def __init__(self, site: Path):
        self.site = site
        self.directory = site / "vm-config" / "example"
        for path in self.directory.glob("*.yml"):
            path.unlink()
        self.specs: dict[str, dict] = {}
        self.parked: dict[str, dict] = {}
        self.owner_of_minor: dict[int, tuple[str, int, str]] = {}
        self.minors_of: dict[str, dict[str, int]] = {}
        self.generation: dict[str, int] = {}

    def write(self, name: str) -> None:
        (self.directory / f"{name}.yml").write_text(yaml.safe_dump(self.specs[name]))

    def apply(self, op: tuple) -> None:
        kind, name = op[0], op[1]
        if kind == "add":
            if name in self.parked:
                self.specs[name] = self.parked.pop(name)
            elif name not in self.specs:
                self.specs[name] = {
                    "name": name,
                    "primary_on": "node1",
                    "network_bridge": "br0",
                    "ram_megs": 64,
                    "cpus": 1,
                    "root_disk_size": "8M",
                    "more_disks": [],
                    "remove_disks": [],
                }
            self.write(name)
        elif kind == "rename_away" and name in self.specs:
            self.parked[name] = self.specs.pop(name)
            (self.directory / f"{name}.yml").rename(self.directory / f"{name}.yml.off")
        elif kind == "add_disk" and name in self.specs:
            spec = self.specs[name]
            if all(d["name"] != op[2] for d in spec["more_disks"]):
                spec["more_disks"].append({"name": op[2], "size": "4M"})
                spec["remove_disks"] = [d for d in spec["remove_disks"] if d != op[2]]
            self.write(name)
        elif kind == "remove_disk" and name in self.specs:
            spec = self.specs[name]
            if any(d["name"] == op[2] for d in spec["more_disks"]):
                spec["more_disks"] = [d for d in spec["more_disks"] if d["name"] != op[2]]
                spec["remove_disks"].append(op[2])
            self.write(name)
        elif kind == "nuke" and name in self.parked:
            inventory.forget(self.site, name)
            del self.parked[name]
            self.minors_of.pop(name, None)
            self.generation[name] = self.generation.get(name, 0) + 1

    def run_and_check(self) -> None:
        cache_file = self.site / "vm-config" / "example.yml"
        before = cache_file.read_bytes() if cache_file.exists() else None
        try:
            inventory.run(self.site)
        except inventory.InventoryError:
            after = cache_file.read_bytes() if cache_file.exists() else None
            assert after == before, "a refused run changed the cache"
            return
        _, cache = inventory.read(self.site)
        seen: set[int] = set()
        for name, record in cache.vms.items():
            for minor in record.minors():
                assert minor not in seen, f"minor {minor} is held twice"
                seen.add(minor)
            retired = {d.minor for d in record.retired_disks}
            known = self.minors_of.setdefault(name, {})
            for disk in record.disks():
                key = (name, self.generation.get(name, 0), disk.name)
                if known.get(disk.name, disk.minor) != disk.minor:
                    assert known[disk.name] in retired, f"{key} moved off a live minor"
                known[disk.name] = disk.minor
                owner = self.owner_of_minor.setdefault(disk.minor, key)
                assert owner == key, f"minor {disk.minor} of {owner} was reused for {key}"
        assert set(cache.vms) == set(self.specs) | set(self.parked)
        assert cache.next_minor > max(self.owner_of_minor, default=-1)
        kiss = pillar.build(self.site)
        everything = list(kiss["vms"].values()) + list(kiss["disabled_vms"].values())
        assert len({vm["vnc_display"] for vm in everything}) == len(everything)
        assert len({vm["mac"] for vm in everything}) == len(everything)
        assert set(kiss["vms"]) == set(self.specs)


@settings(
    max_examples=60,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(operations)
def test_minors_are_unique_stable_and_never_reused(ops):
    with tempfile.TemporaryDirectory() as tmp:
        history = History(copy_example_site(Path(tmp) / "site"))
        for op in ops:
            history.apply(op)
            history.run_and_check()

        # The same files and the same old cache give the same bytes.
        twin = Path(tmp) / "twin"
        shutil.copytree(history.site, twin)
        inventory.run(history.site)
        inventory.run(twin)
        cache = Path("vm-config") / "example.yml"
        assert (history.site / cache).read_bytes() == (twin / cache).read_bytes()
