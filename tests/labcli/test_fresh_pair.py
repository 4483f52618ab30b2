"""The lab tests take over the pair `kiss-lab up` left only while it is as `up` left it: taken
once, never after a kill/hang/start (`forget_fresh`), never with a node powered off, never when
the checkout differs from what was installed. Two `sleep` processes stand in for the nodes'
qemu: what is checked is only that their processes run."""

import json
import subprocess
from collections.abc import Iterator

import pytest

from kisscluster.lab import cluster
from kisscluster.lab.layout import Layout

pytestmark = pytest.mark.fast


@pytest.fixture
def layout(tmp_path) -> Iterator[Layout]:
    layout = Layout(tmp_path)
    layout.run_dir.mkdir()
    nodes = [subprocess.Popen(["sleep", "600"]) for _ in cluster.machines(layout)]
    for machine, process in zip(cluster.machines(layout), nodes, strict=True):
        machine.pid_file.write_text(f"{process.pid}\n")
    yield layout
    for process in nodes:
        process.kill()
        process.wait()


def left_by_up(layout: Layout, checkout: str | None = None) -> None:
    record = {
        "checkout": checkout or cluster.checkout_digest(),
        "outputs": {"kiss-configure on node1": "applied"},
        "timings": {"boot": 55.0},
    }
    (layout.run_dir / cluster.FRESH).write_text(json.dumps(record))


def test_a_pair_left_by_up_is_taken_over_once(layout):
    left_by_up(layout)
    fresh = cluster.take_fresh(layout)
    assert fresh is not None and fresh["outputs"] == {"kiss-configure on node1": "applied"}
    assert cluster.take_fresh(layout) is None  # a second test session boots its own


def test_a_pair_changed_since_is_not_taken(layout):
    left_by_up(layout)
    cluster.forget_fresh(layout)  # kiss-lab kill, hang, start
    assert cluster.take_fresh(layout) is None


def test_a_pair_with_a_node_off_is_not_taken(layout):
    left_by_up(layout)
    cluster.machines(layout)[1].pid_file.unlink()
    assert cluster.take_fresh(layout) is None


def test_a_pair_installed_from_another_checkout_is_not_taken(layout):
    left_by_up(layout, checkout="0" * 64)
    assert cluster.take_fresh(layout) is None
