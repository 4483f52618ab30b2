"""The `kiss` pillar: the cluster definition and the committed cache, with every derived name.

It reads only `pillar/cluster.yml` and the cache, never the VM files: what a node applies is what
the inventory allocated and git carried to it, the same on both nodes.
"""

from pathlib import Path
from typing import Any

from kisscluster import drbd, inventory, lvm
from kisscluster.inventory import Cluster, VmRecord


def describe(record: VmRecord, cluster: Cluster) -> dict[str, Any]:
    """One VM with its minors, port, VNC display, MAC, and per disk its LV and DRBD device."""
    disks = []
    for disk in record.disks():
        lv = lvm.lv_name(record.name, disk.name)
        disks.append(
            {
                "name": disk.name,
                "volume": disk.volume,
                "minor": disk.minor,
                "size": disk.size,
                "size_bytes": None if disk.size is None else inventory.parse_size(disk.size),
                "lv": lv,
                "lv_path": f"/dev/{cluster.volume_group}/{lv}",
                "device": f"/dev/drbd/by-res/{record.name}/{disk.volume}",
                "drbd_device": drbd.device_path(
                    cluster.drbd_device_names, record.name, disk.name, disk.minor
                ),
            }
        )
    return {
        "name": record.name,
        "primary_on": record.primary_on,
        "template": record.template,
        "cpus": record.cpus,
        "ram_megs": record.ram_megs,
        "network_bridge": record.network_bridge,
        "drbd_resource": record.name,
        "drbd_minor": record.drbd_minor,
        "drbd_port": cluster.drbd_port_base + record.drbd_minor,
        "vnc_display": record.drbd_minor,
        "mac": cluster.mac(record.drbd_minor),
        "disks": disks,
        "install_iso": record.install_iso,
    }


def cluster_data(cluster: Cluster) -> dict[str, Any]:
    return {
        "name": cluster.name,
        "members": [
            {"name": m.name, "prod_addr": m.prod_addr, "stor_addr": m.stor_addr, "fence": m.fence}
            for m in cluster.members
        ],
        "primary": cluster.members[0].name,
        "ping_addr": cluster.ping_addr,
        "volume_group": cluster.volume_group,
        "mac_prefix": cluster.mac_prefix,
        "keyboard": cluster.keyboard,
        "default_template": cluster.default_template,
        "default_bridge": cluster.default_bridge,
        "drbd_port_base": cluster.drbd_port_base,
        "drbd_device_names": cluster.drbd_device_names,
        "verify_schedule": cluster.verify_schedule,
        "heartbeat": dict(cluster.heartbeat),
        "lookup": dict(cluster.lookup),
    }


def build(site: Path | str) -> dict[str, Any]:
    """The value of pillar `kiss` for the site repository at `site`."""
    cluster, cache = inventory.read(Path(site))
    records = sorted(cache.vms.values(), key=lambda r: r.name)
    return {
        "site": str(site),
        "cluster": cluster_data(cluster),
        "vms": {r.name: describe(r, cluster) for r in records if not r.disabled},
        "disabled_vms": {r.name: describe(r, cluster) for r in records if r.disabled},
    }


def local_member(kiss: dict[str, Any], minion_id: str) -> dict[str, Any]:
    """This node's member entry: the one named like the minion id."""
    for member in kiss["cluster"]["members"]:
        if member["name"] == minion_id:
            return member
    members = ", ".join(m["name"] for m in kiss["cluster"]["members"])
    raise ValueError(
        f"this node's minion id {minion_id!r} is not a cluster member ({members}): set `id:` in "
        "the minion config to this node's member name"
    )
