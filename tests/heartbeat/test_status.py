"""`kissclusterd status`: what the daemon published, with ages, as text and JSON."""

import json
import time

import pytest

from kisscluster.heartbeat import status
from kisscluster.heartbeat.cli import main

pytestmark = pytest.mark.fast


def published(run_dir, **changes):
    now = time.time()
    record = {
        "node": "10.99.0.1",
        "pid": 1234,
        "updated": now,
        "interval": 1.0,
        "dead_time": 3.0,
        "state": "all-vms",
        "computed": "all-vms",
        "own_priority": 80,
        "peer_priority": None,
        "last_heartbeat": {"stor": now - 12.0, "prod": None},
        "last_ping": {"ok": True, "at": now - 0.4},
        "dropped": {"unauthenticated": 3},
    } | changes
    status.publish(run_dir, record)


def test_text_shows_priorities_state_heartbeat_ages_and_ping(tmp_path, capsys):
    published(tmp_path)
    assert main(["status", "--run-dir", str(tmp_path)]) == 0
    text = capsys.readouterr().out
    assert "state:          all-vms" in text
    assert "own priority:   80" in text and "peer priority:  silent" in text
    assert "heartbeat stor: 12.0 s ago" in text and "heartbeat prod: never" in text
    assert "last ping:      reply, 0.4 s ago" in text
    assert "dropped:        unauthenticated 3" in text


def test_json_carries_the_same_with_ages(tmp_path, capsys):
    published(tmp_path, state=None, computed="primary-vms", peer_priority=100)
    assert main(["status", "--json", "--run-dir", str(tmp_path)]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown["state"] is None and shown["peer_priority"] == 100
    assert 11.9 < shown["heartbeat_age"]["stor"] < 13 and shown["heartbeat_age"]["prod"] is None
    assert shown["stale"] is False


def test_an_old_status_is_flagged_and_fails(tmp_path, capsys):
    published(tmp_path, updated=time.time() - 60)
    assert main(["status", "--run-dir", str(tmp_path)]) == 1
    assert "WARNING: status is 60 s old: is kissclusterd running?" in capsys.readouterr().out
