"""Fixtures shared by every test tier."""

from pathlib import Path

import pytest
from kisstest import copy_example_site


@pytest.fixture
def example_site(tmp_path: Path) -> Path:
    """A fresh copy of the example site (pillar/ and vm-config/ of the checkout)."""
    return copy_example_site(tmp_path / "site")
