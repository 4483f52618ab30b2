"""Fixtures shared by every test tier."""

from pathlib import Path

import pytest
from kisstest import copy_example_site
from twonodes import TEST_STATES, Pair, SshServer, make_pair, start_sshd


@pytest.fixture
def example_site(tmp_path: Path) -> Path:
    """A fresh copy of the example site (pillar/ and vm-config/ of the checkout)."""
    return copy_example_site(tmp_path / "site")


@pytest.fixture
def sshd(tmp_path: Path):
    """A real sshd on 127.0.0.1 and 127.0.0.2 (twonodes.py)."""
    server = start_sshd(tmp_path / "sshd")
    yield server
    server.stop()


@pytest.fixture
def pair(tmp_path: Path, sshd: SshServer) -> Pair:
    """Two nodes on this machine whose kiss.vms is the small test state tree."""
    return make_pair(tmp_path / "cluster", sshd, TEST_STATES)
