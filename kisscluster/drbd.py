"""DRBD 8.4 for VM disks: the resource file of a VM and the command builders.

A VM's resource is named like the VM. Volume 0 is the root disk, volume n the VM's extra disk n,
each with its fixed minor from the inventory and internal metadata; both members listen on
one port derived from the VM's first minor. A device is /dev/drbd<minor>, or on a site adopted
from the original KISScluster the name the original gave it, /dev/drbd_<vm>_<disk>.
"""

import ipaddress
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from kisscluster import lvm, names

BY_RES = "/dev/drbd/by-res"
BM_SECTORS_PER_EXTENT = 1 << (24 - 9)  # one bitmap sector covers 16 MiB
_PROC_VOLUME = re.compile(
    r"^\s*(?P<minor>\d+): cs:(?P<cs>\S+) ro:(?P<role>[^/\s]+)/(?P<peer_role>\S+) "
    r"ds:(?P<disk>[^/\s]+)/(?P<peer_disk>\S+)\s+(?:[ABC]\s+)?(?P<io>[rs])"
)
_PROC_MINOR = re.compile(r"^\s*\d+:")
_SYNCED = re.compile(r"sync'ed:\s*([\d.]+)%")
_FINISH = re.compile(r"finish:\s*(\S+)")

BANNER = "# Managed by Salt (kiss.vms) from the kiss pillar: local edits are overwritten.\n"


def address(addr: str, port: int) -> str:
    """An `address` value: `10.99.0.1:10004` or `ipv6 [fd00::1]:10004`."""
    ip = ipaddress.ip_address(addr)
    if not 0 < port < 65536:
        raise ValueError(f"DRBD port {port} is out of range")
    if ip.version == 6:
        return f"ipv6 [{ip}]:{port}"
    return f"{ip}:{port}"


def device_path(names_style: str, vm: str, disk: str, minor: int) -> str:
    """The DRBD device of a VM's disk: `/dev/drbd<minor>` (style `minor`) or
    `/dev/drbd_<vm>_<disk>` (style `vm_disk`, cluster setting drbd_device_names)."""
    if names_style == "vm_disk":
        return f"/dev/drbd_{lvm.lv_name(vm, disk)}"
    return f"/dev/drbd{int(minor)}"


def render_resource(vm: Mapping[str, Any], members: Sequence[Mapping[str, Any]], vg: str) -> str:
    """The text of `/etc/drbd.d/<vm>.res` for one VM record of the `kiss` pillar."""
    name = names.validate_vm_name(vm["name"])
    port = int(vm["drbd_port"])
    lines = [BANNER.rstrip("\n"), f"# VM {name}: volume 0 is the root disk, volume n extra disk n."]
    lines.append(f"resource {name} {{")
    for disk in sorted(vm["disks"], key=lambda d: int(d["volume"])):
        minor = int(disk["minor"])
        device = disk["drbd_device"]
        if device not in (device_path(s, name, disk["name"], minor) for s in ("minor", "vm_disk")):
            raise ValueError(f"{device!r} is not a DRBD device of {name}'s disk {disk['name']}")
        lines += [
            f"    volume {int(disk['volume'])} {{  # disk {names.validate_disk_name(disk['name'])}",
            f"        device {device} minor {minor};",
            f"        disk /dev/{vg}/{lvm.lv_name(name, disk['name'])};",
            "        meta-disk internal;",
            "    }",
        ]
    for member in members:
        lines += [
            f"    on {names.validate_member_name(member['name'])} {{",
            f"        address {address(member['stor_addr'], port)};",
            "    }",
        ]
    lines.append("}")
    return "\n".join(lines) + "\n"


def proc_volumes(proc_drbd: str) -> dict[int, dict[str, Any]]:
    """The configured minors of /proc/drbd (DRBD 8.4): connection state `cs`, `role` and
    `peer_role`, `disk` and `peer_disk`, `io` ("r" running, "s" suspended: frozen by fencing
    until the fence-peer handler decides); while a resync runs, `synced` (percent) and `finish`
    (DRBD's estimate, h:mm:ss) from the lines below the minor's."""
    volumes: dict[int, dict[str, Any]] = {}
    current: dict[str, Any] | None = None
    for line in proc_drbd.splitlines():
        match = _PROC_VOLUME.match(line)
        if match:
            current = match.groupdict()
            volumes[int(current.pop("minor"))] = current
        elif _PROC_MINOR.match(line):
            current = None  # an Unconfigured minor
        elif current is not None:
            if synced := _SYNCED.search(line):
                current["synced"] = float(synced.group(1))
            if finish := _FINISH.search(line):
                current["finish"] = finish.group(1)
    return volumes


def error_line(stderr: str) -> str:
    """What drbdadm said went wrong: drbdadm-84 puts its version banner before every message,
    so the message is the last line."""
    return (stderr.strip().splitlines() or ["no message"])[-1]


def resource_volume(resource: str, volume: int) -> str:
    return f"{names.validate_vm_name(resource)}/{int(volume)}"


def create_md_command(drbdadm: str, resource: str, volume: int) -> list[str]:
    """Fresh internal metadata on a volume whose LV was just created: `--force` skips the question
    drbdmeta asks when the new LV's extents still hold an old signature."""
    return [drbdadm, "--force", "create-md", resource_volume(resource, volume)]


def adjust_command(drbdadm: str, resource: str) -> list[str]:
    return [drbdadm, "adjust", names.validate_vm_name(resource)]


def _target(resource: str, volume: int | None) -> str:
    """A whole resource, or one of its volumes (`RES/VOL`)."""
    return names.validate_vm_name(resource) if volume is None else resource_volume(resource, volume)


def primary_force_command(drbdadm: str, resource: str, volume: int | None = None) -> list[str]:
    """Declare this node's data good: the initial sync runs from here to the peer. DRBD 8.4's
    `--force` (`--overwrite-data-of-peer` is its old alias in drbd-utils' v84 drbdsetup)."""
    return [drbdadm, "primary", "--force", _target(resource, volume)]


def secondary_command(drbdadm: str, resource: str, volume: int | None = None) -> list[str]:
    return [drbdadm, "secondary", _target(resource, volume)]


def two_primaries_command(drbdadm: str, resource: str, allow: bool) -> list[str]:
    """Allow (or no longer allow) both nodes to be Primary: a live migration's window."""
    return [drbdadm, "net-options", f"--allow-two-primaries={'yes' if allow else 'no'}", resource]


def resize_command(drbdadm: str, resource: str, volume: int) -> list[str]:
    """Grow a volume to the smaller of its two backing LVs (DRBD 8.4 needs a Primary and the
    peer connected; with the peer's LV not grown yet it keeps its size and tells the peer)."""
    return [drbdadm, "resize", resource_volume(resource, volume)]


def by_res_path(resource: str, volume: int) -> str:
    """The udev link of a volume's device: what qemu opens (kisscluster.vmconf)."""
    return f"{BY_RES}/{names.validate_vm_name(resource)}/{int(volume)}"


def usable_bytes(lv_bytes: int, al_sectors: int = 64) -> int:
    """The largest device DRBD 8.4 makes of an LV with internal metadata: the LV less the
    bitmap (one sector per 16 MiB, in 4 KiB steps), the 4 KiB superblock and the 32 KiB activity
    log (`drbd_md_set_sector_offsets` and `drbd_get_max_capacity` in LINBIT's drbd-8.4)."""
    sectors = (lv_bytes // 512) & ~7
    bitmap = -(-(lv_bytes // 512) // BM_SECTORS_PER_EXTENT)
    metadata = -(-bitmap // 8) * 8 + 8 + al_sectors
    return max(sectors - metadata, 0) * 512


def dump_command(drbdadm: str, config_file: Path | str) -> list[str]:
    """Parse `config_file` alone and print it: needs no kernel module and no matching host name.
    kiss.vms checks each resource file so (`check_cmd` in salt/states/kiss/vms/disks.sls)."""
    return [drbdadm, "-c", str(config_file), "dump", "all"]
