"""The site's input files: `pillar/cluster.yml` and `vm-config/<cluster>/*.yml`, validated.

Each file's keys are a table of fields (required or not, the default, the checker); `validate`
applies a table to a mapping and reports every unknown, missing and invalid key by file and field.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Set
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kisscluster import names
from kisscluster.inventory import values
from kisscluster.inventory.errors import InventoryError, Problem, Problems, Report
from kisscluster.inventory.values import MAX_EXTRA_DISKS

CLUSTER_FILE = Path("pillar") / "cluster.yml"
VM_CONFIG = Path("vm-config")
DISK_KEYS = ("name", "size")

# libyaml's parser and emitter are ten times faster than PyYAML's pure-Python ones.
YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


class TextLoader(YAML_LOADER):  # type: ignore[misc, valid-type]
    """YAML without implicit booleans: for the files the original KISScluster wrote or read,
    whose names were bare words (a VM called `no`, `on` or `off` is a name, not a boolean)."""


TextLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in YAML_LOADER.yaml_implicit_resolvers.items()
}


class Field(NamedTuple):
    required: bool
    #: What a missing optional key stands for; it goes through the checker like a given value.
    default: Any
    check: Callable[[Any], Any]


def validate(
    raw: Mapping[str, Any],
    table: Mapping[str, Field],
    report: Report,
    missing: str = "is missing: add it",
) -> dict[str, Any]:
    """The checked value of every field of `table` in `raw`, and a report of every problem.

    Reported in this order: unknown keys (with the closest known one), missing required keys,
    then each field whose checker refused its value.
    """
    known = tuple(table)
    for key in raw:
        if key not in table:
            report(str(key), f"unknown key{values.closest(str(key), known)}")
    for key, field in table.items():
        if field.required and key not in raw:
            report(key, missing)
    checked = {}
    for key, field in table.items():
        if key in raw or not field.required:
            try:
                checked[key] = field.check(raw.get(key, field.default))
            except ValueError as exc:
                report(key, str(exc))
    return checked


def display_path(site: Path, path: Path) -> str:
    """How a message names a file: relative to the site when it is inside."""
    try:
        return str(path.relative_to(site))
    except ValueError:
        return str(path)


def read_yaml(path: Path, shown: str, problems: Problems, loader: Any = YAML_LOADER) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        problems.add(shown, "(file)", f"cannot be read: {exc.strerror}")
        return None
    return parse_yaml(text, shown, problems, loader)


def parse_yaml(text: str, shown: str, problems: Problems, loader: Any = YAML_LOADER) -> Any:
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        at = f" at line {where.line + 1}, column {where.column + 1}" if where else ""
        problems.add(shown, "(file)", f"is not valid YAML{at}: fix the syntax")
        return None


# ---------------------------------------------------------------------------------------------
# The cluster definition


class Member(NamedTuple):
    name: str
    prod_addr: str
    stor_addr: str
    fence: str = ""  # the member's power fencing device (kisscluster.heartbeat.power), or none


class Cluster(NamedTuple):
    name: str
    members: tuple[Member, Member]
    ping_addr: str
    volume_group: str
    mac_prefix: str
    keyboard: str
    default_template: str
    default_bridge: str
    heartbeat: dict[str, Any]
    lookup: dict[str, Any]
    drbd_port_base: int = values.DRBD_PORT_BASE
    drbd_device_names: str = values.DRBD_DEVICE_NAMES[0]
    verify_schedule: str = values.VERIFY_SCHEDULE

    @property
    def member_names(self) -> tuple[str, ...]:
        return tuple(m.name for m in self.members)

    @property
    def minor_limit(self) -> int:
        if self.mac_prefix.count(":") == 3:
            return values.MINOR_LIMIT_WIDE
        return values.MINOR_LIMIT_NARROW

    def mac(self, first_minor: int) -> str:
        if self.minor_limit == values.MINOR_LIMIT_WIDE:
            return f"{self.mac_prefix}:{first_minor >> 8:02x}:{first_minor & 0xFF:02x}"
        return f"{self.mac_prefix}:{first_minor:02x}"


MEMBER_TABLE = {
    "name": Field(True, None, names.validate_member_name),
    "prod_addr": Field(True, None, values.address),
    "stor_addr": Field(True, None, values.address),
    "fence": Field(False, "", values.fence_device),
}
# Keys whose values must differ between the two members.
DISTINCT_MEMBER_KEYS = ("name", "prod_addr", "stor_addr")


def load_cluster(site: Path, templates: tuple[str, ...] | None = None) -> Cluster:
    """Read and validate `pillar/cluster.yml` of the site."""
    site = Path(site)
    problems = Problems()
    shown = str(CLUSTER_FILE)
    data = read_yaml(site / CLUSTER_FILE, shown, problems)
    problems.check()
    if not isinstance(data, dict) or not isinstance(data.get("cluster"), dict):
        raise InventoryError([Problem(shown, "cluster", "the file must hold a mapping `cluster:`")])
    known_templates = values.available_templates(site) if templates is None else templates
    table = {
        "name": Field(True, None, names.validate_cluster_name),
        "ping_addr": Field(True, None, values.address),
        "volume_group": Field(True, None, values.volume_group),
        "mac_prefix": Field(True, None, values.mac_prefix),
        "keyboard": Field(True, None, values.keyboard),
        "default_template": Field(True, None, lambda v: values.template(v, known_templates)),
        "default_bridge": Field(True, None, names.validate_bridge_name),
        "heartbeat": Field(False, {}, values.mapping),
        "lookup": Field(False, {}, values.mapping),
        "members": Field(False, None, lambda v: _members(v, shown, problems)),
        "drbd_port_base": Field(
            False, values.DRBD_PORT_BASE, lambda v: values.whole_number(v, 1024, 65535)
        ),
        "drbd_device_names": Field(False, values.DRBD_DEVICE_NAMES[0], values.drbd_device_names),
        "verify_schedule": Field(False, values.VERIFY_SCHEDULE, values.one_line),
    }
    checked = validate(data["cluster"], table, problems.report(shown, "cluster."))
    problems.check()
    cluster = Cluster(**checked)
    clash = _port_clash(cluster)
    if clash:
        raise InventoryError([Problem(shown, "cluster.drbd_port_base", clash)])
    return cluster


def _port_clash(cluster: Cluster) -> str | None:
    """Why the DRBD ports of every possible minor do not fit beside the VNC ports, or None."""
    first, last = cluster.drbd_port_base, cluster.drbd_port_base + cluster.minor_limit - 1
    vnc_last = values.VNC_PORT_BASE + cluster.minor_limit - 1
    if last > 65535:
        return f"ports {first}-{last} for {cluster.minor_limit} minors end above 65535"
    if first <= vnc_last and last >= values.VNC_PORT_BASE:
        return (
            f"ports {first}-{last} overlap the VNC ports {values.VNC_PORT_BASE}-{vnc_last} of "
            f"{cluster.minor_limit} minors: use {vnc_last + 1} or more (the default is "
            f"{values.DRBD_PORT_BASE})"
        )
    return None


def _members(value: object, shown: str, problems: Problems) -> tuple[Member, ...]:
    if not isinstance(value, list) or len(value) != 2:
        raise ValueError("must list exactly two members")
    parsed = []
    for index, member in enumerate(value):
        where = f"cluster.members[{index}]"
        if not isinstance(member, dict):
            problems.add(shown, where, "must be a mapping with name, prod_addr, stor_addr")
            continue
        checked = validate(member, MEMBER_TABLE, problems.report(shown, f"{where}."))
        if all(key in checked for key in DISTINCT_MEMBER_KEYS):
            parsed.append(Member(**checked))
    if len(parsed) == 2:
        for key in DISTINCT_MEMBER_KEYS:
            if getattr(parsed[0], key) == getattr(parsed[1], key):
                problems.add(shown, f"cluster.members[1].{key}", "must differ from member 0's")
    return tuple(parsed)


# ---------------------------------------------------------------------------------------------
# VM files


class DiskSpec(NamedTuple):
    name: str
    size: str


class VmSpec(NamedTuple):
    name: str
    primary_on: str
    network_bridge: str
    ram_megs: int
    cpus: int
    root_disk_size: str
    template: str
    more_disks: tuple[DiskSpec, ...] = ()
    remove_disks: tuple[str, ...] = ()
    disabled: bool = False
    install_iso: str | None = None


def vm_dir(site: Path, cluster: Cluster) -> Path:
    return Path(site) / VM_CONFIG / cluster.name


def _vm_table(
    stem: str, cluster: Cluster, templates: tuple[str, ...], known: Set[str], report: Report
) -> dict[str, Field]:
    def vm_name(value: object) -> str:
        # A VM the cache holds keeps its name, even one the original KISScluster allowed.
        adopted = isinstance(value, str) and value in known
        name = names.validate_vm_name(value) if adopted else names.validate_new_vm_name(value)
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

    return {
        "name": Field(True, None, vm_name),
        "primary_on": Field(True, None, member),
        "network_bridge": Field(True, None, names.validate_bridge_name),
        "ram_megs": Field(True, None, lambda v: values.whole_number(v, 16, 1 << 22)),
        "cpus": Field(True, None, lambda v: values.whole_number(v, 1, 256)),
        "root_disk_size": Field(True, None, values.normalize_size),
        "template": Field(False, cluster.default_template, lambda v: values.template(v, templates)),
        "remove_disks": Field(False, [], disk_names),
        "disabled": Field(False, False, values.boolean),
        "more_disks": Field(False, None, lambda v: _more_disks(v, report)),
        "install_iso": Field(False, None, lambda v: None if v is None else values.iso_file_name(v)),
    }


def _more_disks(raw: object, report: Report) -> tuple[DiskSpec, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise ValueError("must be a list of {name, size}")
    if len(raw) > MAX_EXTRA_DISKS:
        report(
            "more_disks", f"has {len(raw)} disks; a VM has at most {MAX_EXTRA_DISKS} besides root"
        )
    disks = []
    seen: set[str] = set()
    for index, disk in enumerate(raw):
        where = f"more_disks[{index}]"
        if not isinstance(disk, dict):
            report(where, "must be a mapping with name and size")
            continue
        for key in disk:
            if key not in DISK_KEYS:
                report(f"{where}.{key}", f"unknown key{values.closest(str(key), DISK_KEYS)}")
        try:
            name = names.validate_disk_name(disk.get("name"))
        except ValueError as exc:
            report(f"{where}.name", str(exc))
            continue
        if name == "root":
            report(f"{where}.name", "'root' is the VM's first disk: pick another name")
            continue
        if name in seen:
            report(f"{where}.name", f"disk {name!r} is listed twice")
            continue
        seen.add(name)
        if "size" not in disk:
            report(f"{where}.size", "is missing: add it")
            continue
        try:
            disks.append(DiskSpec(name, values.normalize_size(disk["size"])))
        except ValueError as exc:
            report(f"{where}.size", str(exc))
    return tuple(disks)


# Six parameters: the file, its name in messages, and what it is checked against.
def parse_vm_file(
    path: Path,
    shown: str,
    cluster: Cluster,
    templates: tuple[str, ...],
    known: Set[str],
    problems: Problems,
) -> VmSpec | None:
    """Validate one VM file; add every problem found, return the spec when there was none."""
    before = len(problems.found)
    data = read_yaml(path, shown, problems, TextLoader)
    if len(problems.found) > before:
        return None
    if not isinstance(data, dict):
        problems.add(shown, "(file)", "must hold a mapping of VM keys (see vm-config/EXAMPLE.YML)")
        return None
    report = problems.report(shown)
    table = _vm_table(path.name[: -len(".yml")], cluster, templates, known, report)
    checked = validate(data, table, report, "is missing: add it (see vm-config/EXAMPLE.YML)")
    if len(problems.found) > before:
        return None
    return VmSpec(**checked)


def read_vm_files(
    site: Path, cluster: Cluster, templates: tuple[str, ...], known: Set[str] = frozenset()
) -> dict[str, VmSpec]:
    """Every `vm-config/<cluster>/*.yml`, validated; raises InventoryError listing all problems.
    `known`: the VMs the cache holds (their names may be an adopted site's)."""
    problems = Problems()
    specs: dict[str, VmSpec] = {}
    directory = vm_dir(site, cluster)
    files = sorted(p for p in directory.glob("*.yml") if p.is_file()) if directory.is_dir() else []
    for path in files:
        spec = parse_vm_file(path, display_path(site, path), cluster, templates, known, problems)
        if spec is not None:
            specs[spec.name] = spec
    problems.check()
    return specs
