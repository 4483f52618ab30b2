"""The source side of a live migration against real qemus (TCG, no guest disk) on loopback:
a migration to a qemu waiting with -incoming completes and reports qemu's own time; one whose
stream stops moving (a storage link cut off) is given up after the stall time, and cancelling
it leaves the guest running where it was. Whether a qemu holds its guest, as the fencing reads
it from the human monitor while kiss-migrate holds QMP."""

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kisscluster import unitctl
from kisscluster.migration import node, qemu
from kisscluster.vmmonitor import Qmp


def start_qemu(run_dir: Path, *extra: str) -> subprocess.Popen[str]:
    """qemu for a VM named web with its QMP socket in run_dir, as vm@ starts it."""
    run_dir.mkdir(exist_ok=True)
    process = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "64", "-display", "none",
         "-name", "web", "-qmp", f"unix:{run_dir}/web.qmp,server=on,wait=off",
         "-monitor", f"unix:{run_dir}/web.monitor,server=on,wait=off", *extra],
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
        deadline = time.monotonic() + 10  # the target resumes the guest once it said so
        while status(tmp_path / "target")[0] != "running":
            assert time.monotonic() < deadline, status(tmp_path / "target")
            time.sleep(0.1)
        assert status(source) == ("postmigrate", "completed")
        assert unitctl.run_state(source, "web") == "postmigrate"  # what the fencing reads
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


def test_the_run_state_says_where_the_guest_is_and_a_busy_monitor_is_not_no_qemu(source, tmp_path):
    assert unitctl.run_state(source, "web") == "running"
    port = free_port()
    target = start_qemu(tmp_path / "target", "-incoming", f"tcp:127.0.0.1:{port}")
    try:
        assert unitctl.run_state(tmp_path / "target", "web") == "inmigrate"
    finally:
        target.kill()
        target.wait(timeout=10)
    assert unitctl.run_state(tmp_path / "target", "web") is None  # its socket is left, refusing
    assert unitctl.run_state(tmp_path / "nowhere", "web") is None
    # A monitor that answers another client first: the guest may well be there.
    with socket.socket(socket.AF_UNIX) as other:
        other.connect(str(source / "web.monitor"))
        assert unitctl.run_state(source, "web", timeout=1.0) == unitctl.UNANSWERED
