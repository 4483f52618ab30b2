"""The allocation cache `vm-config/<cluster>.yml`: its records, reading either format, writing.

The cache is the committed record of every VM the cluster has known and of the DRBD minors it
owns. It is read in the format kiss-inventory writes or in the original KISScluster one (`vm`,
`active_vm`, `disabled_vm`), and written only in the former: atomically, under a lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kisscluster import names
from kisscluster.inventory import canonical
from kisscluster.inventory.errors import InventoryError, Problem, Problems
from kisscluster.inventory.record import Record
from kisscluster.inventory.schema import VM_CONFIG, YAML_DUMPER, Cluster, TextLoader, parse_yaml
from kisscluster.inventory.values import (
    MAX_EXTRA_DISKS,
    MINOR_LIMIT_WIDE,
    MINORS_PER_VM,
    boolean,
    normalize_size,
    whole_number,
)

CACHE_HEADER = canonical.HEADER


class Disk(Record):
    __slots__ = ("minor", "name", "size", "volume")

    def __init__(self, name: str, volume: int, minor: int, size: str | None = None) -> None:
        self.name = name
        self.volume = volume
        self.minor = minor
        self.size = size

    def copy(self) -> Disk:
        return Disk(self.name, self.volume, self.minor, self.size)


class VmRecord(Record):
    """One VM as the cache knows it; the settings are None until a VM file gave them."""

    __slots__ = (
        "cpus",
        "disabled",
        "drbd_minor",
        "install_iso",
        "more_disks",
        "name",
        "network_bridge",
        "primary_on",
        "ram_megs",
        "retired_disks",
        "root_disk_size",
        "template",
    )

    def __init__(self, name: str, drbd_minor: int, disabled: bool = False) -> None:
        self.name = name
        self.drbd_minor = drbd_minor
        self.disabled = disabled
        self.primary_on: str | None = None
        self.template: str | None = None
        self.cpus: int | None = None
        self.ram_megs: int | None = None
        self.network_bridge: str | None = None
        self.root_disk_size: str | None = None
        self.install_iso: str | None = None
        self.more_disks: list[Disk] = []
        self.retired_disks: list[Disk] = []

    def minors(self) -> list[int]:
        return [self.drbd_minor] + [d.minor for d in self.more_disks + self.retired_disks]

    def disks(self) -> list[Disk]:
        """Root (volume 0) and the extra disks, in volume order."""
        root = Disk("root", 0, self.drbd_minor, self.root_disk_size)
        return [root, *sorted(self.more_disks, key=lambda d: d.volume)]

    def copy(self) -> VmRecord:
        """A copy that shares no disk with this record."""
        twin = VmRecord(self.name, self.drbd_minor)
        for name in self.__slots__:
            setattr(twin, name, getattr(self, name))
        twin.more_disks = [d.copy() for d in self.more_disks]
        twin.retired_disks = [d.copy() for d in self.retired_disks]
        return twin


class Cache(Record):
    __slots__ = ("next_minor", "vms")

    def __init__(self, next_minor: int = 0, vms: dict[str, VmRecord] | None = None) -> None:
        self.next_minor = next_minor
        self.vms: dict[str, VmRecord] = {} if vms is None else vms


def cache_file(cluster_name: str) -> str:
    """The cache's path in the site repository (its one home: git, the inventory, kiss-adopt)."""
    return f"{VM_CONFIG}/{cluster_name}.yml"


def cache_path(site: Path, cluster: Cluster) -> Path:
    return Path(site) / cache_file(cluster.name)


# ---------------------------------------------------------------------------------------------
# Writing


def _disk_data(disk: Disk) -> dict[str, Any]:
    out: dict[str, Any] = {"name": disk.name}
    if disk.size is not None:
        out["size"] = disk.size
    out["drbd_volume"] = disk.volume
    out["drbd_minor"] = disk.minor
    return out


def cache_data(cluster: Cluster, cache: Cache) -> dict[str, Any]:
    """What the cache file holds, in the order it holds it."""
    vms = []
    for name in sorted(cache.vms):
        record = cache.vms[name]
        entry: dict[str, Any] = {"name": record.name, "drbd_minor": record.drbd_minor}
        entry["disabled"] = record.disabled
        for key in canonical.OPTIONAL_VM_KEYS:
            value = getattr(record, key)
            if value is not None:
                entry[key] = value
        entry["more_disks"] = [
            _disk_data(d) for d in sorted(record.more_disks, key=lambda d: d.volume)
        ]
        if record.retired_disks:
            entry["retired_disks"] = [
                _disk_data(d) for d in sorted(record.retired_disks, key=lambda d: d.volume)
            ]
        vms.append(entry)
    return {"cluster": cluster.name, "next_minor": cache.next_minor, "vms": vms}


def dump_cache(cluster: Cluster, cache: Cache) -> str:
    return _dump(cache_data(cluster, cache))


def _dump(data: dict[str, Any]) -> str:
    return CACHE_HEADER + yaml.dump(
        data, Dumper=YAML_DUMPER, sort_keys=False, default_flow_style=False
    )


def write_cache(path: Path, text: str) -> None:
    # Imported here: a run that changes nothing writes nothing and need not load tempfile.
    from kisscluster.atomic import write_atomic

    write_atomic(path, text)


def original_copy(path: Path) -> Path:
    """Where the first run keeps a cache of the original KISScluster's format it converted."""
    return path.with_name(path.name + ".original")


def is_original_format(data: Any) -> bool:
    return isinstance(data, dict) and bool(data) and "vms" not in data


def keep_original(path: Path, text: str) -> None:
    """Keep the original's cache text beside the converted one, once: never overwrite a copy."""
    copy = original_copy(path)
    if not copy.exists():
        write_cache(copy, text)


@contextlib.contextmanager
def locked(directory: Path) -> Iterator[None]:
    """Hold an exclusive lock on `directory` so two inventory runs cannot interleave."""
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------------
# Reading


def _load_disk(raw: Any, where: str, shown: str, problems: Problems) -> Disk | None:
    if not isinstance(raw, dict):
        problems.add(shown, where, "must be a mapping with name, drbd_volume, drbd_minor")
        return None
    try:
        return Disk(
            name=names.validate_disk_name(raw.get("name")),
            volume=whole_number(raw.get("drbd_volume"), 1, MAX_EXTRA_DISKS),
            minor=whole_number(raw.get("drbd_minor"), 0, MINOR_LIMIT_WIDE - 1),
            size=None if raw.get("size") is None else normalize_size(raw["size"]),
        )
    except ValueError as exc:
        problems.add(shown, where, str(exc))
        return None


def _disabled(value: object) -> bool:
    """`disabled` as YAML's words say, else by being there (the original KISScluster's rule)."""
    if value is None:
        return False
    try:
        return boolean(value)
    except ValueError:
        return True


def _load_record(raw: Any, where: str, shown: str, problems: Problems) -> VmRecord | None:
    """One VM of the cache, new format or the original KISScluster one (which has fewer keys)."""
    if not isinstance(raw, dict):
        problems.add(shown, where, "must be a mapping with at least name and drbd_minor")
        return None
    try:
        record = VmRecord(
            name=names.validate_vm_name(raw.get("name")),
            drbd_minor=whole_number(raw.get("drbd_minor"), 0, MINOR_LIMIT_WIDE - 1),
            disabled=_disabled(raw.get("disabled")),
        )
    except ValueError as exc:
        problems.add(shown, where, str(exc))
        return None
    for key in ("primary_on", "template", "network_bridge", "install_iso"):
        if raw.get(key) is not None:
            setattr(record, key, str(raw[key]))
    for key in ("cpus", "ram_megs"):
        if isinstance(raw.get(key), int):
            setattr(record, key, raw[key])
    if raw.get("root_disk_size") is not None:
        record.root_disk_size = normalize_size(raw["root_disk_size"])
    for key in ("more_disks", "retired_disks"):
        for index, disk_raw in enumerate(raw.get(key) or []):
            disk = _load_disk(disk_raw, f"{where}.{key}[{index}]", shown, problems)
            if disk is not None:
                getattr(record, key).append(disk)
    return record


def _legacy_entries(data: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    """The VMs of an original-format cache: `vm`, `active_vm`, `disabled_vm`, lists or mappings."""
    for key in ("vm", "active_vm", "disabled_vm"):
        entries = data.get(key) or []
        if isinstance(entries, dict):
            entries = [dict(v, name=v.get("name", k)) for k, v in entries.items()]
        for index, entry in enumerate(entries):
            if isinstance(entry, dict) and key == "disabled_vm":
                entry = dict(entry, disabled=True)
            yield f"{key}[{index}]", entry


def _records(data: dict[str, Any], shown: str, problems: Problems) -> dict[str, VmRecord]:
    legacy = "vms" not in data
    entries = (
        _legacy_entries(data)
        if legacy
        else ((f"vms[{i}]", e) for i, e in enumerate(data.get("vms") or []))
    )
    records: dict[str, VmRecord] = {}
    for where, raw in entries:
        # The original format names a VM in `vm` and again in `active_vm`/`disabled_vm`; entries
        # that are bare names only say which list the VM is on.
        if legacy and isinstance(raw, str):
            if where.startswith("disabled_vm") and raw in records:
                records[raw].disabled = True
            continue
        record = _load_record(raw, where, shown, problems)
        if record is None:
            continue
        previous = records.get(record.name)
        if previous is not None:
            if previous.minors()[:1] != record.minors()[:1]:
                problems.add(shown, where, f"VM {record.name!r} appears twice with other minors")
                continue
            if len(previous.more_disks) >= len(record.more_disks):
                previous.disabled = previous.disabled or record.disabled
                continue
            record.disabled = previous.disabled or record.disabled
        records[record.name] = record
    return records


def cache_from_data(data: Any, shown: str) -> Cache:
    """The cache that parsed YAML (either format) describes; raises InventoryError if corrupt."""
    if data is None:
        return Cache()
    if not isinstance(data, dict):
        raise InventoryError([Problem(shown, "(file)", "must hold a mapping")])
    problems = Problems()
    cache = Cache(vms=_records(data, shown, problems))
    owners: dict[int, str] = {}
    for record in cache.vms.values():
        for minor in record.minors():
            if minor in owners and owners[minor] != record.name:
                problems.add(
                    shown,
                    f"{record.name}.drbd_minor",
                    f"minor {minor} is also {owners[minor]!r}'s: the cache is corrupt; restore it "
                    "from git",
                )
            owners[minor] = record.name
    problems.check()
    high_water = max(owners, default=-1) // MINORS_PER_VM * MINORS_PER_VM + MINORS_PER_VM
    stored = data.get("next_minor", 0)
    if isinstance(stored, bool) or not isinstance(stored, int) or stored < 0:
        problem = Problem(shown, "next_minor", f"must be a whole number, got {stored!r}")
        raise InventoryError([problem])
    cache.next_minor = max(stored, high_water if owners else 0)
    return cache


class CacheFile(NamedTuple):
    text: str | None  # None: there is no cache yet
    data: Any  # what the text holds
    exact: bool  # the text is exactly what the inventory writes for `data`


def read_cache_file(path: Path, shown: str) -> CacheFile:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return CacheFile(None, None, False)
    except OSError as exc:
        problem = Problem(shown, "(file)", f"cannot be read: {exc.strerror}")
        raise InventoryError([problem]) from None
    data = canonical.read(text)
    if data is not None:
        return CacheFile(text, data, True)
    problems = Problems()
    data = parse_yaml(text, shown, problems)
    problems.check()
    if isinstance(data, dict) and "vms" not in data:
        # The original KISScluster's format: its names were written bare, and it holds no
        # booleans (its `disabled` counts by being there), so read it without them.
        data = parse_yaml(text, shown, problems, TextLoader)
    return CacheFile(text, data, False)


def load_cache(path: Path, shown: str) -> Cache:
    """Read the cache (either format). A missing file is an empty cache."""
    return cache_from_data(read_cache_file(path, shown).data, shown)


def text_to_write(file: CacheFile, cluster: Cluster, cache: Cache) -> str | None:
    """The cache file's new text, or None when `file` already holds exactly that."""
    data = cache_data(cluster, cache)
    # Equal data from an exact text means equal bytes: both are in the order the inventory writes
    # them, and every value has one type (no True where 1 would be).
    if file.exact and data == file.data:
        return None
    text = _dump(data)
    return None if text == file.text else text
