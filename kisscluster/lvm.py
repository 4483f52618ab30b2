"""LVM for VM disks: command builders and the parser of `lvs --reportformat json`.

Only creation lives here: kiss.vms never shrinks or removes a logical volume.
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


def parse_lvs(text: str) -> dict[str, int]:
    """LV name -> size in bytes, from the output of `lvs_command`."""
    try:
        report = json.loads(text)["report"]
        rows = [row for part in report for row in part.get("lv", [])]
        return {row["lv_name"]: int(row["lv_size"]) for row in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise LvmError(f"cannot read the output of lvs ({exc}): {text[:200]!r}") from exc
