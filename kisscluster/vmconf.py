"""`/etc/vm/<vm>.conf`: a VM's qemu parameters, rendered from its template for vm@.service.

The file is a systemd environment file: `QEMU_ARGS=` holds the whole qemu command line after
the binary, continued over lines with a trailing backslash; vm@.service splits it on whitespace.
Every value that reaches it is validated or converted here first, so a template only arranges.
A VM file's `install_iso` adds `QEMU_INSTALL_ARGS=` after the template's text, whatever the
template: that ISO as a CD-ROM, first in the boot order.
"""

import re
from collections.abc import Mapping, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import jinja2

from kisscluster import drbd, names
from kisscluster.inventory.values import is_keyboard_layout, iso_file_name

_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}\Z")
_TEMPLATE = re.compile(r"[a-z][a-z0-9-]*\Z")
_WORD = re.compile(r"[A-Za-z0-9_.:,=/+-]+\Z")

TEMPLATE_SUFFIX = ".conf.jinja"


@cache
def _environment(template_dirs: tuple[str, ...]) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(template_dirs),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,  # noqa: S701 - the output is a systemd environment file, not HTML
    )


def _word(what: str, value: object) -> str:
    """A setting that lands in QEMU_ARGS: one word, no spaces, quotes or backslashes."""
    text = str(value)
    if not _WORD.match(text):
        raise ValueError(f"{what} {value!r} cannot be a qemu argument: use one word")
    return text


def context(vm: Mapping[str, Any], keyboard: str, settings: Mapping[str, Any]) -> dict[str, Any]:
    """The validated values a template sees."""
    name = names.validate_vm_name(vm["name"])
    mac = str(vm["mac"]).lower()
    if not _MAC.match(mac):
        raise ValueError(f"VM {name}: MAC {vm['mac']!r} is not six hex octets")
    if not is_keyboard_layout(keyboard):
        raise ValueError(f"keyboard {keyboard!r} is not a qemu keyboard layout such as en-us")
    run_dir = Path(_word("run_dir", settings["run_dir"]))
    return {
        "name": name,
        "template": vm["template"],
        "cpus": int(vm["cpus"]),
        "ram_megs": int(vm["ram_megs"]),
        "bridge": names.validate_bridge_name(vm["network_bridge"]),
        "mac": mac,
        "vnc_listen": _word("vnc_listen", settings["vnc_listen"]),
        "vnc_display": int(vm["vnc_display"]),
        "keyboard": keyboard,
        "machine": _word("qemu_machine", settings["qemu_machine"]),
        "accel": _word("qemu_accel", settings["qemu_accel"]),
        "cpu": _word("qemu_cpu", settings["qemu_cpu"]),
        "monitor": str(run_dir / f"{name}.monitor"),
        "qmp": str(run_dir / f"{name}.qmp"),
        "serial": str(run_dir / f"{name}.serial"),
        "one_off": str(run_dir / f"{name}.conf"),
        "drives": [
            {
                "volume": int(disk["volume"]),
                "disk": names.validate_disk_name(disk["name"]),
                "device": drbd.by_res_path(name, int(disk["volume"])),
            }
            for disk in sorted(vm["disks"], key=lambda d: int(d["volume"]))
        ],
    }


def render(
    template_dirs: Sequence[Path | str],
    vm: Mapping[str, Any],
    keyboard: str,
    settings: Mapping[str, Any],
) -> str:
    """The text of `/etc/vm/<vm>.conf` from `<dir>/<vm template>.conf.jinja`, the first of
    `template_dirs` that has it (kisscluster.paths.template_dirs: the site's, then shipped)."""
    template = str(vm["template"])
    if not _TEMPLATE.match(template):
        raise ValueError(f"VM {vm['name']}: template name {template!r} is not a safe identifier")
    environment = _environment(tuple(str(d) for d in template_dirs))
    try:
        source = environment.get_template(template + TEMPLATE_SUFFIX)
    except jinja2.TemplateNotFound:
        where = ", ".join(map(str, template_dirs))
        raise ValueError(f"VM {vm['name']}: no template {template!r} in {where}") from None
    return source.render(context(vm, keyboard, settings)) + install_args(vm, settings)


def install_args(vm: Mapping[str, Any], settings: Mapping[str, Any]) -> str:
    """The `QEMU_INSTALL_ARGS=` line of a VM whose file names an install ISO (in `iso_dir`), or
    nothing. The CD-ROM boots before the disks (bootindex 0) for as long as the key stays."""
    if not vm.get("install_iso"):
        return ""
    iso = Path(_word("iso_dir", settings["iso_dir"])) / iso_file_name(vm["install_iso"])
    return (
        "# install_iso of the VM file: remove it there once the OS is installed.\n"
        f"QEMU_INSTALL_ARGS=-drive file={iso},if=none,id=install,media=cdrom,readonly=on,"
        "format=raw -device ide-cd,drive=install,bootindex=0\n"
    )
