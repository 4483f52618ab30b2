"""Where the operator put VMs, and which node is in maintenance: the placement file.

`kiss-migrate` moves a running VM to the peer; from then on the VM stays there, away from its
`primary_on` node, until it is migrated back or a failover moves it. The placement file of each
node (`/var/lib/kisscluster/placement.json`, lookup key `placement_file`, the same on both
nodes) records each VM away from home and the node it was moved to, and the nodes in
maintenance (`kiss-maintenance`). It survives reboots and kiss-configure: kiss.vms renders
primary-vms.target's drop-in from `primary_on` and this file, so that target wants the VMs
placed on this node and conflicts with the others (a drop-in in /etc cannot be overridden from
/run, and a Conflicts= cannot be reset by a second drop-in). kissclusterd ranks a node in
maintenance below a live peer (kisscluster.heartbeat.core), so that node gets no VM back while
the peer can run them.
"""

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kisscluster import names, paths
from kisscluster.atomic import write_atomic

PLACEMENT_FILE = Path(paths.PLACEMENT_FILE)
_DROP_IN_LINE = re.compile(r"^(Wants|Conflicts)=vm@([A-Za-z][A-Za-z0-9_-]*)\.service\s*$", re.M)


class PlacementError(ValueError):
    """The placement file cannot be read as one."""


@dataclass(frozen=True)
class Placement:
    away: Mapping[str, str] = field(default_factory=dict)  # VM -> the node it was moved to
    maintenance: tuple[str, ...] = ()

    def node_of(self, vm: str, primary_on: str) -> str:
        return self.away.get(vm, primary_on)

    def moved(self, vm: str, node: str, primary_on: str) -> "Placement":
        """This placement with `vm` on `node` (no entry once it is back home)."""
        away = {name: where for name, where in self.away.items() if name != vm}
        if node != primary_on:
            away[vm] = node
        return Placement(dict(sorted(away.items())), self.maintenance)

    def with_maintenance(self, node: str, on: bool) -> "Placement":
        others = tuple(n for n in self.maintenance if n != node)
        return Placement(self.away, tuple(sorted((*others, node))) if on else others)

    def as_dict(self) -> dict[str, Any]:
        return {"away": dict(self.away), "maintenance": list(self.maintenance)}


AT_HOME = Placement()  # every VM on its primary_on node, no node in maintenance


def from_dict(data: Any) -> Placement:
    try:
        away, maintenance = data["away"], data["maintenance"]
        return Placement(
            {names.validate_vm_name(vm): names.validate_member_name(node)
             for vm, node in sorted(away.items())},
            tuple(sorted(names.validate_member_name(node) for node in maintenance)),
        )  # fmt: skip
    except (TypeError, KeyError, AttributeError, ValueError) as exc:
        raise PlacementError(f"not a placement: {exc}") from None


def parse(text: str | None) -> Placement:
    """The placement a file holds; none (every VM at home, no maintenance) without a file."""
    if text is None:
        return AT_HOME
    try:
        return from_dict(json.loads(text))
    except json.JSONDecodeError as exc:
        raise PlacementError(f"not JSON: {exc}") from None


def load(path: Path = PLACEMENT_FILE) -> Placement:
    try:
        return parse(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return AT_HOME
    except PlacementError as exc:
        raise PlacementError(f"{path}: {exc}") from None


def save(placement: Placement, path: Path = PLACEMENT_FILE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(placement.as_dict(), indent=2, sort_keys=True) + "\n")


def split(homes: Mapping[str, str], node: str, placement: Placement) -> tuple[list[str], list[str]]:
    """The VMs (name -> primary_on) that primary-vms.target on `node` wants, and the others."""
    here = [vm for vm in sorted(homes) if placement.node_of(vm, homes[vm]) == node]
    return here, [vm for vm in sorted(homes) if vm not in here]


def drop_in_lists(text: str) -> tuple[list[str], list[str]]:
    """The VMs a primary-vms.target drop-in wants, and those it conflicts with."""
    found: dict[str, list[str]] = {"Wants": [], "Conflicts": []}
    for kind, vm in _DROP_IN_LINE.findall(text):
        found[kind].append(vm)
    return sorted(found["Wants"]), sorted(found["Conflicts"])
