"""kiss-verify's comparison (kisscluster.verify): facts of both nodes in, differences out.

The facts of a clean pair are built from what the states render (kisscluster.verifywanted), then
each test changes one fact and checks the one difference it makes and the fix it names.
"""

import copy
from pathlib import Path

import pytest

from kisscluster import inventory, pillar, verify, verifycli, verifywanted

pytestmark = pytest.mark.fast

SHA_A, SHA_B = "a" * 40, "b" * 40


@pytest.fixture
def kiss(example_site: Path) -> dict:
    inventory.run(example_site)
    return pillar.build(example_site)


def proc_drbd(kiss: dict, node: str, oos: int = 0, cs: str = "Connected") -> str:
    lines = ["version: 8.4.11 (api:1/proto:86-101)"]
    for vm in kiss["vms"].values():
        role = "Primary/Secondary" if vm["primary_on"] == node else "Secondary/Primary"
        for disk in vm["disks"]:
            lines += [
                f" {disk['minor']}: cs:{cs} ro:{role} ds:UpToDate/UpToDate C r-----",
                f"    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:{oos}",
            ]
    return "\n".join(lines) + "\n"


def clean_facts(kiss: dict, node: str) -> dict:
    """What kisscluster.verifyfacts.gather reads on a node where the states ran and DRBD agrees."""
    config = verifywanted.settings(kiss, {})
    systemd = config["systemd_dir"]
    links = {
        f"{systemd}/all-vms.target.wants/vm@{vm}.service": "../vm@.service" for vm in kiss["vms"]
    }
    links[f"{systemd}/{verifywanted.TIMER_LINK}"] = "../kiss-drbd-verify.timer"
    sizes = {d["lv"]: d["size_bytes"] for vm in kiss["vms"].values() for d in vm["disks"]}
    return {
        "node": node,
        "overrides": {},
        "files": {w.path: w.text for w in verifywanted.wanted_files(kiss, node, config)},
        "links": links,
        "lvs": {"sizes": sizes},
        "adjust": {vm: [] for vm in kiss["vms"]},
        "proc_drbd": proc_drbd(kiss, node),
        "git": {"branch": "main", "work_head": SHA_A, "bare_head": SHA_A, "pending": []},
    }


@pytest.fixture
def pair(kiss: dict) -> dict:
    return {node: clean_facts(kiss, node) for node in ("node1", "node2")}


def only(kiss: dict, pair: dict) -> verify.Difference:
    found = verify.compare(kiss, pair)
    assert len(found) == 1, found
    return found[0]


def test_a_clean_pair_has_no_difference(kiss, pair):
    assert verify.compare(kiss, pair) == []
    report = {"clean": True, "nodes": ["node1", "node2"], "vms": 3, "differences": []}
    assert verifycli.human(report) == (
        "kiss-verify: node1 and node2 agree with the committed cache (3 VMs)"
    )


def test_a_hand_edited_res_file_is_named_with_the_changed_line(kiss, pair):
    path = "/etc/drbd.d/web.res"
    pair["node2"]["files"][path] = pair["node2"]["files"][path].replace("10.99.0.2", "10.99.0.9")
    found = only(kiss, pair)
    assert (found.node, found.kind, found.subject, found.fix) == (
        "node2", "res-file", path, "kiss-configure"
    )  # fmt: skip
    assert "+        address 10.99.0.9:10008;" in found.detail


def test_a_missing_res_file_is_named(kiss, pair):
    pair["node1"]["files"]["/etc/drbd.d/db.res"] = None
    found = only(kiss, pair)
    assert (found.node, found.kind, found.detail) == ("node1", "res-file", "missing")


def test_drbd_running_another_configuration_is_fixed_with_adjust(kiss, pair):
    pair["node1"]["adjust"]["mail"] = ["drbdsetup-84 connect mail ipv4:10.99.0.1:10004 ..."]
    found = only(kiss, pair)
    assert (found.node, found.kind, found.subject) == ("node1", "drbd-running", "mail")
    assert found.fix == "drbdadm adjust mail"
    assert "drbdsetup-84 connect mail" in found.detail


def test_a_missing_lv_is_created_by_kiss_configure(kiss, pair):
    del pair["node2"]["lvs"]["sizes"]["db_logs"]
    found = only(kiss, pair)
    assert (found.node, found.kind, found.subject, found.fix) == (
        "node2", "lv-missing", "vg0/db_logs", "kiss-configure"
    )  # fmt: skip


def test_a_small_lv_is_grown_with_lvextend_then_drbdadm_resize(kiss, pair):
    pair["node1"]["lvs"]["sizes"]["web_root"] = 32 << 20
    found = only(kiss, pair)
    assert (found.node, found.kind) == ("node1", "lv-too-small")
    assert found.fix.startswith(f"lvextend -L {64 << 20}b vg0/web_root, then")
    assert "drbdadm resize web/0" in found.fix


def test_a_larger_lv_is_no_difference(kiss, pair):
    pair["node1"]["lvs"]["sizes"]["web_root"] = 1 << 30
    assert verify.compare(kiss, pair) == []


def test_lvs_failing_is_reported(kiss, pair):
    pair["node1"]["lvs"] = {"error": "lvs exited 5: Volume group vg0 not found"}
    found = only(kiss, pair)
    assert (found.kind, found.fix) == ("lvs-failed", "vgs vg0")


def test_a_unit_file_edited_by_hand_is_rewritten_by_kiss_node(kiss, pair):
    path = "/etc/systemd/system/vm@.service"
    pair["node1"]["files"][path] += "Nice=5\n"
    found = only(kiss, pair)
    assert (found.kind, found.subject) == ("unit-file", path)
    assert found.fix == "salt-call --local state.apply kiss.node"


def test_the_verify_timer_follows_the_schedule_of_the_pillar(kiss, pair):
    kiss = copy.deepcopy(kiss)
    kiss["cluster"]["verify_schedule"] = "Sun *-*-* 03:00:00"
    found = verify.compare(kiss, pair)
    assert [(d.node, d.subject) for d in found] == [
        ("node1", "/etc/systemd/system/kiss-drbd-verify.timer"),
        ("node2", "/etc/systemd/system/kiss-drbd-verify.timer"),
    ]
    assert "+OnCalendar=weekly" in found[0].detail
    assert "-OnCalendar=Sun *-*-* 03:00:00" in found[0].detail


def test_an_active_vm_not_wanted_is_enabled_again_by_kiss_configure(kiss, pair):
    del pair["node1"]["links"]["/etc/systemd/system/all-vms.target.wants/vm@db.service"]
    found = only(kiss, pair)
    assert (found.node, found.kind, found.fix) == ("node1", "unit-not-wanted", "kiss-configure")


def test_systemctl_enable_of_an_active_vm_is_as_good_as_the_states_link(kiss, pair):
    path = "/etc/systemd/system/all-vms.target.wants/vm@db.service"
    pair["node1"]["links"][path] = "/etc/systemd/system/vm@.service"
    assert verify.compare(kiss, pair) == []


def test_a_disabled_vm_enabled_by_hand_is_disabled_with_systemctl(kiss, pair):
    kiss = copy.deepcopy(kiss)
    kiss["disabled_vms"]["mail"] = kiss["vms"].pop("mail")
    pair = {node: clean_facts(kiss, node) for node in pair}
    path = "/etc/systemd/system/all-vms.target.wants/vm@mail.service"
    pair["node2"]["links"][path] = "/etc/systemd/system/vm@.service"
    found = only(kiss, pair)
    assert (found.node, found.kind, found.subject) == ("node2", "disabled-vm-wanted", path)
    assert found.fix == "systemctl disable vm@mail.service"


def test_a_vm_unknown_to_the_cache_enabled_by_hand_is_named(kiss, pair):
    path = "/etc/systemd/system/all-vms.target.wants/vm@ghost.service"
    pair["node1"]["links"][path] = "/etc/systemd/system/vm@.service"
    found = only(kiss, pair)
    assert (found.kind, found.fix) == ("unit-wanted", "systemctl disable vm@ghost.service")
    assert "not in the cache" in found.detail


def test_an_active_vm_wanted_by_another_target_is_removed_from_there(kiss, pair):
    path = "/etc/systemd/system/multi-user.target.wants/vm@web.service"
    pair["node2"]["links"][path] = "/etc/systemd/system/vm@.service"
    found = only(kiss, pair)
    assert (found.kind, found.fix) == ("unit-wanted", f"rm {path} && systemctl daemon-reload")


def test_the_verify_timer_not_enabled_is_named(kiss, pair):
    del pair["node2"]["links"][f"/etc/systemd/system/{verifywanted.TIMER_LINK}"]
    found = only(kiss, pair)
    assert (found.node, found.kind, found.fix) == ("node2", "unit-not-wanted", "kiss-configure")


def test_out_of_sync_blocks_are_resynced_on_the_node_not_running_the_vm(kiss, pair):
    for node in pair:
        pair[node]["proc_drbd"] = proc_drbd(kiss, node, oos=4)
    found = verify.compare(kiss, pair)
    by_vm = {d.subject: d for d in found}
    assert set(by_vm) == {"db", "mail", "web"}
    assert all(d.kind == "out-of-sync" and "4 KiB" in d.detail for d in found)
    # db runs on node2 (Primary there): node1's copy is the stale one; mail and web the reverse
    assert (by_vm["db"].node, by_vm["web"].node) == ("node1", "node2")
    assert by_vm["web"].fix == "drbdadm disconnect web && drbdadm connect web"


def test_out_of_sync_while_not_connected_is_left_to_the_resync(kiss, pair):
    for node in pair:
        pair[node]["proc_drbd"] = proc_drbd(kiss, node, oos=4096, cs="SyncSource")
    assert verify.compare(kiss, pair) == []


def test_with_neither_primary_the_copy_away_from_primary_on_is_the_stale_one(kiss, pair):
    for node in pair:
        text = proc_drbd(kiss, node, oos=8).replace("ro:Primary/", "ro:Secondary/")
        pair[node]["proc_drbd"] = text.replace("/Primary ", "/Secondary ")
    by_vm = {d.subject: d.node for d in verify.compare(kiss, pair)}
    assert by_vm == {"db": "node1", "mail": "node2", "web": "node2"}


def test_bare_repositories_at_different_commits_are_one_difference_of_the_pair(kiss, pair):
    pair["node2"]["git"].update(bare_head=SHA_B, work_head=SHA_B)
    found = only(kiss, pair)
    assert (found.node, found.kind) == ("", "git-bare")
    assert f"node1 {SHA_A}, node2 {SHA_B}" in found.detail
    assert "git merge --ff-only FETCH_HEAD" in found.fix


def test_a_working_copy_behind_its_bare_repository_is_named(kiss, pair):
    pair["node2"]["git"]["work_head"] = SHA_B
    found = only(kiss, pair)
    assert (found.node, found.kind, found.fix) == ("node2", "git-working-copy", "kiss-configure")


def test_uncommitted_edits_are_committed_on_the_primary_and_moved_from_the_peer(kiss, pair):
    for node in pair:
        pair[node]["git"]["pending"] = ["vm-config/example/web.yml"]
    found = verify.compare(kiss, pair)
    assert [(d.node, d.kind) for d in found] == [("node1", "git-pending"), ("node2", "git-pending")]
    assert found[0].fix == "kiss-configure"
    assert found[1].fix.startswith("move them to the primary node1")


def test_local_mode_compares_this_node_only(kiss, pair):
    assert verify.compare(kiss, {"node2": pair["node2"]}) == []
    pair["node2"]["files"]["/etc/drbd.d/web.res"] = None
    assert [d.node for d in verify.compare(kiss, {"node2": pair["node2"]})] == ["node2"]


def test_the_human_report_gives_each_difference_its_fix(kiss, pair):
    del pair["node2"]["lvs"]["sizes"]["db_logs"]
    differences = [d.as_dict() for d in verify.compare(kiss, pair)]
    report = {"clean": False, "nodes": ["node1", "node2"], "vms": 3, "differences": differences}
    assert verifycli.human(report).splitlines() == [
        "kiss-verify: 1 difference(s) on node1 and node2",
        "node2: lv-missing vg0/db_logs: missing (disk logs of VM db)",
        "    fix: kiss-configure",
    ]


def test_a_vm_link_whose_name_is_no_vm_name_is_removed_by_path(kiss, pair):
    path = "/etc/systemd/system/all-vms.target.wants/vm@.service"
    pair["node1"]["links"][path] = "/etc/systemd/system/vm@.service"
    found = only(kiss, pair)
    assert (found.kind, found.fix) == ("unit-wanted", f"rm {path} && systemctl daemon-reload")
