"""The lab pair for the end-to-end tests: booted once per session, torn down at the end.

A pair that `kiss-lab up` left rolled out and untouched, from this checkout as it is, is taken
over instead (kisscluster.lab.cluster.take_fresh): the README's first command brings the lab up,
and the tests that follow need not boot and roll out another. The image is cached in
$KISS_LAB_DIR (default <checkout>/lab-work) between runs. The time of each phase is written to
<lab>/timings.json for the closing figures.
"""

import time
from collections.abc import Iterator

import pytest
from labtest import Lab

from kisscluster.lab import cluster
from kisscluster.lab.layout import Layout, Progress


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    """Both nodes booted, reachable, with the checkout's kisscluster installed and vg0."""
    layout = Layout.from_environment()
    progress = Progress()
    node1, node2 = cluster.machines(layout)
    the_lab = Lab(layout, progress, node1, node2)
    began = time.monotonic()
    fresh = cluster.take_fresh(layout)
    try:
        if fresh:
            progress.say("lab: taking over the pair `kiss-lab up` left")
            progress.timings.update(fresh["timings"])
            the_lab.outputs.update(fresh["outputs"])
        else:
            cluster.prepare(layout, progress)
            the_lab.record("lab: boot and install", time.monotonic() - began)
        yield the_lab
    finally:
        cluster.down(layout, progress)


@pytest.fixture(scope="session")
def rolled_out(lab: Lab) -> Lab:
    """kiss.node, kiss-init and the first kiss-configure on the example site, as `kiss-lab up`
    (done by it already when the lab took its pair over)."""
    if lab.outputs:
        return lab
    began = time.monotonic()
    lab.outputs.update(cluster.roll_out(lab.layout, lab.progress))
    lab.record("lab: roll-out", time.monotonic() - began)
    return lab
