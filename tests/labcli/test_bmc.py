"""The lab's stand-in BMC and its fence agent, as the guests use them: the agent reads its
options on stdin like the fence-agents and talks TCP to a BMC process started per connection
(what qemu's `guestfwd=...-cmd:` does), which powers a lab "node" off. The node here is a
sleeping process behind the node's pid file, not our child (like the daemonized qemu): no qemu
is needed to see it die."""

import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kisscluster.lab.layout import Layout
from kisscluster.lab.machine import Machine

pytestmark = pytest.mark.fast


@pytest.fixture
def bmc(tmp_path):
    """A loopback port where each connection gets its own `bmc serve` process; the lab's
    node1 as a sleeping process; the BMC's password."""
    layout = Layout(tmp_path)
    layout.run_dir.mkdir()
    (layout.run_dir / "bmc.secret").write_text("sesame\n")
    started = subprocess.run(
        ["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"], capture_output=True, text=True
    )
    node = int(started.stdout)
    Machine(layout, "node1").pid_file.write_text(f"{node}\n")
    server = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            with conn:
                subprocess.run(
                    [sys.executable, "-m", "kisscluster.lab.bmc", "serve", str(tmp_path)],
                    stdin=conn,
                    stdout=conn,
                    timeout=60,
                    check=False,
                )

    threading.Thread(target=serve, daemon=True).start()
    yield server.getsockname()[1], node
    server.close()
    if alive(node):
        os.kill(node, signal.SIGKILL)


def alive(pid: int) -> bool:
    """Running, not a zombie awaiting its (foreign) parent."""
    try:
        return "State:\tZ" not in Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False


def agent(port: int, action: str, password: str = "sesame") -> subprocess.CompletedProcess:  # noqa: S107
    options = f"action={action}\nip=127.0.0.1\nipport={port}\nplug=node1\npassword={password}\n"
    return subprocess.run(
        [sys.executable, "-m", "kisscluster.lab.bmc", "agent"],
        input=options,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_agent_powers_the_node_off_and_reports_its_state_as_fence_agents_do(bmc):
    port, node = bmc
    status = agent(port, "status")
    assert (status.returncode, status.stdout) == (0, "Status: ON\n")
    off = agent(port, "off")
    assert (off.returncode, off.stdout) == (0, "Success: Powered OFF\n")
    assert not alive(node)
    assert agent(port, "status").returncode == 2  # off, in the fence-agents' status codes
    assert agent(port, "off").returncode == 0  # already off: confirmed again


def test_a_wrong_password_powers_nothing_off(bmc):
    port, node = bmc
    refused = agent(port, "off", password="guess")
    assert refused.returncode == 1
    assert "wrong password" in refused.stderr
    assert alive(node)


def test_an_unreachable_bmc_is_a_failure_not_a_success(tmp_path):
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    assert agent(port, "off").returncode == 1
    assert not Path(tmp_path / "run").exists()
