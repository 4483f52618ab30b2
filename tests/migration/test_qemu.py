"""The source side of a live migration against real qemus (TCG, no guest disk) on loopback:
a migration to a qemu waiting with -incoming completes and reports qemu's own time; one whose
stream stops moving (a storage link cut off) is given up after the stall time, and cancelling
it leaves the guest running where it was."""

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisscluster.migration import node, qemu
from kisscluster.vmmonitor import Qmp


def start_qemu(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """qemu for a VM named web with its QMP socket in run_dir, as vm@ starts it."""
    run_dir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-display", "none",
         "-name", "web", "-qmp", f"unix:{run_dir}/web.qmp,server=on,wait=off", *extra],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while not (run_dir / "web.qmp").exists():
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        assert time.monotonic() < deadline, "qemu did not open its QMP socket"
        time.sleep(0.1)
    return process


@pytest.fixture
def source(tmp_path: Path) -> Iterator[Path]:
    process = start_qemu(tmp_path / "source")
    yield tmp_path / "source"
    process.kill()
    process.wait(timeout=10)


def status(run_dir: Path) -> tuple[str, str | None]:
    qmp = Qmp(run_dir / "web.qmp")
    try:
        return qmp.execute("query-status")["status"], qmp.execute("query-migrate").get("status")
    finally:
        qmp.close()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_a_migration_to_a_waiting_qemu_completes_with_qemus_own_time(source, tmp_path):
    port = free_port()
    target = start_qemu(tmp_path / "target", "-incoming", f"tcp:127.0.0.1:{port}")
    try:
        deadline = time.monotonic() + 30
        while not node.listening(port):  # as kisscluster.migration.node.incoming waits
            assert time.monotonic() < deadline, "the target qemu does not listen"
            time.sleep(0.1)
        said: list[str] = []
        report = qemu.migrate_out("web", f"tcp:127.0.0.1:{port}", said.append, run_dir=source)
        assert report["status"] == "completed"
        assert 0 < report["qemu-seconds"] < 60
        assert status(tmp_path / "target")[0] == "running"
        assert status(source) == ("postmigrate", "completed")
    finally:
        target.kill()
        target.wait(timeout=10)


def test_a_stream_that_stops_moving_is_given_up_and_the_guest_runs_on(source):
    # A listener that never reads: qemu's first megabyte fills the socket buffers, then
    # nothing moves, as when the storage link goes down in the middle of a migration. With so
    # little to send qemu has already paused the guest for the last phase.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        port = silent.getsockname()[1]
        began = time.monotonic()
        with pytest.raises(qemu.MigrationFailed, match="stalled: nothing sent for 3 s"):
            qemu.migrate_out("web", f"tcp:127.0.0.1:{port}", lambda line: None,
                             run_dir=source, stall_after=3)  # fmt: skip
        assert time.monotonic() - began < 30
        assert status(source)[1] == "active"
        qemu.cancel_migration("web", run_dir=source)
    assert status(source) == ("running", "cancelled")
