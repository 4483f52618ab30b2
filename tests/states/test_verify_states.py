"""kiss-verify on files the real Salt states wrote: kiss.node.files and kiss.vms applied with real
`salt-call --local` on both nodes of the example site under temporary roots (conftest.py), real
LVs in loop-device volume groups, real git repositories. Clean first, then each difference the
issue names, made by hand and named by kiss-verify.

What the host cannot give crosses verifyfacts' seam (`Host`), as in the other state tests: no
DRBD kernel module here, so `drbdadm -d adjust` is answered "nothing to do" and /proc/drbd as two
connected UpToDate copies; no device-mapper activation, so a missing LV is the real `lvs` output
with that LV taken out. Everything else - the files, the links, the LV sizes, git - is real.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from kisstest import salt_call, write_minion_config

from kisscluster import pillar, verify, verifyfacts, verifywanted
from kisscluster.lab.layout import VOLUME_GROUP

GIT_IDENTITY = ["-c", "user.name=test", "-c", "user.email=test@example.org"]
PROC_DRBD = (
    " {minor}: cs:Connected ro:Secondary/Secondary ds:UpToDate/UpToDate C r-----\n"
    "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
)


class TestHost(verifyfacts.Host):
    """The node's real `lvs` (its loop VG's LVM config), the rest answered as the docstring says."""

    __test__ = False

    def __init__(self, node, hidden_lv: str | None = None) -> None:
        self.node = node
        self.hidden_lv = hidden_lv

    def run(self, argv):
        if argv[0] == self.node.lookup["lvs"]:
            done = subprocess.run(
                list(argv), env=self.node.vg.env, capture_output=True, text=True, check=True
            )
            if self.hidden_lv:
                report = json.loads(done.stdout)
                lvs = report["report"][0]["lv"]
                report["report"][0]["lv"] = [lv for lv in lvs if lv["lv_name"] != self.hidden_lv]
                done.stdout = json.dumps(report)
            return done
        assert argv[1:2] == ["-d"] and "adjust" in argv, argv
        return subprocess.CompletedProcess(list(argv), 0, "", "")

    def proc_drbd(self) -> str:
        return "".join(PROC_DRBD.format(minor=minor) for minor in range(12))


def git(*args: str, cwd: Path | None = None) -> str:
    done = subprocess.run(
        ["git", *GIT_IDENTITY, *args], cwd=cwd, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@pytest.fixture
def repositories(tmp_path: Path) -> dict[str, tuple[Path, Path]]:
    """Each node's working copy and bare repository, both bare ones at the same commit."""
    seed = tmp_path / "seed"
    git("init", "-q", "-b", "main", str(seed))
    (seed / "pillar").mkdir()
    (seed / "pillar" / "cluster.yml").write_text("cluster: {}\n", encoding="utf-8")
    git("add", "-A", cwd=seed)
    git("commit", "-q", "-m", "site", cwd=seed)
    found = {}
    for node in ("node1", "node2"):
        bare, work = tmp_path / "git" / node / "site.git", tmp_path / "git" / node / "site"
        git("clone", "-q", "--bare", str(seed), str(bare))
        git("clone", "-q", str(bare), str(work))
        found[node] = (work, bare)
    return found


@pytest.fixture
def rolled_out(nodes, site: Path, repositories):
    """kiss.node.files and kiss.vms applied on both nodes; the pillar and where each node is."""
    for node in nodes.values():
        for sls in ("kiss.node.files", "kiss.vms"):
            results = node.apply(sls)
            failed = {sid: r["comment"] for sid, r in results.items() if r["result"] is False}
            assert not failed, (node.name, sls, failed)
    where = {
        name: verifyfacts.Where(name, node.lookup, *repositories[name])
        for name, node in nodes.items()
    }
    return pillar.build(site), where


def differences(nodes, rolled_out, hidden: dict[str, str] | None = None) -> list:
    kiss, where = rolled_out
    hidden = hidden or {}
    facts = {
        name: verifyfacts.gather(where[name], kiss, TestHost(node, hidden.get(name)))
        for name, node in nodes.items()
    }
    return verify.compare(kiss, facts)


def named(found: list) -> list[tuple[str, str, str]]:
    return [(d.node, d.kind, d.subject) for d in found]


def test_the_states_output_is_clean_then_each_hand_made_difference_is_named(
    nodes, rolled_out, repositories, tmp_path
):
    assert differences(nodes, rolled_out) == []

    # a hand-edited .res on node2
    res = nodes["node2"].root / "etc/drbd.d/web.res"
    original = res.read_text(encoding="utf-8")
    res.write_text(original.replace("meta-disk internal;", "meta-disk internal; # tuned"))
    found = differences(nodes, rolled_out)
    assert named(found) == [("node2", "res-file", "/etc/drbd.d/web.res")]
    assert "# tuned" in found[0].detail and found[0].fix == "kiss-configure"
    res.write_text(original, encoding="utf-8")

    # a missing LV on node1 (see the module docstring: lvs output at the seam)
    found = differences(nodes, rolled_out, hidden={"node1": "db_data"})
    assert named(found) == [("node1", "lv-missing", f"{VOLUME_GROUP}/db_data")]

    # a unit enabled by hand on node1: real `systemctl --root` follows [Install] of vm@.service
    subprocess.run(
        ["systemctl", f"--root={nodes['node1'].root}", "enable", "vm@ghost.service"],
        capture_output=True,
        check=True,
    )
    found = differences(nodes, rolled_out)
    link = "/etc/systemd/system/all-vms.target.wants/vm@ghost.service"
    assert named(found) == [("node1", "unit-wanted", link)]
    assert found[0].fix == "systemctl disable vm@ghost.service"
    (nodes["node1"].root / link.lstrip("/")).unlink()

    # node2's bare repository at another commit (pushed there from a clone, as by hand)
    _work, bare = repositories["node2"]
    scratch = tmp_path / "scratch"
    git("clone", "-q", str(bare), str(scratch))
    git("commit", "-q", "--allow-empty", "-m", "by hand", cwd=scratch)
    git("push", "-q", "origin", "main", cwd=scratch)
    found = differences(nodes, rolled_out)
    assert named(found) == [("", "git-bare", "site"), ("node2", "git-working-copy", "site")]
    assert git("rev-parse", "HEAD", cwd=scratch) in found[0].detail


def test_the_online_verify_units_pass_systemd_analyze_verify(node1):
    """Real `systemd-analyze verify` on the timer and service kiss.vms wrote, as
    test_kiss_node.py checks the other units."""
    results = node1.apply("kiss.vms")
    assert all(r["result"] is not False for r in results.values())
    system = node1.root / "etc/systemd/system"
    assert (system / verifywanted.TIMER_LINK).resolve() == system / "kiss-drbd-verify.timer"
    service = (system / "kiss-drbd-verify.service").read_text(encoding="utf-8")
    assert service.splitlines()[-1].endswith("kisscluster.onlineverify --drbdadm "
                                             f"{node1.lookup['drbdadm']} mail web")  # fmt: skip
    assert "OnCalendar=weekly" in (system / "kiss-drbd-verify.timer").read_text(encoding="utf-8")
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{system}:", "SYSTEMD_LOG_LEVEL": "notice"}
    done = subprocess.run(
        ["systemd-analyze", "verify", "kiss-drbd-verify.timer", "kiss-drbd-verify.service"],
        cwd=system,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")


def test_a_schedule_systemd_refuses_fails_kiss_vms_before_the_timer_is_written(node1, site):
    cluster = site / "pillar" / "cluster.yml"
    text = cluster.read_text(encoding="utf-8")
    cluster.write_text(
        text.replace("  heartbeat: {}", "  verify_schedule: every tuesday\n  heartbeat: {}")
    )
    with pytest.raises(AssertionError, match="is not a calendar event: Failed to parse"):
        node1.apply("kiss.vms")
    assert not (node1.root / "etc/systemd/system/kiss-drbd-verify.timer").exists()


def test_kiss_verify_reaches_the_peer_and_kiss_verify_agrees(nodes, rolled_out, monkeypatch):
    """The real script on node1, the peer's facts from `kiss-verify --local --json` through the
    remote command (here `env` pointing at node2's minion config instead of ssh). Without the
    seam, this host's drbdadm (dry-run, no DRBD module) would bring every resource up: each
    node's three resources are named, with `drbdadm adjust`; the site is no git working copy."""
    bin_dir = Path(sys.executable).parent
    node1, node2 = nodes["node1"], nodes["node2"]
    remote = ["env", f"PATH={bin_dir}:/usr/bin:/bin", f"SALT_CONFIG_DIR={node2.config}",
              f"LVM_SYSTEM_DIR={node2.vg.env['LVM_SYSTEM_DIR']}"]  # fmt: skip
    write_minion_config(
        node1.config, node1.site, "node1", kiss_lookup={**node1.lookup, "remote_command": remote}
    )
    env = {**node1.vg.env, "SALT_CONFIG_DIR": str(node1.config)}
    done = subprocess.run(
        [str(bin_dir / "kiss-verify"), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 1, done.stderr
    report = json.loads(done.stdout)
    assert (report["clean"], report["nodes"]) == (False, ["node1", "node2"])
    kinds = {(d["node"], d["kind"], d["subject"]) for d in report["differences"]}
    assert kinds == {
        *(
            (node, "drbd-running", vm)
            for node in ("node1", "node2")
            for vm in ("db", "mail", "web")
        ),
        ("node1", "git", "site"),
        ("node2", "git", "site"),
    }
    fixes = {d["subject"]: d["fix"] for d in report["differences"] if d["kind"] == "drbd-running"}
    assert fixes == {vm: f"drbdadm adjust {vm}" for vm in ("db", "mail", "web")}
    monkeypatch.setenv("LVM_SYSTEM_DIR", node1.vg.env["LVM_SYSTEM_DIR"])  # salt_call inherits it
    local = salt_call(node1.config, "kiss.verify", "local=True")
    assert local["nodes"] == ["node1"] and local["facts"]["node"] == "node1"
    assert len(local["differences"]) == 4
