"""kiss.nuke: remove a VM from one node for good, as a list of steps that are data first.

Order: stop the unit (only with force; an active VM is refused otherwise), DRBD disconnect and
down (when the resource is up), wipe-md (while the resource file and the root LV still exist),
remove the resource file, disable the unit, remove the VM's qemu config, remove its LVs. Each
step knows whether it is still needed, so a nuke that failed half way can simply run again.

Every command goes through one seam, `System.run`: the host where the tests run has no DRBD
module, no device-mapper and no systemd as PID 1, so tests replace it; the lab runs it for real.
Paths and programs are the kiss states' own settings (salt/states/kiss/defaults.yaml, then pillar
`kiss:cluster:lookup`, then the node's minion option `kiss_lookup`), `root` prefix included.
"""

import functools
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import yaml

from kisscluster import lvm, names, paths

#: The settings the nuke reads; the states' defaults.yaml does not know lvremove.
SETTINGS = ("root", "drbd_dir", "vm_conf_dir", "drbdadm", "lvs", "lvremove", "systemctl")
NUKE_DEFAULTS = {"lvremove": "/sbin/lvremove"}
COMMAND_TIMEOUT = 300
ACTIVE_STATES = ("active", "activating", "deactivating", "reloading", "refreshing")


class NukeError(Exception):
    """The nuke refused or a step failed; the message names the VM, the step and why."""


class System(Protocol):
    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]: ...


class HostSystem:
    """The real commands of this host."""

    def run(self, argv: Sequence[str]) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            list(argv), capture_output=True, text=True, timeout=COMMAND_TIMEOUT, check=False
        )


@dataclass(frozen=True)
class Step:
    """One thing the nuke does: run `argv`, or remove the file `path`."""

    what: str
    argv: tuple[str, ...] = ()
    path: Path | None = None
    needed: bool = True

    def describe(self) -> str:
        action = f"remove {self.path}" if self.path else " ".join(self.argv)
        return f"{self.what}: {action}"


@functools.cache
def state_defaults() -> dict[str, Any]:
    """salt/states/kiss/defaults.yaml: the paths and programs of the kiss states."""
    path = paths.salt_root() / "states" / "kiss" / "defaults.yaml"
    return dict(yaml.safe_load(path.read_text(encoding="utf-8"))["kiss"])


def settings(lookup: Mapping[str, Any]) -> dict[str, str]:
    merged = {**NUKE_DEFAULTS, **state_defaults(), **lookup}
    return {key: str(merged[key] or "") for key in SETTINGS}


def unit_name(vm: str) -> str:
    return f"vm@{names.validate_vm_name(vm)}.service"


def _under_root(settings: Mapping[str, str], key: str, name: str) -> Path:
    return Path(settings["root"] or "/") / settings[key].lstrip("/") / name


def _record_lvs(vm: str, record: Mapping[str, Any]) -> list[str]:
    return [lvm.lv_name(vm, disk["name"]) for disk in record.get("disks", [])]


# Six parameters: the VM, what the pillar says of it and of the node, the probed system, force.
def plan(
    vm: str,
    record: Mapping[str, Any],
    volume_group: str,
    lookup: Mapping[str, Any],
    system: System,
    force: bool = False,
) -> list[Step]:
    """Probe this node (read-only) and list every nuke step, marking those still needed."""
    vm = names.validate_vm_name(vm)
    config = settings(lookup)
    unit = unit_name(vm)
    state = system.run([config["systemctl"], "is-active", unit]).stdout.strip()
    active = state in ACTIVE_STATES
    if active and not force:
        raise NukeError(
            f"{unit} is {state}: stop the VM first (systemctl stop {unit}), or nuke with force=True"
        )
    listing = system.run(lvm.lvs_command(config["lvs"], volume_group))
    if listing.returncode != 0:
        raise NukeError(f"cannot list the LVs of {volume_group}: {listing.stderr.strip()}")
    existing = lvm.parse_lvs(listing.stdout)
    resource_file = _under_root(config, "drbd_dir", f"{vm}.res")
    vm_config = _under_root(config, "vm_conf_dir", f"{vm}.conf")
    drbdadm = (config["drbdadm"], "-c", str(resource_file))
    resource_up = resource_file.exists() and system.run([*drbdadm, "role", vm]).returncode == 0
    lvs = _record_lvs(vm, record)
    return [
        Step("stop the VM", (config["systemctl"], "stop", unit), needed=active),
        Step("DRBD disconnect", (*drbdadm, "disconnect", vm), needed=resource_up),
        Step("DRBD down", (*drbdadm, "down", vm), needed=resource_up),
        Step(
            "DRBD wipe-md",
            (*drbdadm, "--", "--force", "wipe-md", vm),
            needed=resource_file.exists() and bool(lvs) and lvs[0] in existing,
        ),
        Step("remove the DRBD resource file", path=resource_file, needed=resource_file.exists()),
        Step("disable the unit", (config["systemctl"], "disable", unit)),
        Step("remove the VM config", path=vm_config, needed=vm_config.exists()),
        *(
            Step(
                f"remove LV {lv}",
                (config["lvremove"], "--yes", f"{volume_group}/{lv}"),
                needed=lv in existing,
            )
            for lv in lvs
        ),
    ]


def execute(vm: str, steps: Sequence[Step], system: System) -> list[str]:
    """Run the needed steps in order; stop at the first failure. Returns what was done."""
    done: list[str] = []
    for step in steps:
        if not step.needed:
            continue
        if step.path is not None:
            step.path.unlink(missing_ok=True)
        else:
            completed = system.run(step.argv)
            if completed.returncode != 0:
                detail = " ".join((completed.stderr or completed.stdout).split())
                already = "\n".join(f"  done: {line}" for line in done)
                raise NukeError(
                    f"nuke of {vm} failed at {step.describe()}: {detail}"
                    + (f"\n{already}" if already else "")
                )
        done.append(step.describe())
    return done


def find_record(kiss: Mapping[str, Any], vm: str) -> Mapping[str, Any]:
    """The VM's record from pillar `kiss` (disabled or not)."""
    for group in ("disabled_vms", "vms"):
        if vm in kiss.get(group, {}):
            return kiss[group][vm]
    raise NukeError(
        f"no VM {vm!r} in the cache of cluster {kiss['cluster']['name']}: nothing to nuke"
    )


def vm_file(site: Path, kiss: Mapping[str, Any], vm: str) -> Path:
    return Path(site) / "vm-config" / kiss["cluster"]["name"] / f"{vm}.yml"


# Keyword-only beyond three: the options of `kiss.nuke` and the seam of the tests (system).
def nuke(
    site: Path,
    kiss: Mapping[str, Any],
    vm: str,
    *,
    lookup_overrides: Mapping[str, Any] | None = None,
    test: bool = False,
    force: bool = False,
    system: System | None = None,
) -> list[str]:
    """Nuke `vm` on this node (or, with `test`, list every step). Returns readable lines."""
    vm = names.validate_vm_name(vm)
    path = vm_file(site, kiss, vm)
    if path.exists():
        raise NukeError(
            f"{path} still exists: disable the VM first (rename the file away from *.yml and "
            "run kiss-configure), then nuke it"
        )
    record = find_record(kiss, vm)
    lookup = {**kiss["cluster"].get("lookup", {}), **(lookup_overrides or {})}
    system = system or HostSystem()
    steps = plan(vm, record, kiss["cluster"]["volume_group"], lookup, system, force)
    if test:
        return [
            ("would " if step.needed else "already done, skip ") + step.describe() for step in steps
        ]
    return execute(vm, steps, system)
