"""Files kiss.node renders from the `kiss` pillar: kissclusterd's config and the bridge list."""

import ipaddress
from collections.abc import Iterable, Mapping
from typing import Any

from kisscluster import names
from kisscluster.heartbeat.config import KEYS

#: The addresses and fence devices come from the cluster's members; the rest a site may set in
#: pillar kiss:cluster:heartbeat. In file order.
MEMBER_KEYS = ("stor_addrs", "prod_addrs", "members", "ping_addr", "fence1", "fence2")
HEARTBEAT_KEYS = tuple(key for key in KEYS if key not in MEMBER_KEYS)

BANNER = "# Managed by Salt (kiss.node) from the kiss pillar: local edits are overwritten.\n"


def kissclusterd_conf(cluster: Mapping[str, Any], heartbeat: Mapping[str, Any]) -> str:
    """`/etc/kisscluster/kissclusterd.conf`, identical on both nodes."""
    unknown = sorted(set(heartbeat) - set(HEARTBEAT_KEYS))
    if unknown:
        raise ValueError(
            f"pillar kiss:cluster:heartbeat: unknown key(s) {', '.join(unknown)}; "
            f"known: {', '.join(HEARTBEAT_KEYS)}"
        )
    missing = [key for key in HEARTBEAT_KEYS if key not in heartbeat]
    if missing:
        raise ValueError(f"kissclusterd settings lack {', '.join(missing)}")
    members = cluster["members"]
    lines = [
        BANNER.rstrip("\n"),
        "# Both members in cluster order: a daemon finds itself by which address is local.",
        "[kissclusterd]",
        "stor_addrs = " + " ".join(str(ipaddress.ip_address(m["stor_addr"])) for m in members),
        "prod_addrs = " + " ".join(str(ipaddress.ip_address(m["prod_addr"])) for m in members),
        "# Their names: kiss-maintenance marks one by name (kisscluster/placement.py).",
        "members = " + " ".join(names.validate_member_name(m["name"]) for m in members),
        f"ping_addr = {ipaddress.ip_address(cluster['ping_addr'])}",
        "# Power fencing of each member (kisscluster/heartbeat/power.py); empty: none.",
        *(f"fence{i} = {m.get('fence', '')}".rstrip() for i, m in enumerate(members, 1)),
    ]
    for key in HEARTBEAT_KEYS:
        value = str(heartbeat[key])
        if "\n" in value:
            raise ValueError(f"pillar kiss:cluster:heartbeat:{key} must be one line")
        lines.append(f"{key} = {value}".rstrip())
    return "\n".join(lines) + "\n"


def bridges(default_bridge: str, vms: Iterable[Mapping[str, Any]]) -> list[str]:
    """Every bridge a VM may join: the cluster's default and each VM's, active or disabled."""
    found = {names.validate_bridge_name(default_bridge)}
    found.update(names.validate_bridge_name(vm["network_bridge"]) for vm in vms)
    return sorted(found)
