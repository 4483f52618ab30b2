"""Two nodes on this machine (tests/configure/twonodes.py) for kiss-nuke-vm."""

from pathlib import Path

import pytest
from configure.twonodes import Pair, SshServer, make_pair, start_sshd

CONFIGURE_TESTS = Path(__file__).parent.parent / "configure"


@pytest.fixture
def sshd(tmp_path: Path):
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


@pytest.fixture
def pair(tmp_path: Path, sshd: SshServer) -> Pair:
    return make_pair(tmp_path / "cluster", sshd, CONFIGURE_TESTS / "states")
