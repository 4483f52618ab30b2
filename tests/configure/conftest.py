"""Fixtures: a real sshd on loopback and two nodes on this machine (see twonodes.py)."""

from pathlib import Path

import pytest
from twonodes import Pair, SshServer, make_pair, start_sshd

TEST_STATES = Path(__file__).parent / "states"


@pytest.fixture
def sshd(tmp_path: Path):
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


@pytest.fixture
def pair(tmp_path: Path, sshd: SshServer) -> Pair:
    """Two nodes whose kiss.vms is the small test state tree in tests/configure/states."""
    return make_pair(tmp_path / "cluster", sshd, TEST_STATES)
