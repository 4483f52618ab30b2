"""kiss-vm-monitor against a real qemu (stopped at start, -S) through its QMP socket, as vm@
starts it: power button, reset, pause and resume, CD-ROM in and out, screendump, info."""

import json
import subprocess
import time
from pathlib import Path

import pytest
from salt.exceptions import CommandExecutionError

from kisscluster import vmmonitor


@pytest.fixture
def qemu(tmp_path):
    """A guest named web with a CD-ROM drive and its QMP socket in tmp_path, as /run/kvm."""
    process = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-display", "none", "-S",
         "-name", "web", "-qmp", f"unix:{tmp_path}/web.qmp,server=on,wait=off",
         "-drive", "index=0,media=cdrom"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (tmp_path / "web.qmp").exists():
        assert process.poll() is None, process.stderr.read()
        assert time.monotonic() < deadline, "qemu did not open its QMP socket"
        time.sleep(0.1)
    yield tmp_path
    process.kill()
    process.wait(timeout=10)


def info(run_dir: Path) -> dict:
    return json.loads(vmmonitor.monitor("web", "info", None, run_dir))


def test_pause_resume_reset_and_the_power_button(qemu, capsys):
    assert info(qemu)["status"] == "prelaunch"
    assert vmmonitor.main(["web", "resume", "--run-dir", str(qemu)], here=lambda vm: True) == 0
    assert info(qemu)["status"] == "running"
    assert vmmonitor.main(["web", "pause", "--run-dir", str(qemu)], here=lambda vm: True) == 0
    assert info(qemu)["status"] == "paused"
    for action in ("reset", "powerdown"):
        assert vmmonitor.main(["web", action, "--run-dir", str(qemu)], here=lambda vm: True) == 0
    said = capsys.readouterr().out
    assert "web: cont: done" in said and "web: system_powerdown: done" in said


def test_a_cdrom_goes_in_and_out_and_the_screen_is_saved(qemu, tmp_path):
    iso = tmp_path / "install.iso"
    iso.write_bytes(b"\0" * 2048 * 16)
    said = vmmonitor.monitor("web", "cdrom", str(iso), qemu)
    assert said.endswith(str(iso))
    assert str(iso) in info(qemu)["block"].values()
    vmmonitor.monitor("web", "eject", None, qemu)
    assert str(iso) not in info(qemu)["block"].values()
    shot = tmp_path / "screen.ppm"
    vmmonitor.monitor("web", "screendump", str(shot), qemu)
    assert shot.read_bytes().startswith(b"P6")


def test_what_cannot_be_done_is_said_plainly(qemu, tmp_path, capsys):
    assert vmmonitor.main(["mail", "info", "--run-dir", str(qemu)], here=lambda vm: True) == 1
    assert "no QMP socket at" in capsys.readouterr().err
    assert vmmonitor.main(["web", "cdrom", "--run-dir", str(qemu)], here=lambda vm: True) == 1
    assert "cdrom needs a file" in capsys.readouterr().err
    assert vmmonitor.main(["web;x", "info", "--run-dir", str(qemu)], here=lambda vm: True) == 1
    assert "safe identifier" in capsys.readouterr().err
    with pytest.raises(vmmonitor.MonitorError, match="no CD-ROM drive"):
        vmmonitor.cdrom_device([{"device": "drive0", "removable": False}])


def test_the_execution_function_through_the_salt_loader(qemu, example_site, tmp_path):
    import salt.config
    from kisstest import write_minion_config
    from saltfactories.utils.functional import Loaders

    config = write_minion_config(tmp_path / "salt", example_site)
    loaders = Loaders(salt.config.minion_config(str(config / "minion")))
    try:
        kiss = loaders.modules.kiss
        assert (
            json.loads(kiss.vm_monitor("web", "info", run_dir=str(qemu)))["status"] == "prelaunch"
        )
        assert kiss.vm_monitor("web", "resume", run_dir=str(qemu)) == "cont: done"
        with pytest.raises(CommandExecutionError, match="unknown action 'explode'"):
            kiss.vm_monitor("web", "explode", run_dir=str(qemu))
    finally:
        loaders.reset_state()


def test_the_console_names_the_vnc_port_and_the_serial_socket(tmp_path, capsys):
    (tmp_path / "web.conf").write_text(
        "QEMU_ARGS=-name web -vnc 127.0.0.1:8 -k en-us \\\n -serial unix:/run/kvm/web.serial\n"
    )
    (tmp_path / "old.conf").write_text("QEMU_ARGS=-name old -vnc :12 -k de\n")
    shown = vmmonitor.console("web", "node1", tmp_path)
    assert "VNC 127.0.0.1:5908 there" in shown
    assert "ssh -N -L 5908:127.0.0.1:5908 root@node1" in shown
    assert "UNIX-CONNECT:/run/kvm/web.serial" in shown
    assert "VNC 0.0.0.0:5912" in vmmonitor.console("old", "node2", tmp_path)
    with pytest.raises(vmmonitor.MonitorError, match="is db a VM here"):
        vmmonitor.console("db", "node1", tmp_path)


def test_a_grown_device_is_told_to_qemu_and_the_guest_sees_it(tmp_path):
    """kiss.vms's block_resize: qemu opened the VM's disk through its by-res link (here a link in
    tmp_path to an image file standing in for the DRBD device); the device grows, qemu is told."""
    image = tmp_path / "web-0.img"
    image.write_bytes(b"\0" * (64 << 20))
    by_res = tmp_path / "by-res"
    (by_res / "web").mkdir(parents=True)
    (by_res / "web/0").symlink_to(image)
    process = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-display", "none", "-S",
         "-qmp", f"unix:{tmp_path}/web.qmp,server=on,wait=off",
         "-drive", f"file={by_res}/web/0,if=none,id=drive0,format=raw",
         "-device", "virtio-blk-pci,drive=drive0"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 30
        while not (tmp_path / "web.qmp").exists():
            assert process.poll() is None, process.stderr.read()
            assert time.monotonic() < deadline, "qemu did not open its QMP socket"
            time.sleep(0.1)
        sizes = vmmonitor.drive_sizes("web", [0, 1], tmp_path, str(by_res))
        assert sizes == {0: 64 << 20}
        assert "already shows" in vmmonitor.grow_drive("web", 0, tmp_path, str(by_res))
        with image.open("r+b") as handle:
            handle.truncate(96 << 20)
        said = vmmonitor.grow_drive("web", 0, tmp_path, str(by_res))
        assert said.endswith(f"as {96 << 20} bytes (was {64 << 20}): the guest sees it now")
        assert vmmonitor.drive_sizes("web", [0], tmp_path, str(by_res)) == {0: 96 << 20}
        with pytest.raises(vmmonitor.MonitorError, match="no drive on"):
            vmmonitor.grow_drive("web", 1, tmp_path, str(by_res))
    finally:
        process.kill()
        process.wait(timeout=10)
    assert vmmonitor.drive_sizes("web", [0], tmp_path, str(by_res)) is None  # not running
