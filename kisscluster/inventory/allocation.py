"""Reconciling the VM files with the cache: the pure rules of allocation (no I/O).

* each VM owns a block of 4 consecutive minors; the block's first minor is also its VNC display
  and the source of its MAC address; extra disk n has volume n and minor first + n;
* a new VM gets the block after the highest ever assigned (`next_minor`, the high-water mark,
  which nothing ever lowers); new VMs are allocated in name order, so equal input gives equal bytes;
* a VM without a `*.yml` file is disabled: it keeps its minors and its last configuration; so is
  one whose file says `disabled: true` (as the original KISScluster's did), with that file's;
* a disk that leaves a VM's file is an error unless the file lists it in `remove_disks`; its volume
  and minor are then retired, never handed out again.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from kisscluster.inventory.cache import Cache, Disk, VmRecord
from kisscluster.inventory.errors import Problems, Report
from kisscluster.inventory.record import Record
from kisscluster.inventory.schema import Cluster, VmSpec
from kisscluster.inventory.values import MAX_EXTRA_DISKS, MINOR_LIMIT_NARROW, MINORS_PER_VM


class Result(Record):
    """What a run changed (or would change): VM and `vm/disk` names, and the cache file."""

    __slots__ = (
        "activated",
        "added_disks",
        "allocated",
        "cache_file",
        "changed",
        "disabled",
        "original_kept",
        "retired_disks",
    )

    def __init__(self) -> None:
        self.allocated: list[str] = []
        self.activated: list[str] = []
        self.disabled: list[str] = []
        self.added_disks: list[str] = []
        self.retired_disks: list[str] = []
        self.changed = False
        self.cache_file = ""
        self.original_kept = ""  # the copy of a converted cache of the original KISScluster

    def as_dict(self) -> dict[str, Any]:
        return {
            name: list(value) if isinstance(value, list) else value
            for name, value in zip(self.__slots__, self._values(), strict=True)
        }


def _apply_spec(record: VmRecord, spec: VmSpec) -> None:
    record.primary_on = spec.primary_on
    record.template = spec.template
    record.cpus = spec.cpus
    record.ram_megs = spec.ram_megs
    record.network_bridge = spec.network_bridge
    record.root_disk_size = spec.root_disk_size
    record.install_iso = spec.install_iso


def _retire_disks(record: VmRecord, spec: VmSpec, result: Result, report: Report) -> None:
    """Check `remove_disks`, take new sizes, retire the disks the file removes."""
    wanted = {d.name: d for d in spec.more_disks}
    current = {d.name: d for d in record.more_disks}
    retired = {d.name for d in record.retired_disks}
    for name in spec.remove_disks:
        if name in wanted:
            report("remove_disks", f"{name!r} is still in more_disks: keep it in one list only")
        elif name not in current and name not in retired:
            report("remove_disks", f"{record.name} has no disk {name!r}")
    for name, disk in current.items():
        if name in wanted:
            disk.size = wanted[name].size
        elif name in spec.remove_disks:
            record.more_disks.remove(disk)
            record.retired_disks.append(Disk(disk.name, disk.volume, disk.minor))
            result.retired_disks.append(f"{record.name}/{name}")
        else:
            report(
                "more_disks",
                f"disk {name!r} (DRBD minor {disk.minor}) is gone from the file; its data would be "
                f"orphaned: put it back, or add it to remove_disks to retire it for good",
            )


def _add_disks(
    record: VmRecord, spec: VmSpec, limit: int, taken: set[int], result: Result, report: Report
) -> None:
    """Give each disk new in the file the first free volume of its VM.

    Six parameters: the record and its spec, the cluster's minor limit, and the run's state
    (minors taken, result, problems), which every VM updates in turn.
    """
    current = {d.name for d in record.more_disks}
    used = {d.volume for d in record.more_disks + record.retired_disks}
    for disk in spec.more_disks:
        if disk.name in current:
            continue
        free = [v for v in range(1, MAX_EXTRA_DISKS + 1) if v not in used]
        if not free:
            report(
                "more_disks",
                f"no DRBD volume left for disk {disk.name!r}: {record.name} has used all "
                f"{MAX_EXTRA_DISKS} (retired disks keep theirs)",
            )
            continue
        volume = free[0]
        minor = record.drbd_minor + volume
        if minor in taken or minor >= limit:
            report("more_disks", f"minor {minor} for disk {disk.name!r} is not free")
            continue
        used.add(volume)
        taken.add(minor)
        record.more_disks.append(Disk(disk.name, volume, minor, disk.size))
        result.added_disks.append(f"{record.name}/{disk.name}")


def _allocate(name: str, spec: VmSpec, cluster: Cluster, cache: Cache, report: Report) -> bool:
    """Give a new VM the next block of minors; False if none is left."""
    first = cache.next_minor
    if first + MINORS_PER_VM > cluster.minor_limit:
        report(
            "name",
            f"no DRBD minors left for a new VM: all {cluster.minor_limit} are assigned"
            + (
                " (a 5-octet mac_prefix allows 64 VMs; a 4-octet one allows 1,024)"
                if cluster.minor_limit == MINOR_LIMIT_NARROW
                else ""
            ),
        )
        return False
    cache.next_minor = first + MINORS_PER_VM
    record = VmRecord(name=name, drbd_minor=first)
    _apply_spec(record, spec)
    for volume, disk in enumerate(spec.more_disks, start=1):
        record.more_disks.append(Disk(disk.name, volume, first + volume, disk.size))
    if spec.remove_disks:
        report("remove_disks", f"{name} is a new VM with no disks to remove: drop remove_disks")
    cache.vms[name] = record
    return True


def reconcile(
    cluster: Cluster, specs: Mapping[str, VmSpec], old: Cache, shown: Mapping[str, str]
) -> tuple[Cache, Result]:
    """The new cache for these VM files; raises InventoryError and changes nothing on bad input.

    `shown` names each VM's file in messages.
    """
    problems = Problems()
    result = Result()
    cache = Cache(old.next_minor, {name: record.copy() for name, record in old.vms.items()})
    taken = {minor for record in cache.vms.values() for minor in record.minors()}
    for name, record in sorted(cache.vms.items()):
        spec = specs.get(name)
        disabled = spec is None or spec.disabled
        if disabled != record.disabled:
            (result.disabled if disabled else result.activated).append(name)
        if spec is not None:
            _apply_spec(record, spec)
            report = problems.report(shown[name])
            _retire_disks(record, spec, result, report)
            _add_disks(record, spec, cluster.minor_limit, taken, result, report)
        record.disabled = disabled
    for name in sorted(set(specs) - set(cache.vms)):
        if _allocate(name, specs[name], cluster, cache, problems.report(shown[name])):
            result.allocated.append(name)
            cache.vms[name].disabled = specs[name].disabled
    problems.check()
    return cache, result
