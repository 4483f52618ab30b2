"""Sizes, numbers and the single values of the cluster file, each checked or normalized.

Every checker takes the value as YAML gave it and returns the clean value, or raises ValueError
with the message that follows the file and field in the inventory's report.
"""

import ipaddress
import re
from pathlib import Path

from kisscluster import paths

MINORS_PER_VM = 4
MAX_EXTRA_DISKS = MINORS_PER_VM - 1
#: With a 4-octet MAC prefix the first minor fills two octets; 4096 minors = 1024 VMs.
MINOR_LIMIT_WIDE = 4096
#: The original single-octet scheme of a 5-octet prefix.
MINOR_LIMIT_NARROW = 256
#: DRBD listens on drbd_port_base + first minor; by default 10000, above every VNC port
#: (5900 + minor < 10000). A site adopted from the original KISScluster keeps its 7788.
DRBD_PORT_BASE = 10000
VNC_PORT_BASE = 5900
#: How a DRBD device is named: `minor` /dev/drbd<minor> (the default); `vm_disk`
#: /dev/drbd_<vm>_<disk>, the original KISScluster's names, which an adopted site keeps.
DRBD_DEVICE_NAMES = ("minor", "vm_disk")
#: When kiss-drbd-verify.timer runs DRBD online verify (systemd OnCalendar syntax; kiss.vms
#: checks it with `systemd-analyze calendar` before it writes the timer).
VERIFY_SCHEDULE = "weekly"
_ONE_LINE = re.compile(r"[A-Za-z0-9 :*,./~+-]{1,200}\Z")
# A file name, no directory: the ISO lies in the node's iso_dir (salt/states/kiss/defaults.yaml).
_ISO_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,195}\.iso\Z")
MIN_SIZE_BYTES = 1 << 20

_SIZE = re.compile(r"(\d+)(?:\.(\d+))?([bBsSkKmMgGtTpPeE]?)\Z")
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
_KEYBOARD_LAYOUT = re.compile(r"[a-z]{2}(-[a-z]{2,3})?\Z")
_MAC_OCTET = re.compile(r"[0-9a-fA-F]{2}\Z")
TEMPLATE_SUFFIX = ".conf.jinja"


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
    whole, fraction, unit = match.group(1), match.group(2) or "", match.group(3) or "m"
    scaled = int(whole + fraction) * _UNIT_BYTES[unit.lower()]
    size, remainder = divmod(scaled, 10 ** len(fraction))
    if remainder:
        raise ValueError(f"{text!r} is not a whole number of bytes")
    if size < MIN_SIZE_BYTES:
        raise ValueError(f"{text!r} is smaller than 1M")
    return size


def format_size(size_bytes: int) -> str:
    """The normal form of a size: the largest binary unit that divides it exactly."""
    for unit in _NORMAL_UNITS:
        factor = _UNIT_BYTES[unit.lower()]
        if size_bytes % factor == 0:
            return f"{size_bytes // factor}{unit}"
    return f"{size_bytes}B"


def normalize_size(value: object) -> str:
    return format_size(parse_size(value))


def drbd_device_names(value: object) -> str:
    if value not in DRBD_DEVICE_NAMES:
        raise ValueError(f"must be one of {', '.join(DRBD_DEVICE_NAMES)}, got {value!r}")
    return str(value)


def whole_number(value: object, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"must be a whole number from {low} to {high}, got {value!r}")
    return value


def closest(key: str, known: tuple[str, ...]) -> str:
    """` (did you mean 'x'?)` for the known word closest to a misspelt one, or nothing."""
    import difflib  # only a misspelling needs it: not imported on every run

    close = difflib.get_close_matches(key, known, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def is_keyboard_layout(value: object) -> bool:
    """A qemu keyboard layout (`-k`): en-us, de-ch, fr, …"""
    return isinstance(value, str) and bool(_KEYBOARD_LAYOUT.match(value))


def keyboard(value: object) -> str:
    if not is_keyboard_layout(value):
        raise ValueError(f"must be a qemu keyboard layout (en-us, de-ch, …), got {value!r}")
    return str(value)


def volume_group(value: object) -> str:
    if not isinstance(value, str) or not _VOLUME_GROUP.match(value) or len(value) > 64:
        raise ValueError(f"must be an LVM volume group name, got {value!r}")
    return value


def address(value: object) -> str:
    try:
        return str(ipaddress.ip_address(str(value)))
    except ValueError:
        raise ValueError(f"must be an IP address, got {value!r}") from None


def fence_device(value: object) -> str:
    """A member's power fencing device: `agent name=value...` (kisscluster.heartbeat.power)."""
    from kisscluster.heartbeat import power  # only where a site fences: the inventory stays fast

    if not isinstance(value, str) or "\n" in value:
        raise ValueError(f"must be one line `agent name=value...`, got {value!r}")
    try:
        device = power.parse_device(value)
    except power.FenceConfigError as exc:
        raise ValueError(str(exc)) from None
    return "" if device is None else device.line()


def mac_prefix(value: object) -> str:
    octets = str(value).split(":") if isinstance(value, str) else []
    if len(octets) not in (4, 5) or not all(_MAC_OCTET.match(o) for o in octets):
        raise ValueError(
            f"must be 4 hex octets (like 52:54:00:4b; 1,024 VMs) or 5 (the old single-octet "
            f"scheme, 64 VMs), got {value!r}"
        )
    if int(octets[0], 16) & 1:
        raise ValueError(f"{value!r} is a multicast prefix: its first octet must be even")
    return ":".join(o.lower() for o in octets)


_BOOLEAN_WORDS = {"true": True, "yes": True, "on": True, "false": False, "no": False, "off": False}


def boolean(value: object) -> bool:
    """A YAML boolean, also as a word (VM files are read without implicit booleans)."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in _BOOLEAN_WORDS:
        return _BOOLEAN_WORDS[value.lower()]
    raise ValueError(f"must be true or false, got {value!r}")


def iso_file_name(value: object) -> str:
    """The file name of an installation ISO in the nodes' ISO directory."""
    if not isinstance(value, str) or not _ISO_FILE.match(value):
        raise ValueError(
            "must be the file name of an ISO in the nodes' ISO directory (letters, digits, "
            f"'_', '.', '-', ending in .iso; no directory), got {value!r}"
        )
    return value


def one_line(value: object) -> str:
    """A short line of the characters calendar events use (no quotes, no newline)."""
    if not isinstance(value, str) or not _ONE_LINE.match(value) or not value.strip():
        raise ValueError(
            f"must be one line of letters, digits, spaces and :*,./~+- (at most 200), got {value!r}"
        )
    return value


def mapping(value: object) -> dict:
    if not isinstance(value, dict):
        raise ValueError(f"must be a mapping, got {value!r}")
    return value


def template(value: object, templates: tuple[str, ...]) -> str:
    if value not in templates:
        raise ValueError(
            f"{value!r} names no template; there are: {', '.join(templates)}"
            f"{closest(str(value), templates)}"
        )
    return str(value)


def available_templates(site: Path | None = None) -> tuple[str, ...]:
    """The template names a VM file may give: shipped ones, and the site's own if `site`."""
    directories = paths.template_dirs(site) if site is not None else [paths.vm_templates_dir()]
    return tuple(
        sorted(
            {
                p.name[: -len(TEMPLATE_SUFFIX)]
                for directory in directories
                for p in directory.glob(f"*{TEMPLATE_SUFFIX}")
                if p.is_file()
            }
        )
    )
