"""What the kiss states write on one node, as kiss-verify compares it: file by file, rendered by
the states' own code (kisscluster.drbd for the resource files, kisscluster.onlineverify for the
verify timer, the states' unit templates with the settings map.jinja makes).

Paths are the node's own (without the `root` prefix); each wanted file names the command that
writes it again.
"""

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import jinja2

from kisscluster import drbd, names, nuke, onlineverify, paths, placement

#: The units kiss.node writes from salt/states/kiss/templates/units (salt/states/kiss/node).
NODE_UNITS = (
    "vm@.service",
    "drbd-resource@.service",
    "kissclusterd.service",
    "all-vms.target",
    "primary-vms.target",
    "no-vms.target",
    "manual-vms.target",
)
PRIMARY_DROP_IN = "primary-vms.target.d/kisscluster-vms.conf"
TIMER_LINK = f"timers.target.wants/{onlineverify.TIMER}"
FIX_NODE = "salt-call --local state.apply kiss.node"
FIX_VMS = "kiss-configure"


@dataclass(frozen=True)
class WantedFile:
    path: str
    text: str
    fix: str


def _merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """slsutil.merge(strategy=recurse), as map.jinja merges the settings."""
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def settings(kiss: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """map.jinja's `kiss`: defaults.yaml, kisscluster's paths, pillar kiss:cluster:lookup, then the
    node's minion option `kiss_lookup` (`overrides`)."""
    ours = {
        "kissclusterd_conf": paths.KISSCLUSTERD_CONF,
        "placement_file": paths.PLACEMENT_FILE,
        "heartbeat": {"secret_file": paths.HEARTBEAT_SECRET_FILE},
    }
    merged = _merge(nuke.state_defaults(), ours)
    merged = _merge(merged, kiss["cluster"].get("lookup") or {})
    merged = _merge(merged, overrides)
    merged["root"] = str(merged.get("root") or "").rstrip("/")
    return merged


@functools.cache
def _templates() -> jinja2.Environment:
    folder = paths.salt_root() / "states" / "kiss" / "templates" / "units"
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(folder)),
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - systemd units, not HTML
        undefined=jinja2.StrictUndefined,
    )


def render_unit(template: str, **context: Any) -> str:
    return _templates().get_template(f"{template}.jinja").render(**context)


def wanted_files(
    kiss: Mapping[str, Any],
    node: str,
    config: Mapping[str, Any],
    placed: placement.Placement = placement.AT_HOME,
) -> list[WantedFile]:
    """Every file kiss.node and kiss.vms write on `node` with the settings `config` and the
    node's placement file (`placed`)."""
    node = names.validate_member_name(node)
    cluster = kiss["cluster"]
    vms = kiss["vms"]
    systemd = config["systemd_dir"]
    found = [
        WantedFile(
            f"{config['drbd_dir']}/{name}.res",
            drbd.render_resource(vm, cluster["members"], cluster["volume_group"]),
            FIX_VMS,
        )
        for name, vm in sorted(vms.items())
    ]
    found += [
        WantedFile(f"{systemd}/{unit}", render_unit(unit, kiss=config), FIX_NODE)
        for unit in NODE_UNITS
    ]
    homes = {name: vm["primary_on"] for name, vm in vms.items()}
    home, away = placement.split(homes, node, placed)
    drop_in = render_unit("primary-vms-wants.conf", node=node, wants=home, conflicts=away)
    schedule = cluster.get("verify_schedule") or onlineverify.DEFAULT_SCHEDULE
    service = onlineverify.service_unit(vms, node, config["python"], config["drbdadm"])
    found += [
        WantedFile(f"{systemd}/{PRIMARY_DROP_IN}", drop_in, FIX_VMS),
        WantedFile(f"{systemd}/{onlineverify.SERVICE}", service, FIX_VMS),
        WantedFile(f"{systemd}/{onlineverify.TIMER}", onlineverify.timer_unit(schedule), FIX_VMS),
    ]
    return found


def unit_files(config: Mapping[str, Any]) -> list[str]:
    """The unit files (not the resource files) `wanted_files` lists, for the gatherer."""
    systemd = config["systemd_dir"]
    extra = (PRIMARY_DROP_IN, onlineverify.SERVICE, onlineverify.TIMER)
    return [f"{systemd}/{unit}" for unit in (*NODE_UNITS, *extra)]
