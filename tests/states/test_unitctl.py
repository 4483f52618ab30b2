"""The helpers of vm@.service and drbd-resource@.service.

drbdadm is a stand-in that refuses twice, as the real one does while the peer still holds the
resource (no DRBD module here). The monitor is a stand-in unix socket speaking the human
monitor's prompt, and the "qemu" a sleeping child that the stand-in ends on `system_powerdown`:
there is no guest OS here to honour an ACPI power button. The lab runs both for real.
"""

import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kisscluster import unitctl

pytestmark = pytest.mark.fast


def fake_drbdadm(tmp_path: Path, disks: str) -> tuple[Path, Path]:
    """A drbdadm whose `dstate` prints `disks` and whose `primary` refuses twice."""
    count = tmp_path / "count"
    drbdadm = tmp_path / "drbdadm"
    drbdadm.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, sys\n"
        f"if sys.argv[1:] == ['dstate', 'web']: sys.exit(print({disks!r}))\n"
        f"count = pathlib.Path({str(count)!r})\n"
        "n = int(count.read_text()) if count.exists() else 0\n"
        "count.write_text(str(n + 1))\n"
        "assert sys.argv[1:] == ['primary', 'web'], sys.argv\n"
        "sys.exit('web: State change failed: (-1) Multiple primaries' if n < 2 else 0)\n"
    )
    drbdadm.chmod(0o755)
    return drbdadm, count


def test_promote_retries_until_drbd_lets_it(tmp_path: Path):
    drbdadm, count = fake_drbdadm(tmp_path, "UpToDate/UpToDate\nConsistent/DUnknown")
    assert unitctl.promote(str(drbdadm), "web", retry=0.01) == 0
    assert count.read_text() == "3"


@pytest.mark.parametrize("disks", ["Outdated/DUnknown", "UpToDate/UpToDate\nInconsistent/UpToDate"])
def test_promote_refuses_a_copy_that_cannot_run_the_vm_at_once(tmp_path: Path, capsys, disks):
    """A copy that missed writes is never promoted by automation, whatever DRBD would allow
    (an Inconsistent copy connected to an UpToDate peer can be Primary in DRBD)."""
    drbdadm, count = fake_drbdadm(tmp_path, disks)
    assert unitctl.promote(str(drbdadm), "web", retry=0.01) == 2
    assert not count.exists()
    assert "refusing to run on this copy" in capsys.readouterr().err


def test_promote_refuses_a_bad_resource_name(tmp_path: Path):
    assert unitctl.main(["promote", "--drbdadm", "/bin/false", "web;reboot"]) == 1


def held_drbdadm(tmp_path: Path, refusals: int, role: str) -> tuple[Path, Path]:
    """A drbdadm whose `secondary` refuses `refusals` times as DRBD does while the device is
    open, and whose `role` prints `role` (empty: the resource is not up, `role` fails)."""
    count = tmp_path / "count"
    drbdadm = tmp_path / "drbdadm"
    drbdadm.write_text(
        f"#!{sys.executable}\n"
        "import pathlib, sys\n"
        f"if sys.argv[1:] == ['role', 'web']: sys.exit(print({role!r}) if {role!r} else 10)\n"
        f"count = pathlib.Path({str(count)!r})\n"
        "n = int(count.read_text()) if count.exists() else 0\n"
        "count.write_text(str(n + 1))\n"
        "assert sys.argv[1:] == ['secondary', 'web'], sys.argv\n"
        f"sys.exit('0: State change failed: (-12) Device is held open by someone' "
        f"if n < {refusals} else 0)\n"
    )
    drbdadm.chmod(0o755)
    return drbdadm, count


def test_demote_retries_while_the_device_is_held_open(tmp_path: Path, capsys):
    """A copy left Primary here would keep its VM from starting on the peer for good."""
    drbdadm, count = held_drbdadm(tmp_path, refusals=2, role="Primary/Secondary")
    assert unitctl.demote(str(drbdadm), "web", retry=0.01) == 0
    assert count.read_text() == "3"
    out = capsys.readouterr().out
    assert "web: still primary (0: State change failed: (-12) Device is held open" in out
    assert "web: secondary after 3 attempts" in out


@pytest.mark.parametrize("role", ["", "Secondary/Primary"])
def test_demote_stops_at_once_when_nothing_is_primary_here(tmp_path: Path, role: str):
    drbdadm, count = held_drbdadm(tmp_path, refusals=5, role=role)
    assert unitctl.demote(str(drbdadm), "web", retry=0.01) == 0
    assert count.read_text() == "1"


@pytest.mark.parametrize(
    ("status", "command"),
    [
        ("running", b"system_powerdown\n"),
        ("paused", b"system_powerdown\n"),
        ("paused (inmigrate)", b"quit\n"),  # waits for a migration: no guest to power down
        ("paused (postmigrate)", b"quit\n"),  # its guest was migrated to the peer
    ],
)
def test_powerdown_asks_the_guest_and_waits_for_qemu_to_exit(tmp_path: Path, status, command):
    qemu = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    server = socket.socket(socket.AF_UNIX)
    server.bind(str(tmp_path / "web.monitor"))
    server.listen(1)
    received = []

    def monitor() -> None:
        """qemu's human monitor: one command per connection, as unitctl sends them."""
        for answer in (f"VM status: {status}", ""):
            connection, _ = server.accept()
            with connection:
                connection.sendall(
                    b"QEMU 7.2.0 monitor - type 'help' for more information\n(qemu) "
                )
                received.append(connection.recv(4096))
                connection.sendall(received[-1].rstrip() + f"\r\n{answer}\r\n(qemu) ".encode())
        qemu.terminate()
        qemu.wait(timeout=10)  # reaped, as systemd reaps the real qemu

    thread = threading.Thread(target=monitor)
    thread.start()
    try:
        assert unitctl.main(["powerdown", "--run-dir", str(tmp_path), "web", str(qemu.pid)]) == 0
        assert received == [b"info status\n", command]
        assert qemu.poll() is not None
    finally:
        thread.join(timeout=10)
        server.close()
        if qemu.poll() is None:
            qemu.kill()
        qemu.wait(timeout=10)


@pytest.mark.parametrize("vm", ["../web", "Web"])
def test_powerdown_refuses_names_that_are_not_vm_names(tmp_path: Path, vm):
    assert unitctl.main(["powerdown", "--run-dir", str(tmp_path), vm, "1"]) == 1
