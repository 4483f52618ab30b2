"""`kiss-lab status`: each node's probe as a readable table (the JSON form is for scripts)."""

import time

import pytest

from kisscluster.lab import cluster

pytestmark = pytest.mark.fast

NOW = time.time()
PROBE = {
    "targets": {"all-vms.target": "active", "primary-vms.target": "inactive"},
    "units": {"vm@web.service": "active", "kissclusterd.service": "active"},
    "drbd": {
        "web/0": {
            "minor": 8,
            "cs": "WFConnection",
            "role": "Primary",
            "peer_role": "Unknown",
            "disk": "UpToDate",
            "peer_disk": "DUnknown",
            "io": "s",
        },
    },
    "kissclusterd": {
        "node": "10.99.0.1",
        "pid": 815,
        "state": "all-vms",
        "computed": "all-vms",
        "own_priority": 100,
        "peer_priority": None,
        "heartbeat_age": {"stor": 9.5, "prod": None},
        "last_ping": {"ok": True, "at": NOW},
        "ping_age": 0.4,
        "dropped": {},
        "stale": False,
        "age": 0.2,
        "cannot_run": ["mail/4 Outdated"],
        "stale_copies": [],
    },
}


def test_a_node_is_a_table_not_a_json_line():
    text = cluster.render_status("node1", PROBE)
    assert text.splitlines()[0] == "node1: up, target all-vms.target"
    assert "  kissclusterd state:          all-vms" in text
    assert "  kissclusterd peer priority:  silent" in text
    assert "  kissclusterd cannot run here: mail/4 Outdated (not UpToDate)" in text
    assert "{" not in text
    assert "drbd web/0" in text and "Primary/Unknown UpToDate/DUnknown I/O frozen" in text


def test_a_node_that_is_off():
    assert cluster.render_status("node2", None) == "node2: powered off"
