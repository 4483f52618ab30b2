"""kiss-overview's judgement of both nodes' facts: healthy, a dead peer, a VM on neither or both
nodes, a resync, a disabled VM, a stale kissclusterd status, and what the report looks like."""

import json
import time

import pytest
from nodes import MINORS, both_nodes, daemon_status, healthy_proc, node_facts, proc_line

from kisscluster.overview import assess, facts, render

pytestmark = pytest.mark.fast


def report(both):
    return assess.assess("node1", both)


def vm(found, name):
    return next(v for v in found["vms"] if v["name"] == name)


def test_both_nodes_up_and_settled_is_healthy(tmp_path):
    found = report(both_nodes(tmp_path))
    assert found["problems"] == []
    assert (found["status"], found["health"]) == (0, "healthy")
    assert [v["name"] for v in found["vms"]] == ["db", "mail", "old", "web"]
    db = vm(found, "db")
    assert (db["home"], db["runs_on"], db["disabled"]) == ("node2", ["node2"], False)
    assert db["units"] == {"node1": "inactive", "node2": "active"}
    assert [v["minor"] for v in db["volumes"]["node2"]] == MINORS["db"]
    assert db["volumes"]["node2"][0] | {"minor": 0} == {
        "volume": 0, "minor": 0, "cs": "Connected", "role": "Primary", "peer_role": "Secondary",
        "disk": "UpToDate", "peer_disk": "UpToDate", "io": "r",
    }  # fmt: skip
    node1 = found["nodes"][0]
    assert (node1["name"], node1["target"], node1["reachable"]) == ("node1", "primary-vms", True)
    assert node1["kissclusterd"]["own_priority"] == node1["kissclusterd"]["peer_priority"] == 100


def test_the_report_is_json_for_monitoring(tmp_path):
    shown = json.loads(json.dumps(report(both_nodes(tmp_path))))
    assert set(shown) == {"here", "status", "health", "nodes", "vms", "problems"}
    assert set(shown["vms"][0]) == {
        "name", "disabled", "home", "runs_on", "unknown_on", "units", "volumes", "problems",
        "notes",
    }  # fmt: skip
    assert [n["name"] for n in shown["nodes"]] == ["node1", "node2"]


def dead_peer(tmp_path):
    """node1 alone after node2 died: all-vms, no heartbeat on either net, volumes waiting."""
    now = time.time()
    gone = {"stor": now - 40, "prod": now - 40}
    proc = {m: proc_line(m, "WFConnection", "Primary/Unknown", "UpToDate/DUnknown")
            for minors in MINORS.values() for m in minors}  # fmt: skip
    proc[12] = proc_line(12, "WFConnection", "Secondary/Unknown", "UpToDate/DUnknown")
    daemon = daemon_status(state="all-vms", computed="all-vms", own_priority=80,
                           peer_priority=None, last_heartbeat=gone)  # fmt: skip
    node1 = node_facts(tmp_path, "node1", target="all-vms", running=["db", "mail", "web"],
                       proc=proc, daemon=daemon)  # fmt: skip
    return {"node1": node1, "node2": facts.unreachable("no answer within 3 s")}


def test_a_dead_peer_is_shown_as_unreachable_and_its_vms_as_away(tmp_path):
    found = report(dead_peer(tmp_path))
    assert found["status"] == 1 and found["health"] == "degraded"
    assert found["nodes"][1] == {
        "name": "node2", "reachable": False, "error": "no answer within 3 s",
        "problems": ["node2: unreachable (no answer within 3 s)"],
    }  # fmt: skip
    assert "node1: no heartbeat from the peer on stor for 40 s" in found["problems"]
    assert "db/2 on node1: WFConnection Primary/Unknown UpToDate/DUnknown" in found["problems"]
    db = vm(found, "db")
    assert (db["home"], db["runs_on"], db["notes"]) == (
        "node2",
        ["node1"],
        ["away from home (node2)"],
    )
    assert not any(p.startswith(("db:", "web:", "mail:")) for p in found["problems"])
    text = render.render(found)
    assert "node2  unreachable: no answer within 3 s" in text
    assert "kiss-overview on node1: degraded" in text


def test_a_vm_on_neither_node_is_a_problem(tmp_path):
    found = report(both_nodes(tmp_path, node1={"running": ["mail"]}))
    assert "web: runs on neither node" in found["problems"]
    assert found["status"] == 1
    assert vm(found, "web")["runs_on"] == []
    assert "neither" in render.render(found)


def test_a_vm_not_running_here_while_the_peer_is_unreachable_is_unknown(tmp_path):
    node1 = node_facts(tmp_path, "node1")
    found = report({"node1": node1, "node2": facts.unreachable("exit status 255: refused")})
    db = vm(found, "db")
    assert db["runs_on"] == [] and db["home"] == "node2"
    assert not any(p.startswith("db:") for p in found["problems"])
    assert "? (node2 unknown)" in render.render(found)


def test_a_node_whose_systemd_is_silent_runs_its_vms_as_far_as_anyone_knows(tmp_path):
    both = both_nodes(tmp_path)
    both["node2"].update(targets={}, units={}, units_error="systemctl is-active: timed out")
    found = report(both)
    db = vm(found, "db")
    assert (db["runs_on"], db["unknown_on"], db["problems"]) == ([], ["node2"], [])
    assert found["problems"] == ["node2: systemd did not answer (systemctl is-active: timed out)"]
    assert "node2  ?            primary-vms" in render.render(found)


def test_a_vm_on_both_nodes_is_a_problem(tmp_path):
    both_primary = healthy_proc("node1")
    both_primary[0] = proc_line(0, "StandAlone", "Primary/Unknown", "UpToDate/DUnknown")
    node2_proc = healthy_proc("node2")
    node2_proc[0] = proc_line(0, "StandAlone", "Primary/Unknown", "UpToDate/DUnknown")
    found = report(both_nodes(
        tmp_path,
        node1={"running": ["web", "mail", "db"], "proc": both_primary},
        node2={"proc": node2_proc},
    ))  # fmt: skip
    problems = found["problems"]
    assert "db: runs on both nodes" in problems
    assert "db/0: Primary on both nodes" in problems
    assert "db/0 on node1: StandAlone Primary/Unknown UpToDate/DUnknown" in problems
    assert vm(found, "db")["runs_on"] == ["node1", "node2"]
    assert "BOTH" in render.render(found)


def test_a_resync_shows_its_progress(tmp_path):
    node2_proc = healthy_proc("node2")
    node2_proc[1] = proc_line(1, "SyncSource", "Primary/Secondary", "UpToDate/Inconsistent",
                              synced=42.1)  # fmt: skip
    node1_proc = healthy_proc("node1")
    node1_proc[1] = proc_line(1, "SyncTarget", "Secondary/Primary", "Inconsistent/UpToDate",
                              synced=42.1)  # fmt: skip
    found = report(both_nodes(tmp_path, node1={"proc": node1_proc}, node2={"proc": node2_proc}))
    assert found["problems"] == [
        "db/1 on node1: SyncTarget Secondary/Primary Inconsistent/UpToDate, 42.1% synced, "
        "finish 0:01:05",
        "db/1 on node2: SyncSource Primary/Secondary UpToDate/Inconsistent, 42.1% synced, "
        "finish 0:01:05",
    ]
    assert "1: SyncSource Primary/Secondary UpToDate/Inconsistent, 42.1% synced" in render.render(
        found
    )


def test_a_disabled_vm_is_listed_and_healthy_while_it_does_not_run(tmp_path):
    found = report(both_nodes(tmp_path))
    old = vm(found, "old")
    assert (old["disabled"], old["home"], old["runs_on"], old["problems"]) == (True, None, [], [])
    assert old["volumes"]["node1"][0]["minor"] == 12
    assert "disabled" in next(line for line in render.render(found).splitlines()
                              if line.startswith("old "))  # fmt: skip


def test_a_disabled_vm_that_runs_is_a_problem(tmp_path):
    found = report(both_nodes(tmp_path, node2={"running": ["db", "old"]}))
    assert found["problems"] == ["old: disabled, but runs on node2"]


def test_a_stale_kissclusterd_status_is_a_problem(tmp_path):
    old = daemon_status(updated=time.time() - 60)
    found = report(both_nodes(tmp_path, node1={"daemon": old}))
    assert found["problems"] == ["node1: kissclusterd status is 60 s old: is it running?"]
    assert "(stale 60s)" in render.render(found)


def test_no_status_and_a_silent_switch_are_problems(tmp_path):
    now = time.time()
    silent = daemon_status(last_ping={"ok": False, "at": now - 0.5}, last_ping_ok=now - 12,
                           state="no-vms", computed="no-vms", own_priority=90)  # fmt: skip
    found = report(both_nodes(tmp_path, node1={"daemon": {}}, node2={"daemon": silent,
                                                               "target": "no-vms"}))  # fmt: skip
    problems = found["problems"]
    assert problems[0].startswith("node1: kissclusterd published no status (")
    assert "node2: no reply from the switch for 12 s" in problems
    assert "db: should run on node1 (primary-vms)" not in problems
    assert "db: runs on neither node" in problems


def test_a_vm_where_its_node_target_does_not_want_it(tmp_path):
    found = report(
        both_nodes(tmp_path, node2={"running": ["db", "web"]}, node1={"running": ["mail"]})
    )
    assert "web: runs on node2, whose primary-vms does not want it" in found["problems"]
    assert "web: should run on node1 (primary-vms), runs on node2" in found["problems"]
    assert vm(found, "web")["notes"] == ["away from home (node1)"]


def test_a_vm_enabled_on_one_node_only_says_so(tmp_path):
    found = report(both_nodes(tmp_path, node2={"enabled": ("db", "mail")}))
    assert found["problems"] == [
        "web: enabled on node1 only: were both nodes rolled out at the same commit?"
    ]


@pytest.mark.parametrize(
    ("node1", "node2", "status"),
    [
        ({}, {}, 0),
        ({}, facts.unreachable("gone"), 1),
        (facts.unreachable("broken"), facts.unreachable("gone"), 2),
    ],
)
def test_exit_status(tmp_path, node1, node2, status):
    both = both_nodes(tmp_path)
    both = {"node1": node1 or both["node1"], "node2": node2 or both["node2"]}
    assert report(both)["status"] == status


def migrated(tmp_path, maintenance=()):
    """web moved to node2 by kiss-migrate: both placement files say so, node2's primary-vms
    wants it and node1's does not."""
    both = both_nodes(tmp_path, node2={"running": ["db", "web"]}, node1={"running": ["mail"]})
    both["node1"]["home"].remove("web")
    both["node2"]["home"] = sorted([*both["node2"]["home"], "web"])
    for node in both.values():
        node["placement"] = {"away": {"web": "node2"}, "maintenance": list(maintenance)}
    return both


def test_a_vm_kiss_migrate_placed_on_the_peer_is_healthy_and_away_from_home(tmp_path):
    found = report(migrated(tmp_path, maintenance=["node1"]))
    assert found["problems"] == []
    web = vm(found, "web")
    assert (web["home"], web["runs_on"]) == ("node1", ["node2"])
    assert web["notes"] == ["placed on node2 by kiss-migrate", "away from home (node1)"]
    assert [n["maintenance"] for n in found["nodes"]] == [["node1"], ["node1"]]
    assert "node1  primary-vms (maintenance)" in render.render(found)


def test_a_placed_vm_keeps_its_home_with_the_peer_unreachable(tmp_path):
    both = migrated(tmp_path)
    both["node2"] = facts.unreachable("no answer within 3 s")
    web = vm(report(both), "web")
    assert web["home"] == "node1"
    assert not [p for p in web["problems"] if "disagree" in p]


def test_placement_files_that_disagree_with_the_targets_are_a_problem(tmp_path):
    both = migrated(tmp_path)
    both["node1"]["placement"] = {"away": {}, "maintenance": []}
    both["node2"]["home"].remove("web")
    assert "web: the nodes' placement files or targets disagree" in report(both)["problems"]
