"""The VM inventory: `vm-config/<cluster>/*.yml` plus the allocation cache -> a new cache.

The cache (`vm-config/<cluster>.yml`) is the committed record of every VM the cluster has known and
of the DRBD minors it owns. Its rules never lose a minor:

* each VM owns a block of 4 consecutive minors; the block's first minor is also its VNC display
  and the source of its MAC address; extra disk n has volume n and minor first + n;
* a new VM gets the block after the highest ever assigned (`next_minor`, the high-water mark,
  which nothing ever lowers); new VMs are allocated in name order, so equal input gives equal bytes;
* a VM without a `*.yml` file is disabled: it keeps its minors and its last configuration;
* a disk that leaves a VM's file is an error unless the file lists it in `remove_disks`; its volume
  and minor are then retired, never handed out again.

Any bad input stops the run with every problem listed (file, field, what to do) before anything is
written; the cache is written only when its bytes change, atomically, under a lock.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import fcntl
import ipaddress
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import yaml

from kisscluster import names, paths
from kisscluster.atomic import write_atomic

MINORS_PER_VM = 4
MAX_EXTRA_DISKS = MINORS_PER_VM - 1
#: With a 4-octet MAC prefix the first minor fills two octets; 4096 minors = 1024 VMs.
MINOR_LIMIT_WIDE = 4096
#: The original single-octet scheme of a 5-octet prefix.
MINOR_LIMIT_NARROW = 256
#: DRBD listens on 10000 + first minor: above every VNC port (5900 + minor < 10000).
DRBD_PORT_BASE = 10000
MIN_SIZE_BYTES = 1 << 20

CLUSTER_FILE = Path("pillar") / "cluster.yml"
VM_CONFIG = Path("vm-config")

REQUIRED_VM_KEYS = ("name", "primary_on", "network_bridge", "ram_megs", "cpus", "root_disk_size")
OPTIONAL_VM_KEYS = ("template", "more_disks", "remove_disks")
DISK_KEYS = ("name", "size")
CLUSTER_KEYS = (
    "name",
    "members",
    "ping_addr",
    "volume_group",
    "mac_prefix",
    "keyboard",
    "default_template",
    "default_bridge",
    "heartbeat",
    "lookup",
)
MEMBER_KEYS = ("name", "prod_addr", "stor_addr")

CACHE_HEADER = (
    "# The allocation cache of kisscluster, written by kiss-inventory: every VM this cluster has\n"
    "# known and the DRBD minors it owns. Commit it; never edit or delete it by hand.\n"
)

_SIZE = re.compile(r"(\d+(?:\.\d+)?)([bBsSkKmMgGtTpPeE]?)\Z")
_UNIT_BYTES = {
    "b": 1,
    "s": 512,
    "k": 1 << 10,
    "m": 1 << 20,
    "g": 1 << 30,
    "t": 1 << 40,
    "p": 1 << 50,
    "e": 1 << 60,
}
_NORMAL_UNITS = ("E", "P", "T", "G", "M", "K")
_VOLUME_GROUP = re.compile(r"[A-Za-z0-9+_.][A-Za-z0-9+_.-]*\Z")
_KEYBOARD = re.compile(r"[a-z]{2}(-[a-z]{2,3})?\Z")
_MAC_OCTET = re.compile(r"[0-9a-fA-F]{2}\Z")
# libyaml's parser and emitter are ten times faster than PyYAML's pure-Python ones.
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


# ---------------------------------------------------------------------------------------------
# Errors


@dataclass(frozen=True)
class Problem:
    file: str
    field: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}: {self.field}: {self.message}"


class InventoryError(Exception):
    """Bad input: every problem found, each naming its file and field. Nothing was written."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        lines = "\n".join(f"  {p}" for p in problems)
        super().__init__(
            f"the inventory found {len(problems)} problem(s); nothing was written:\n{lines}"
        )


class _Problems:
    def __init__(self) -> None:
        self.found: list[Problem] = []

    def add(self, file: str, field_name: str, message: str) -> None:
        self.found.append(Problem(file, field_name, message))

    def check(self) -> None:
        if self.found:
            raise InventoryError(self.found)


# ---------------------------------------------------------------------------------------------
# Values


def parse_size(value: object) -> int:
    """An LVM size (`20G`, `512m`, `1.5t`, `2048s`; a bare number is MiB) in bytes."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"must be a size such as 20G or 512M, got {value!r}")
    text = str(value).strip()
    match = _SIZE.match(text)
    if not match:
        raise ValueError(
            f"{text!r} is not a size: a number with one of LVM's units "
            "b, s, k, m, g, t, p, e (either case), such as 20G"
        )
    size = Decimal(match.group(1)) * _UNIT_BYTES[(match.group(2) or "m").lower()]
    if size != size.to_integral_value():
        raise ValueError(f"{text!r} is not a whole number of bytes")
    if size < MIN_SIZE_BYTES:
        raise ValueError(f"{text!r} is smaller than 1M")
    return int(size)


def format_size(size_bytes: int) -> str:
    """The normal form of a size: the largest binary unit that divides it exactly."""
    for unit in _NORMAL_UNITS:
        factor = _UNIT_BYTES[unit.lower()]
        if size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return f"{size_bytes}B"


def normalize_size(value: object) -> str:
    return format_size(parse_size(value))


def _whole_number(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def _closest(key: str, known: tuple[str, ...]) -> str:
    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _template(value: object, templates: tuple[str, ...]) -> str:
    if value not in templates:
        raise ValueError(
            f"{value!r} names no template; there are: {', '.join(templates)}"
            f"{_closest(str(value), templates)}"
        )
    return str(value)


def available_templates(directory: Path | None = None) -> tuple[str, ...]:
    directory = directory or paths.vm_templates_dir()
    suffix = ".conf.jinja"
    return tuple(
        sorted(p.name[: -len(suffix)] for p in directory.glob(f"*{suffix}") if p.is_file())
    )


# ---------------------------------------------------------------------------------------------
# The cluster definition


@dataclass(frozen=True)
class Member:
    name: str
    prod_addr: str
    stor_addr: str


@dataclass(frozen=True)
class Cluster:
    name: str
    members: tuple[Member, Member]
    ping_addr: str
    volume_group: str
    mac_prefix: str
    keyboard: str
    default_template: str
    default_bridge: str
    heartbeat: dict[str, Any] = field(default_factory=dict)
    lookup: dict[str, Any] = field(default_factory=dict)

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    @property
    def minor_limit(self) -> int:
        return MINOR_LIMIT_WIDE if self.mac_prefix.count(":") == 3 else MINOR_LIMIT_NARROW

    def mac(self, first_minor: int) -> str:
        if self.minor_limit == MINOR_LIMIT_WIDE:
            return f"{self.mac_prefix}:{first_minor >> 8:02x}:{first_minor & 0xFF:02x}"
        return f"{self.mac_prefix}:{first_minor:02x}"


def _read_yaml(path: Path, shown: str, problems: _Problems) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add(shown, "(file)", f"cannot be read: {exc.strerror}")
        return None
    try:
        return yaml.load(text, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problems.add(shown, "(file)", f"is not valid YAML{at}: fix the syntax")
        return None


def _address(value: object) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError(f"must be an IP address, got {value!r}") from None


def _mac_prefix(value: object) -> str:
    octets = str(value).split(":") if isinstance(value, str) else []
    if len(octets) not in (4, 5) or not all(_MAC_OCTET.match(o) for o in octets):
        raise ValueError(
            f"must be 4 hex octets (like 52:54:00:4b; 1,024 VMs) or 5 (the old single-octet "
            f"scheme, 64 VMs), got {value!r}"
        )
    if int(octets[0], 16) & 1:
        raise ValueError(f"{value!r} is a multicast prefix: its first octet must be even")
    return ":".join(o.lower() for o in octets)


def load_cluster(site: Path, templates: tuple[str, ...] | None = None) -> Cluster:
    """Read and validate `pillar/cluster.yml` of the site."""
    site = Path(site)
    problems = _Problems()
    shown = str(CLUSTER_FILE)
    data = _read_yaml(site / CLUSTER_FILE, shown, problems)
    problems.check()
    if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict):
        raise InventoryError([Problem(shown, "cluster", "the file must hold a mapping `cluster:`")])
    raw = data["cluster"]
    templates = available_templates() if templates is None else templates
    values: dict[str, Any] = {}

    def take(key: str, convert: Any) -> None:
        if key not in raw:
            problems.add(shown, f"cluster.{key}", "is missing: add it")
            return
        try:
            values[key] = convert(raw[key])
        except ValueError as exc:
            problems.add(shown, f"cluster.{key}", str(exc))

    for key in raw:
        if key not in CLUSTER_KEYS:
            problems.add(shown, f"cluster.{key}", f"unknown key{_closest(str(key), CLUSTER_KEYS)}")

    def volume_group(value: object) -> str:
        if not isinstance(value, str) or not _VOLUME_GROUP.match(value) or len(value) > 64:
            raise ValueError(f"must be an LVM volume group name, got {value!r}")
        return value

    def keyboard(value: object) -> str:
        if not isinstance(value, str) or not _KEYBOARD.match(value):
            raise ValueError(f"must be a qemu keyboard layout (en-us, de-ch, …), got {value!r}")
        return value

    def mapping(value: object) -> dict[str, Any]:
        if not isinstance(value, dict):
            raise ValueError(f"must be a mapping, got {value!r}")
        return value

    take("name", names.validate_cluster_name)
    take("ping_addr", _address)
    take("volume_group", volume_group)
    take("mac_prefix", _mac_prefix)
    take("keyboard", keyboard)
    take("default_template", lambda v: _template(v, templates))
    take("default_bridge", names.validate_bridge_name)
    values["heartbeat"] = values["lookup"] = {}
    for key in ("heartbeat", "lookup"):
        if key in raw:
            take(key, mapping)

    members = raw.get("members")
    if not isinstance(members, list) or len(members) != 2:
        problems.add(shown, "cluster.members", "must list exactly two members")
    else:
        parsed = []
        for index, member in enumerate(members):
            where = f"cluster.members[{index}]"
            if not isinstance(member, dict):
                problems.add(shown, where, "must be a mapping with name, prod_addr, stor_addr")
                continue
            for key in member:
                if key not in MEMBER_KEYS:
                    problems.add(
                        shown, f"{where}.{key}", f"unknown key{_closest(str(key), MEMBER_KEYS)}"
                    )
            fields = {}
            for key, convert in (
                ("name", names.validate_member_name),
                ("prod_addr", _address),
                ("stor_addr", _address),
            ):
                try:
                    fields[key] = convert(member[key])
                except KeyError:
                    problems.add(shown, f"{where}.{key}", "is missing: add it")
                except ValueError as exc:
                    problems.add(shown, f"{where}.{key}", str(exc))
            if len(fields) == 3:
                parsed.append(Member(**fields))
        if len(parsed) == 2:
            for key in MEMBER_KEYS:
                if getattr(parsed[0], key) == getattr(parsed[1], key):
                    problems.add(shown, f"cluster.members[1].{key}", "must differ from member 0's")
            values["members"] = tuple(parsed)
    problems.check()
    return Cluster(**values)


# ---------------------------------------------------------------------------------------------
# VM files


@dataclass(frozen=True)
class DiskSpec:
    name: str
    size: str


@dataclass(frozen=True)
class VmSpec:
    name: str
    primary_on: str
    network_bridge: str
    ram_megs: int
    cpus: int
    root_disk_size: str
    template: str
    more_disks: tuple[DiskSpec, ...] = ()
    remove_disks: tuple[str, ...] = ()


def vm_dir(site: Path, cluster: Cluster) -> Path:
    return Path(site) / VM_CONFIG / cluster.name


def cache_path(site: Path, cluster: Cluster) -> Path:
    return Path(site) / VM_CONFIG / f"{cluster.name}.yml"


def _shown(site: Path, path: Path) -> str:
    try:
        return str(path.relative_to(site))
    except ValueError:
        return str(path)


def _parse_disks(raw: object, shown: str, problems: _Problems) -> tuple[DiskSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        problems.add(shown, "more_disks", "must be a list of {name, size}")
        return ()
    if len(raw) > MAX_EXTRA_DISKS:
        problems.add(
            shown,
            "more_disks",
            f"has {len(raw)} disks; a VM has at most {MAX_EXTRA_DISKS} besides root",
        )
    disks = []
    seen: set[str] = set()
    for index, disk in enumerate(raw):
        where = f"more_disks[{index}]"
        if not isinstance(disk, dict):
            problems.add(shown, where, "must be a mapping with name and size")
            continue
        for key in disk:
            if key not in DISK_KEYS:
                problems.add(shown, f"{where}.{key}", f"unknown key{_closest(str(key), DISK_KEYS)}")
        try:
            name = names.validate_disk_name(disk.get("name"))
        except ValueError as exc:
            problems.add(shown, f"{where}.name", str(exc))
            continue
        if name == "root":
            problems.add(shown, f"{where}.name", "'root' is the VM's first disk: pick another name")
            continue
        if name in seen:
            problems.add(shown, f"{where}.name", f"disk {name!r} is listed twice")
            continue
        seen.add(name)
        if "size" not in disk:
            problems.add(shown, f"{where}.size", "is missing: add it")
            continue
        try:
            disks.append(DiskSpec(name, normalize_size(disk["size"])))
        except ValueError as exc:
            problems.add(shown, f"{where}.size", str(exc))
    return tuple(disks)


def parse_vm_file(
    path: Path, shown: str, cluster: Cluster, templates: tuple[str, ...], problems: _Problems
) -> VmSpec | None:
    """Validate one VM file; add every problem found, return the spec when there was none."""
    before = len(problems.found)
    data = _read_yaml(path, shown, problems)
    if len(problems.found) > before:
        return None
    if not isinstance(data, dict):
        problems.add(shown, "(file)", "must hold a mapping of VM keys (see vm-config/EXAMPLE.YML)")
        return None
    known = REQUIRED_VM_KEYS + OPTIONAL_VM_KEYS
    for key in data:
        if key not in known:
            problems.add(shown, str(key), f"unknown key{_closest(str(key), known)}")
    for key in REQUIRED_VM_KEYS:
        if key not in data:
            problems.add(shown, key, "is missing: add it (see vm-config/EXAMPLE.YML)")
    values: dict[str, Any] = {}

    def take(key: str, convert: Any) -> None:
        if key in data:
            try:
                values[key] = convert(data[key])
            except ValueError as exc:
                problems.add(shown, key, str(exc))

    stem = path.name[: -len(".yml")]

    def vm_name(value: object) -> str:
        name = names.validate_vm_name(value)
        if name != stem:
            raise ValueError(f"{name!r} must equal the file name {stem!r}: rename one of them")
        return name

    def member(value: object) -> str:
        if value not in cluster.member_names:
            raise ValueError(
                f"{value!r} is not a cluster member; members: {', '.join(cluster.member_names)}"
            )
        return str(value)

    def disk_names(value: object) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise ValueError("must be a list of disk names")
        return tuple(names.validate_disk_name(v) for v in value)

    take("name", vm_name)
    take("primary_on", member)
    take("network_bridge", names.validate_bridge_name)
    take("ram_megs", lambda v: _whole_number(v, 16, 1 << 22))
    take("cpus", lambda v: _whole_number(v, 1, 256))
    take("root_disk_size", normalize_size)
    take("template", lambda v: _template(v, templates))
    take("remove_disks", disk_names)
    values["more_disks"] = _parse_disks(data.get("more_disks"), shown, problems)
    values.setdefault("template", cluster.default_template)
    if len(problems.found) > before:
        return None
    return VmSpec(**values)


def read_vm_files(site: Path, cluster: Cluster, templates: tuple[str, ...]) -> dict[str, VmSpec]:
    """Every `vm-config/<cluster>/*.yml`, validated; raises InventoryError listing all problems."""
    problems = _Problems()
    specs: dict[str, VmSpec] = {}
    directory = vm_dir(site, cluster)
    files = sorted(p for p in directory.glob("*.yml") if p.is_file()) if directory.is_dir() else []
    for path in files:
        spec = parse_vm_file(path, _shown(site, path), cluster, templates, problems)
        if spec is not None:
            specs[spec.name] = spec
    problems.check()
    return specs


# ---------------------------------------------------------------------------------------------
# The cache


@dataclass
class Disk:
    name: str
    volume: int
    minor: int
    size: str | None = None


@dataclass
class VmRecord:
    name: str
    drbd_minor: int
    disabled: bool = False
    primary_on: str | None = None
    template: str | None = None
    cpus: int | None = None
    ram_megs: int | None = None
    network_bridge: str | None = None
    root_disk_size: str | None = None
    more_disks: list[Disk] = field(default_factory=list)
    retired_disks: list[Disk] = field(default_factory=list)

    def minors(self) -> list[int]:
        return [self.drbd_minor] + [d.minor for d in self.more_disks + self.retired_disks]

    def disks(self) -> list[Disk]:
        """Root (volume 0) and the extra disks, in volume order."""
        root = Disk("root", 0, self.drbd_minor, self.root_disk_size)
        return [root, *sorted(self.more_disks, key=lambda d: d.volume)]


@dataclass
class Cache:
    next_minor: int = 0
    vms: dict[str, VmRecord] = field(default_factory=dict)


def _dump_disk(disk: Disk) -> dict[str, Any]:
    out: dict[str, Any] = {"name": disk.name}
    if disk.size is not None:
        out["size"] = disk.size
    out["drbd_volume"] = disk.volume
    out["drbd_minor"] = disk.minor
    return out


def dump_cache(cluster: Cluster, cache: Cache) -> str:
    vms = []
    for name in sorted(cache.vms):
        record = cache.vms[name]
        entry: dict[str, Any] = {"name": record.name, "drbd_minor": record.drbd_minor}
        entry["disabled"] = record.disabled
        for key in ("primary_on", "template", "cpus", "ram_megs", "network_bridge"):
            value = getattr(record, key)
            if value is not None:
                entry[key] = value
        if record.root_disk_size is not None:
            entry["root_disk_size"] = record.root_disk_size
        entry["more_disks"] = [
            _dump_disk(d) for d in sorted(record.more_disks, key=lambda d: d.volume)
        ]
        if record.retired_disks:
            entry["retired_disks"] = [
                _dump_disk(d) for d in sorted(record.retired_disks, key=lambda d: d.volume)
            ]
        vms.append(entry)
    body = {"cluster": cluster.name, "next_minor": cache.next_minor, "vms": vms}
    return CACHE_HEADER + yaml.dump(
        body, Dumper=_YAML_DUMPER, sort_keys=False, default_flow_style=False
    )


def _load_disk(raw: Any, where: str, shown: str, problems: _Problems) -> Disk | None:
    if not isinstance(raw, dict):
        problems.add(shown, where, "must be a mapping with name, drbd_volume, drbd_minor")
        return None
    try:
        return Disk(
            name=names.validate_disk_name(raw.get("name")),
            volume=_whole_number(raw.get("drbd_volume"), 1, MAX_EXTRA_DISKS),
            minor=_whole_number(raw.get("drbd_minor"), 0, MINOR_LIMIT_WIDE - 1),
            size=None if raw.get("size") is None else normalize_size(raw["size"]),
        )
    except ValueError as exc:
        problems.add(shown, where, str(exc))
        return None


def _load_record(raw: Any, where: str, shown: str, problems: _Problems) -> VmRecord | None:
    """One VM of the cache, new format or the original KISScluster one (which has fewer keys)."""
    if not isinstance(raw, dict):
        problems.add(shown, where, "must be a mapping with at least name and drbd_minor")
        return None
    try:
        record = VmRecord(
            name=names.validate_vm_name(raw.get("name")),
            drbd_minor=_whole_number(raw.get("drbd_minor"), 0, MINOR_LIMIT_WIDE - 1),
            disabled=bool(raw.get("disabled", False)),
        )
    except ValueError as exc:
        problems.add(shown, where, str(exc))
        return None
    for key in ("primary_on", "template", "network_bridge"):
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


def load_cache(path: Path, shown: str) -> Cache:
    """Read the cache (either format). A missing file is an empty cache."""
    if not path.exists():
        return Cache()
    problems = _Problems()
    data = _read_yaml(path, shown, problems)
    problems.check()
    if data is None:
        return Cache()
    if not isinstance(data, dict):
        raise InventoryError([Problem(shown, "(file)", "must hold a mapping")])
    cache = Cache()
    legacy = "vms" not in data
    entries = (
        _legacy_entries(data)
        if legacy
        else ((f"vms[{i}]", e) for i, e in enumerate(data.get("vms") or []))
    )
    for where, raw in entries:
        # The original format names a VM in `vm` and again in `active_vm`/`disabled_vm`; entries
        # that are bare names only say which list the VM is on.
        if legacy and isinstance(raw, str):
            if where.startswith("disabled_vm") and raw in cache.vms:
                cache.vms[raw].disabled = True
            continue
        record = _load_record(raw, where, shown, problems)
        if record is None:
            continue
        previous = cache.vms.get(record.name)
        if previous is not None:
            if previous.minors()[:1] != record.minors()[:1]:
                problems.add(shown, where, f"VM {record.name!r} appears twice with other minors")
                continue
            if len(previous.more_disks) >= len(record.more_disks):
                previous.disabled = previous.disabled or record.disabled
                continue
            record.disabled = previous.disabled or record.disabled
        cache.vms[record.name] = record
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


# ---------------------------------------------------------------------------------------------
# Reconciling files with the cache


@dataclass
class Result:
    allocated: list[str] = field(default_factory=list)
    activated: list[str] = field(default_factory=list)
    disabled: list[str] = field(default_factory=list)
    added_disks: list[str] = field(default_factory=list)
    retired_disks: list[str] = field(default_factory=list)
    changed: bool = False
    cache_file: str = ""

    def as_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _apply_spec(record: VmRecord, spec: VmSpec) -> None:
    record.disabled = False
    record.primary_on = spec.primary_on
    record.template = spec.template
    record.cpus = spec.cpus
    record.ram_megs = spec.ram_megs
    record.network_bridge = spec.network_bridge
    record.root_disk_size = spec.root_disk_size


def _reconcile_disks(
    record: VmRecord,
    spec: VmSpec,
    cluster: Cluster,
    shown: str,
    taken: set[int],
    result: Result,
    problems: _Problems,
) -> None:
    wanted = {d.name: d for d in spec.more_disks}
    current = {d.name: d for d in record.more_disks}
    retired = {d.name for d in record.retired_disks}
    for name in spec.remove_disks:
        if name in wanted:
            problems.add(
                shown, "remove_disks", f"{name!r} is still in more_disks: keep it in one list only"
            )
        elif name not in current and name not in retired:
            problems.add(shown, "remove_disks", f"{record.name} has no disk {name!r}")
    for name, disk in current.items():
        if name in wanted:
            disk.size = wanted[name].size
        elif name in spec.remove_disks:
            record.more_disks.remove(disk)
            record.retired_disks.append(Disk(disk.name, disk.volume, disk.minor))
            result.retired_disks.append(f"{record.name}/{name}")
        else:
            problems.add(
                shown,
                "more_disks",
                f"disk {name!r} (DRBD minor {disk.minor}) is gone from the file; its data would be "
                f"orphaned: put it back, or add it to remove_disks to retire it for good",
            )
    used = {d.volume for d in record.more_disks + record.retired_disks}
    for disk in spec.more_disks:
        if disk.name in current:
            continue
        free = [v for v in range(1, MAX_EXTRA_DISKS + 1) if v not in used]
        if not free:
            problems.add(
                shown,
                "more_disks",
                f"no DRBD volume left for disk {disk.name!r}: {record.name} has used all "
                f"{MAX_EXTRA_DISKS} (retired disks keep theirs)",
            )
            continue
        volume = free[0]
        minor = record.drbd_minor + volume
        if minor in taken or minor >= cluster.minor_limit:
            problems.add(shown, "more_disks", f"minor {minor} for disk {disk.name!r} is not free")
            continue
        used.add(volume)
        taken.add(minor)
        record.more_disks.append(Disk(disk.name, volume, minor, disk.size))
        result.added_disks.append(f"{record.name}/{disk.name}")


def reconcile(
    site: Path, cluster: Cluster, specs: Mapping[str, VmSpec], old: Cache
) -> tuple[Cache, Result]:
    """The new cache for these VM files; raises InventoryError and changes nothing on bad input."""
    problems = _Problems()
    result = Result()
    cache = Cache(
        next_minor=old.next_minor,
        vms={name: _copy_record(record) for name, record in old.vms.items()},
    )
    taken = {minor for record in cache.vms.values() for minor in record.minors()}
    directory = vm_dir(site, cluster)
    for name, record in sorted(cache.vms.items()):
        spec = specs.get(name)
        if spec is None:
            if not record.disabled:
                record.disabled = True
                result.disabled.append(name)
            continue
        if record.disabled:
            result.activated.append(name)
        _apply_spec(record, spec)
        shown = _shown(site, directory / f"{name}.yml")
        _reconcile_disks(record, spec, cluster, shown, taken, result, problems)
    for name in sorted(set(specs) - set(cache.vms)):
        spec = specs[name]
        first = cache.next_minor
        if first + MINORS_PER_VM > cluster.minor_limit:
            problems.add(
                _shown(site, directory / f"{name}.yml"),
                "name",
                f"no DRBD minors left for a new VM: all {cluster.minor_limit} are assigned"
                + (
                    " (a 5-octet mac_prefix allows 64 VMs; a 4-octet one allows 1,024)"
                    if cluster.minor_limit == MINOR_LIMIT_NARROW
                    else ""
                ),
            )
            continue
        cache.next_minor = first + MINORS_PER_VM
        record = VmRecord(name=name, drbd_minor=first)
        _apply_spec(record, spec)
        for volume, disk in enumerate(spec.more_disks, start=1):
            record.more_disks.append(Disk(disk.name, volume, first + volume, disk.size))
        if spec.remove_disks:
            problems.add(
                _shown(site, directory / f"{name}.yml"),
                "remove_disks",
                f"{name} is a new VM with no disks to remove: drop remove_disks",
            )
        cache.vms[name] = record
        result.allocated.append(name)
    problems.check()
    return cache, result


def _copy_record(record: VmRecord) -> VmRecord:
    return dataclasses.replace(
        record,
        more_disks=[dataclasses.replace(d) for d in record.more_disks],
        retired_disks=[dataclasses.replace(d) for d in record.retired_disks],
    )


# ---------------------------------------------------------------------------------------------
# Entry points


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


def run(site: Path | str, *, dry_run: bool = False) -> Result:
    """Reconcile the site's VM files with its cache and write the cache if it changed."""
    site = Path(site)
    templates = available_templates()
    cluster = load_cluster(site, templates)
    path = cache_path(site, cluster)
    with locked(path.parent):
        old = load_cache(path, _shown(site, path))
        specs = read_vm_files(site, cluster, templates)
        cache, result = reconcile(site, cluster, specs, old)
        text = dump_cache(cluster, cache)
        current = path.read_text(encoding="utf-8") if path.exists() else None
        result.changed = text != current
        result.cache_file = _shown(site, path)
        if result.changed and not dry_run:
            write_atomic(path, text)
    return result


def read(site: Path | str) -> tuple[Cluster, Cache]:
    """The cluster and the committed cache, as they are (no allocation, nothing written)."""
    site = Path(site)
    cluster = load_cluster(site)
    path = cache_path(site, cluster)
    return cluster, load_cache(path, _shown(site, path))


def forget(site: Path | str, vm_name: str, *, dry_run: bool = False) -> bool:
    """Remove a nuked VM from the cache; its minors stay spent (the high-water mark is kept).

    Returns whether the VM was in the cache.
    """
    site = Path(site)
    vm_name = names.validate_vm_name(vm_name)
    cluster = load_cluster(site)
    path = cache_path(site, cluster)
    vm_file = vm_dir(site, cluster) / f"{vm_name}.yml"
    if vm_file.exists():
        raise InventoryError(
            [
                Problem(
                    _shown(site, vm_file),
                    "(file)",
                    f"{vm_name} still has a VM file: rename it away from *.yml (disable the VM) "
                    "and run kiss-configure before nuking it",
                )
            ]
        )
    with locked(path.parent):
        cache = load_cache(path, _shown(site, path))
        if vm_name not in cache.vms:
            return False
        del cache.vms[vm_name]
        if not dry_run:
            write_atomic(path, dump_cache(cluster, cache))
    return True
