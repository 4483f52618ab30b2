"""The qemu parameter templates: what they render, what they refuse, and that the real qemu accepts
the command line vm@.service would build from them.

The qemu run swaps what this host lacks: the DRBD devices become raw image files, the bridge
(qemu-bridge-helper needs a configured bridge) becomes user networking, and KVM/`-cpu host`
become TCG; qemu starts paused (-S) and is told to quit through the monitor socket. The lab boots
the real thing.
"""

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kisscluster import inventory, paths, pillar, vmconf

pytestmark = pytest.mark.fast

SETTINGS = {
    "run_dir": "/run/kvm",
    "vnc_listen": "127.0.0.1",
    "qemu_machine": "q35",
    "qemu_accel": "kvm",
    "qemu_cpu": "host",
}
TEMPLATES = ("linux", "virtio-blk", "windows")


@pytest.fixture
def db(site):
    return pillar.build(site)["vms"]["db"]


def qemu_args(text: str) -> list[str]:
    """What vm@.service's `$QEMU_ARGS $QEMU_INSTALL_ARGS` give qemu: backslash-newline joins
    lines, each variable splits on whitespace (systemd's EnvironmentFile= and ExecStart= rules)."""
    joined = text.replace("\\\n", "")
    values = dict(line.split("=", 1) for line in joined.splitlines() if line.startswith("QEMU_"))
    return values["QEMU_ARGS"].split() + values.get("QEMU_INSTALL_ARGS", "").split()


def test_the_inventory_offers_exactly_the_shipped_templates():
    assert inventory.available_templates() == TEMPLATES


def test_a_site_template_is_offered_and_wins_over_a_shipped_one(site):
    # An adopted site keeps its own templates (the original's `gaia`) beside vm-config/.
    own = site / "vm-templates"
    own.mkdir()
    (own / "gaia.conf.jinja").write_text("QEMU_ARGS=-name {{ name }} -m {{ ram_megs }}\n")
    (own / "linux.conf.jinja").write_text("QEMU_ARGS=-name {{ name }} -site-linux\n")
    assert inventory.available_templates(site) == tuple(sorted({*TEMPLATES, "gaia"}))
    vm_file = site / "vm-config" / "example" / "db.yml"
    vm_file.write_text(vm_file.read_text() + "template: gaia\n")
    inventory.run(site)
    kiss = pillar.build(site)
    dirs = paths.template_dirs(site)
    assert vmconf.render(dirs, kiss["vms"]["db"], "en-us", SETTINGS) == "QEMU_ARGS=-name db -m 64\n"
    assert vmconf.render(dirs, kiss["vms"]["web"], "en-us", SETTINGS).endswith("-site-linux\n")


@pytest.mark.parametrize("template", TEMPLATES)
def test_every_template_gives_each_disk_its_drbd_device_and_the_vm_its_identity(db, template):
    args = qemu_args(
        vmconf.render([paths.vm_templates_dir()], dict(db, template=template), "de-ch", SETTINGS)
    )
    text = " ".join(args)
    for volume in (0, 1, 2):
        assert f"file=/dev/drbd/by-res/db/{volume}," in text
    assert "mac=52:54:00:4b:00:00" in text
    assert args[args.index("-vnc") + 1] == "127.0.0.1:0"
    assert args[args.index("-k") + 1] == "de-ch"
    assert args[args.index("-m") + 1] == "64"
    assert "unix:/run/kvm/db.monitor,server=on,wait=off" in args
    assert "unix:/run/kvm/db.qmp,server=on,wait=off" in args
    assert "unix:/run/kvm/db.serial,server=on,wait=off" in args
    assert "bootindex=1" in text and text.count("bootindex") == 1


@pytest.mark.parametrize("template", TEMPLATES)
def test_an_install_iso_is_a_cdrom_that_boots_first_whatever_the_template(db, template):
    vm = dict(db, template=template, install_iso="debian-12.8.0-amd64-netinst.iso")
    settings = dict(SETTINGS, iso_dir="/var/lib/kisscluster/iso")
    args = qemu_args(vmconf.render([paths.vm_templates_dir()], vm, "en-us", settings))
    drive = "file=/var/lib/kisscluster/iso/debian-12.8.0-amd64-netinst.iso,if=none,id=install"
    assert any(arg.startswith(drive) and "media=cdrom" in arg for arg in args)
    assert "ide-cd,drive=install,bootindex=0" in args
    without = qemu_args(vmconf.render([paths.vm_templates_dir()], db, "en-us", settings))
    assert "install" not in " ".join(without)


def test_windows_has_a_cdrom_for_drivers(db):
    text = vmconf.render(
        [paths.vm_templates_dir()], dict(db, template="windows"), "en-us", SETTINGS
    )
    assert "media=cdrom" in text and "ide-cd" in text


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"network_bridge": "br0 -hda /etc/shadow"}, "bridge name"),
        ({"mac": "52:54:00:4b:00"}, "MAC"),
        ({"template": "../../etc/passwd"}, "template name"),
        ({"template": "nosuch"}, "no template"),
        ({"name": "web;reboot"}, "safe identifier"),
        ({"install_iso": "../../etc/shadow.iso"}, "ISO"),
        ({"install_iso": "x.iso -hda /etc/shadow"}, "ISO"),
    ],
)
def test_bad_values_never_reach_the_file(db, change, message):
    settings = dict(SETTINGS, iso_dir="/var/lib/kisscluster/iso")
    with pytest.raises(ValueError, match=message):
        vmconf.render([paths.vm_templates_dir()], dict(db, **change), "en-us", settings)


def test_settings_must_be_single_words(db):
    with pytest.raises(ValueError, match="vnc_listen"):
        vmconf.render(
            [paths.vm_templates_dir()], db, "en-us", dict(SETTINGS, vnc_listen="0.0.0.0 -S")
        )


def _wait_for(path: Path, process: subprocess.Popen, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(f"qemu exited {process.returncode}: {process.stderr.read()}")
        if time.monotonic() > deadline:
            raise AssertionError("qemu did not create its monitor socket")
        time.sleep(0.1)


@pytest.mark.parametrize("install_iso", [None, "install.iso"])
@pytest.mark.parametrize("template", TEMPLATES)
def test_real_qemu_accepts_the_command_line(db, template, install_iso, tmp_path):
    settings = dict(SETTINGS, run_dir=str(tmp_path), qemu_accel="tcg", qemu_cpu="max",
                    iso_dir=str(tmp_path))  # fmt: skip
    (tmp_path / "install.iso").write_bytes(bytes(2048))
    vm = dict(db, template=template, install_iso=install_iso)
    text = vmconf.render([paths.vm_templates_dir()], vm, "en-us", settings)
    args = []
    for arg in qemu_args(text):
        arg = re.sub(r"file=/dev/drbd/by-res/db/(\d)", rf"file={tmp_path}/disk\1.img", arg)
        arg = arg.replace("bridge,id=net0,br=br0", "user,id=net0")
        arg = arg.replace(",aio=native", "")
        args.append(arg)
    for volume in (0, 1, 2):
        with (tmp_path / f"disk{volume}.img").open("wb") as image:
            image.truncate(1 << 20)
    vnc = args.index("-vnc")
    args[vnc + 1] = "none"
    process = subprocess.Popen(
        ["qemu-system-x86_64", *args, "-S"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "TMPDIR": str(tmp_path)},
    )
    try:
        monitor = tmp_path / "db.monitor"
        _wait_for(monitor, process)
        with socket.socket(socket.AF_UNIX) as connection:
            connection.settimeout(10)
            connection.connect(str(monitor))
            connection.sendall(b"quit\n")
            while connection.recv(4096):  # qemu closes the monitor as it quits
                pass
        assert process.wait(timeout=30) == 0, process.stderr.read()
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
