"""LVM for VM disks: command builders and the parsers of `lvs`/`vgs --reportformat json`.

Creation and growth live here: kiss.vms never shrinks or removes a logical volume.
"""

import json

from kisscluster import names

#: The fields kiss.vms reads, sizes in bytes without a unit suffix.
LVS_OPTIONS = ("--reportformat", "json", "--units", "b", "--nosuffix", "-o", "lv_name,lv_size")


class LvmError(Exception):
    """An LVM command failed or printed something this module cannot read."""


def lv_name(vm: str, disk: str) -> str:
    """`<vm>_<disk>`: validated parts, so `_` can only be the separator."""
    return f"{names.validate_vm_name(vm)}_{names.validate_disk_name(disk)}"


def lvs_command(lvs: str, volume_group: str) -> list[str]:
    return [lvs, *LVS_OPTIONS, volume_group]


def lvcreate_command(lvcreate: str, volume_group: str, name: str, size_bytes: int) -> list[str]:
    """Create `volume_group/name` of exactly `size_bytes`; `--yes` wipes stale signatures."""
    if size_bytes <= 0:
        raise ValueError(f"size of {name} must be positive, got {size_bytes}")
    return [lvcreate, "--yes", "--name", name, "--size", f"{size_bytes}b", volume_group]


def lvextend_command(lvextend: str, volume_group: str, name: str, size_bytes: int) -> list[str]:
    """Grow `volume_group/name` to `size_bytes` (LVM rounds up to whole extents)."""
    if size_bytes <= 0:
        raise ValueError(f"size of {name} must be positive, got {size_bytes}")
    return [lvextend, "--size", f"{size_bytes}b", f"{volume_group}/{name}"]


def extent_size_command(vgs: str, volume_group: str) -> list[str]:
    return [vgs, "--reportformat", "json", "--units", "b", "--nosuffix", "-o", "vg_extent_size",
            volume_group]  # fmt: skip


def parse_extent_size(text: str) -> int:
    """The extent size in bytes, from the output of `extent_size_command`."""
    try:
        (row,) = [row for part in json.loads(text)["report"] for row in part.get("vg", [])]
        return int(row["vg_extent_size"])
    except (ValueError, KeyError, TypeError) as exc:
        raise LvmError(f"cannot read the output of vgs ({exc}): {text[:200]!r}") from exc


def parse_lvs(text: str) -> dict[str, int]:
    """LV name -> size in bytes, from the output of `lvs_command`."""
    try:
        report = json.loads(text)["report"]
        rows = [row for part in report for row in part.get("lv", [])]
        return {row["lv_name"]: int(row["lv_size"]) for row in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise LvmError(f"cannot read the output of lvs ({exc}): {text[:200]!r}") from exc
