"""A node's facts as kiss-overview reads them, and the peer's answer read back: /proc/drbd with a
resync's progress, a resource file's volumes, systemd that does not answer, a peer that prints
no facts or takes too long (real processes, bounded)."""

import json
import sys
import time

import pytest
from nodes import example_pillar, node_facts, proc_line

from kisscluster import drbd
from kisscluster.heartbeat import copies
from kisscluster.overview import facts

pytestmark = pytest.mark.fast

PROC_DRBD = (
    "version: 8.4.11 (api:1/proto:86-101)\n"
    + proc_line(0, "SyncSource", "Primary/Secondary", "UpToDate/Inconsistent", synced=7.5)
    + proc_line(1, "StandAlone", "Secondary/Unknown", "UpToDate/DUnknown")
    + " 2: cs:Unconfigured\n"
    + proc_line(4, "Connected", "Secondary/Primary", "Diskless/UpToDate", io="s---d-")
)


def test_proc_drbd_volumes_with_a_resync_in_progress():
    volumes = drbd.proc_volumes(PROC_DRBD)
    assert sorted(volumes) == [0, 1, 4]
    assert volumes[0] == {
        "cs": "SyncSource", "role": "Primary", "peer_role": "Secondary", "disk": "UpToDate",
        "peer_disk": "Inconsistent", "io": "r", "synced": 7.5, "finish": "0:01:05",
    }  # fmt: skip
    assert "synced" not in volumes[1] and volumes[1]["cs"] == "StandAlone"
    assert (volumes[4]["disk"], volumes[4]["io"]) == ("Diskless", "s")


def test_a_resource_file_maps_each_volume_to_its_minor(tmp_path):
    kiss = example_pillar(tmp_path)
    db = dict(kiss["vms"]["db"])
    db["disks"] = [d for d in db["disks"] if d["volume"] != 1]  # a retired disk leaves a gap
    text = drbd.render_resource(db, kiss["cluster"]["members"], "vg0")
    assert copies.volumes(text) == {0: 0, 2: 2}


def test_facts_of_a_node_whose_systemd_does_not_answer(tmp_path):
    node = node_facts(tmp_path, "node1")
    assert node["units_error"] is None and node["targets"]["primary-vms"] == "active"

    def silent(units):
        raise OSError("systemctl is-active: Failed to connect to bus: Host is down")

    places = facts.Places(*(tmp_path / "node1" / p for p in ("systemd", "drbd.d", "proc-drbd",
                                                             "run")))  # fmt: skip
    (places.drbd_dir / "not a vm.res").write_text("")
    mute = facts.local_facts(places, silent)
    assert mute["units_error"].endswith("Host is down")
    assert (mute["targets"], mute["units"]) == ({}, {})
    assert mute["vms"] == ["db", "mail", "old", "web"] == node["vms"]
    assert mute["drbd"]["web"] == [
        {"volume": 0, "minor": 8, "cs": "Connected", "role": "Primary", "peer_role": "Secondary",
         "disk": "UpToDate", "peer_disk": "UpToDate", "io": "r"},
    ]  # fmt: skip
    assert json.loads(json.dumps(mute)) == mute


def test_a_node_without_drbd_or_kissclusterd(tmp_path):
    none = facts.Places(*(tmp_path / p for p in "abcd"))
    found = facts.local_facts(none, lambda units: dict.fromkeys(units, "inactive"))
    assert found["vms"] == [] and found["kissclusterd"] is None and found["units"] == {}
    assert "status.json" in found["kissclusterd_error"]


def test_ssh_gets_its_connect_timeout_first():
    command = ["ssh", "-o", "ConnectTimeout=10", "10.99.0.2", "kiss-overview", "--local"]
    assert facts.bounded(command)[:6] == [
        "ssh", "-o", "ConnectTimeout=2", "-o", "BatchMode=yes", "-o",
    ]  # fmt: skip
    assert facts.bounded(["/usr/local/bin/remote", "x"]) == ["/usr/local/bin/remote", "x"]


def test_the_peer_facts_are_its_last_line(tmp_path):
    node = node_facts(tmp_path, "node2")
    said = f"print('a banner'); print({json.dumps(json.dumps(node))})"
    assert facts.peer_facts([sys.executable, "-c", said]) == node
    said = 'print(\'{"reachable": true, "vms": []}\')'
    assert facts.peer_facts([sys.executable, "-c", said]) == {
        "reachable": False,
        "error": "answers without enabled, home, drbd, targets, units, units_error, kissclusterd: "
        "is its kisscluster older?",
    }


@pytest.mark.parametrize(
    ("script", "why"),
    [
        (
            "import sys; sys.exit('kiss-overview: command not found')",
            "exit status 1: kiss-overview",
        ),
        ("print('not json')", "exit status 0: no facts on stdout"),
        ("print('{\"reachable\": false}')", "exit status 0: no facts"),
        ('print(\'{"reachable": false, "error": "EIO"}\')', "answers, but EIO"),
    ],
)
def test_a_peer_without_facts_is_unreachable(script, why):
    found = facts.peer_facts([sys.executable, "-c", script])
    assert found["reachable"] is False and found["error"].startswith(why)


def test_a_peer_that_hangs_is_unreachable_after_the_timeout():
    began = time.monotonic()
    found = facts.peer_facts(["sleep", "30"], timeout=0.5)
    assert time.monotonic() - began < 1.5
    assert found == {"reachable": False, "error": "no answer within 0.5 s"}
