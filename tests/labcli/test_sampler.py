"""The lab's check that no VM ever ran on two nodes (labtest.Sampler.both_ran), on samples made
up as the probe reports them: it finds two writers whenever the samples show them, and takes
the edge of a live migration's window, seen on each node at a different moment, for none."""

import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "lab"))
from labtest import Sampler

pytestmark = pytest.mark.fast


def sample(role: str, peer_role: str, cs: str, marked: bool = False) -> dict:
    return {
        "units": {"vm@web.service": "active" if role == "Primary" else "inactive"},
        "drbd": {"web/0": {"role": role, "peer_role": peer_role, "cs": cs, "io": "r"}},
        "migrating": ["web"] if marked else [],
    }


def both_ran(node1: dict, node2: dict) -> list[str]:
    """The two samples taken over the same second."""
    lab = SimpleNamespace(nodes=(SimpleNamespace(name="node1"), SimpleNamespace(name="node2")))
    sampler = Sampler(lab)  # type: ignore[arg-type]
    sampler.samples = {"node1": [(10.0, 11.0, node1)], "node2": [(10.0, 11.0, node2)]}
    return sampler.both_ran()


def test_two_primaries_cut_off_from_each_other_are_two_writers():
    found = both_ran(sample("Primary", "Unknown", "WFConnection"),
                     sample("Primary", "Unknown", "WFConnection"))  # fmt: skip
    view = "web/0 WFConnection Primary/Unknown io r"
    assert found == [f"t=10: vm@web.service active on both ({view} | {view})",
                     "t=10: web/0 Primary on both"]  # fmt: skip


def test_connected_primary_primary_outside_a_migration_is_a_writer_too():
    found = both_ran(sample("Primary", "Primary", "Connected"),
                     sample("Primary", "Primary", "Connected", marked=True))  # fmt: skip
    assert "t=10: web/0 Primary/Primary" in found


def test_inside_the_window_both_primaries_are_the_migration():
    assert both_ran(sample("Primary", "Primary", "Connected", marked=True),
                    sample("Primary", "Primary", "Connected", marked=True)) == []  # fmt: skip


def test_the_windows_end_seen_on_each_node_at_another_moment_is_no_writer():
    # node1 still Primary beside the target, marked; node2 later, the mark gone and node1
    # Secondary: connected, each side saw the other's role as it was then.
    assert both_ran(sample("Primary", "Primary", "Connected", marked=True),
                    sample("Primary", "Secondary", "Connected")) == []  # fmt: skip
