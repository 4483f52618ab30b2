"""The original KISScluster's templates in kisscluster's form (salt/states/kiss/templates/original,
which kiss-adopt gives an adopted site) give a guest the machine the original gave it.

For each template, real qemu starts (stopped, -S) twice: once with the command line the
original's vm@.service built from its vm.conf.<template> (written out here as that unit and those
files render it), once with kisscluster's QEMU_ARGS from the template; the PCI devices, the
device tree (disks, their ids and buses, the NIC and its MAC) must be the same. What differs on
purpose is not seen by the guest: socket paths, the VNC address, format/cache options of a drive.
"""

import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

from kisscluster import paths, pillar, vmconf

NAME, MINOR, MAC_BASE = "db", 8, "02:00:c0:ff:ee"
SETTINGS = {
    "run_dir": "/run/kvm",
    "vnc_listen": "127.0.0.1",
    "qemu_machine": "q35",
    "qemu_accel": "tcg",
    "qemu_cpu": "max",
}


def original_drives(template: str, volumes: int) -> list[str]:
    """$DRIVES of the original's vm.conf.<template> for a VM with `volumes` volumes."""
    device = f"/dev/drbd/by-res/{NAME}"
    if template == "gaia":
        return [arg for v in range(volumes) for arg in ("-drive", f"file={device}/{v}")]
    if template == "virtio-blk":
        drives = []
        for v in range(volumes):
            drives += ["-device", f"virtio-blk-pci,scsi=off,drive=drive{v}", "-drive",
                       f"file={device}/{v},id=drive{v},if=none,aio=native,discard=on"]  # fmt: skip
        return [*drives, "-drive", "index=0,media=cdrom"]
    drives = ["-device", "virtio-scsi-pci,id=scsi"]
    for v in range(volumes):
        letter = "sd" + chr(97 + v)
        drives += ["-device", f"scsi-hd,drive={letter}", "-drive",
                   f"file={device}/{v},id={letter},if=none,aio=native,discard=on"]  # fmt: skip
    return [*drives, "-drive", "index=0,media=cdrom"]


def original_command(template: str, volumes: int, run_dir: Path) -> list[str]:
    """The ExecStart of the original's vm@.service with its vm.conf.<template> (CPU=host
    becomes max and -enable-kvm tcg here: no KVM in CI)."""
    rtc = "localtime" if template == "windows" else "utc"
    return [
        "-accel", "tcg", "-name", NAME,
        "-monitor", f"unix:{run_dir}/{NAME}.mon,server,nowait",
        "-serial", f"unix:{run_dir}/{NAME}.serial,server,nowait",
        "-usbdevice", "tablet", "-rtc", f"base={rtc}", "-cpu", "max", "-smp", "2", "-m", "64",
        "-net", "bridge,br=br0", "-net", f"nic,model=virtio,macaddr={MAC_BASE}:{MINOR:x}",
        "-vnc", f":{MINOR}", "-k", "de",
        *original_drives(template, volumes),
    ]  # fmt: skip


def kisscluster_command(template: str, vm: dict, run_dir: Path) -> list[str]:
    settings = dict(SETTINGS, run_dir=str(run_dir))
    text = vmconf.render([paths.original_templates_dir()], vm, "de", settings)
    joined = text.replace("\\\n", "")
    (line,) = [line for line in joined.splitlines() if line.startswith("QEMU_ARGS=")]
    return line.removeprefix("QEMU_ARGS=").split()


def runnable(args: list[str], images: Path) -> list[str]:
    """The command made startable here, the same way on both sides: disk images for the DRBD
    devices, user networking for the bridge, no VNC, no host-only drive options."""
    out = []
    for arg in args:
        arg = re.sub(rf"file=/dev/drbd/by-res/{NAME}/(\d)", rf"file={images}/disk\1.img", arg)
        arg = arg.replace("bridge,br=br0", "user")
        for host_only in (",aio=native", ",cache=none", ",format=raw"):
            arg = arg.replace(host_only, "")
        out.append(arg)
    out[out.index("-vnc") + 1] = "none"
    return [*out, "-display", "none", "-S"]


def guest_view(args: list[str], directory: Path) -> list[str]:
    """What the guest would see: `info pci` and `info qtree` without addresses that qemu picks
    at random or from the host (BARs, file names)."""
    directory.mkdir()
    monitor = directory / "probe.monitor"
    process = subprocess.Popen(
        ["qemu-system-x86_64", *args, "-monitor", f"unix:{monitor},server=on,wait=off"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not monitor.exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "qemu did not open its monitor"
            time.sleep(0.1)
        text = _ask(monitor, ["info pci", "info qtree", "quit"])
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(timeout=10)
    kept = re.compile(
        r"^\s*(Bus .*|\S.*: PCI device .*|dev: .*|(drive|mac|scsi-id|lun|unit) = .*)$"
    )
    return [line.strip() for line in text.splitlines() if kept.match(line) and "file" not in line]


def _ask(monitor: Path, commands: list[str]) -> str:
    """Each command's whole answer: the next one is sent once the prompt is back (a `quit`
    right behind a long answer can cut it short)."""
    with socket.socket(socket.AF_UNIX) as connection:
        connection.settimeout(20)
        connection.connect(str(monitor))
        answers = [_until_prompt(connection)]
        for command in commands:
            connection.sendall(f"{command}\n".encode())
            answers.append(_until_prompt(connection))  # after `quit`: until qemu closes it
    return "".join(answers)


def _until_prompt(connection: socket.socket) -> str:
    data = b""
    while not data.endswith(b"(qemu) "):
        chunk = connection.recv(65536)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")


@pytest.mark.parametrize("template", ["linux", "windows", "virtio-blk", "gaia"])
def test_the_guest_sees_the_machine_the_original_gave_it(site, tmp_path, template):
    db = pillar.build(site)["vms"]["db"]  # three volumes: root, data, logs
    vm = dict(db, template=template, mac=f"{MAC_BASE}:{MINOR:02x}", vnc_display=MINOR, cpus=2,
              ram_megs=64, network_bridge="br0")  # fmt: skip
    for volume in range(3):
        with (tmp_path / f"disk{volume}.img").open("wb") as image:
            image.truncate(1 << 20)
    original = guest_view(runnable(original_command(template, 3, tmp_path), tmp_path),
                          tmp_path / "original")  # fmt: skip
    ours = guest_view(runnable(kisscluster_command(template, vm, tmp_path), tmp_path),
                      tmp_path / "kisscluster")  # fmt: skip
    assert any("1af4:1000" in line for line in ours), ours  # the virtio NIC is there
    assert ours == original
