"""kiss-init and kiss-configure on two nodes of one machine, with real git, sshd, salt-call and
salt-run. The peer is reached over a real sshd on 127.0.0.2 (see twonodes.py); kiss.vms is the
stand-in state tree of tests/configure/states, which writes files under each node's root."""

import fcntl
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from twonodes import NodeDirs, Pair, detach, use_real_kiss_states

pytestmark = pytest.mark.usefixtures("sshd")


@pytest.fixture
def initialised(pair: Pair) -> Pair:
    init = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))
    assert init.returncode == 0, init.stdout + init.stderr
    return pair


def applied(node: NodeDirs) -> str | None:
    marker = node.root / "applied"
    return marker.read_text(encoding="utf-8").strip() if marker.exists() else None


def heads(pair: Pair) -> tuple[str, str]:
    return pair.head(pair.node1.bare), pair.head(pair.node2.bare)


def add_vm(node: NodeDirs, name: str, **fields: object) -> Path:
    vm = {"name": name, "primary_on": "node2", "network_bridge": "br0", "ram_megs": 64}
    vm |= {"cpus": 1, "root_disk_size": "32M", **fields}
    path = node.site / "vm-config" / "example" / f"{name}.yml"
    path.write_text(yaml.safe_dump(vm), encoding="utf-8")
    return path


def test_full_run_commits_the_cache_pushes_both_and_applies_on_both(initialised: Pair):
    pair = initialised
    seeded = heads(pair)
    assert seeded[0] == seeded[1]

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 0, run.stdout + run.stderr
    commit = pair.head(pair.node1.site)
    assert commit != seeded[0]
    assert heads(pair) == (commit, commit)
    assert pair.head(pair.node2.site) == commit
    cache = yaml.safe_load(pair.git(pair.node2.bare, "show", "main:vm-config/example.yml"))
    assert {"web", "db", "mail"} <= set(json.dumps(cache).replace('"', " ").split())
    assert applied(pair.node1) == applied(pair.node2) == commit
    for node in (pair.node1, pair.node2):
        assert sorted(p.name for p in (node.root / "vms").iterdir()) == ["db", "mail", "web"]
    assert "node1: kiss.vms at" in run.stdout
    assert "node2: kiss.vms at" in run.stdout
    assert "applied cleanly on every node" in run.stdout

    again = pair.run("kiss-configure", pair.node1)
    assert again.returncode == 0, again.stdout + again.stderr
    assert heads(pair) == (commit, commit), "a run without edits must not commit"
    assert "0 changed" in again.stdout


def test_full_run_applies_the_real_kiss_vms_on_both_nodes(pair: Pair):
    """The product's kiss.vms, with the seams of use_real_kiss_states (loop-device LVM without
    activation, drbdadm-84 --dry-run, a recording systemctl), files under each node's root."""
    devices = use_real_kiss_states(pair)
    try:
        init = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))
        assert init.returncode == 0, init.stdout + init.stderr

        run = pair.run("kiss-configure", pair.node1)

        assert run.returncode == 0, run.stdout + run.stderr
        commit = pair.head(pair.node1.site)
        assert heads(pair) == (commit, commit) == (commit, pair.head(pair.node2.site))
        for node in (pair.node1, pair.node2):
            for vm in ("web", "db", "mail"):
                assert (node.root / "etc" / "drbd.d" / f"{vm}.res").is_file()
                assert (node.root / "etc" / "vm" / f"{vm}.conf").is_file()
            assert f"{node.name}: kiss.vms at {commit[:12]}: " in run.stdout
        lvcreates = [
            json.loads(line)
            for line in (pair.node2.directory / "commands.log").read_text().splitlines()
            if line.startswith('["lvcreate"')
        ]
        assert {call[call.index("--name") + 1] for call in lvcreates} >= {"db_root", "db_data"}

        again = pair.run("kiss-configure", pair.node1)
        assert again.returncode == 0, again.stdout + again.stderr
        assert heads(pair) == (commit, commit)
    finally:
        detach(devices)


def test_operator_edits_are_committed_with_the_file_names(initialised: Pair):
    pair = initialised
    add_vm(pair.node1, "files")

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 0, run.stdout + run.stderr
    log = pair.git(pair.node2.bare, "log", "--format=%s", "-2")
    assert "kiss-configure: vm-config/example/files.yml" in log
    assert "allocation cache" in log
    assert (pair.node2.root / "vms" / "files").exists()


def test_a_vm_disabled_with_git_mv_is_committed_as_a_rename(initialised: Pair):
    pair = initialised
    assert pair.run("kiss-configure", pair.node1).returncode == 0
    site = pair.node1.site
    pair.git(site, "mv", "vm-config/example/mail.yml", "vm-config/example/mail.yml.disabled")

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 0, run.stdout + run.stderr
    assert "inventory: disabled mail" in run.stdout
    changed = pair.git(pair.node2.bare, "show", "--name-status", "--format=", "HEAD~1")
    assert changed.split() == [
        "R100", "vm-config/example/mail.yml", "vm-config/example/mail.yml.disabled"
    ]  # fmt: skip
    assert pair.git(site, "status", "--porcelain") == ""


def test_not_on_the_primary_is_refused_and_force_runs(initialised: Pair):
    pair = initialised
    before = heads(pair)
    add_vm(pair.node2, "sneaky")

    refused = pair.run("kiss-configure", pair.node2)

    assert refused.returncode == 1
    assert "not the primary node1" in refused.stderr
    assert heads(pair) == before
    assert pair.head(pair.node2.site) == before[1]
    assert applied(pair.node1) is None and applied(pair.node2) is None

    forced = pair.run("kiss-configure", pair.node2, "--force")

    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "keeping the two repositories in sync is now your job" in forced.stdout
    commit = pair.head(pair.node2.site)
    assert heads(pair) == (commit, commit)
    assert applied(pair.node1) == applied(pair.node2) == commit
    assert (pair.node1.root / "vms" / "sneaky").exists()


def test_bare_repositories_at_different_commits_stop_before_the_inventory(initialised: Pair):
    pair = initialised
    clone = pair.base / "elsewhere"
    pair.git(pair.base, "clone", "-q", str(pair.node2.bare), str(clone))
    pair.git(clone, "commit", "-q", "--allow-empty", "-m", "made on node2 behind our back")
    pair.git(clone, "push", "-q", "origin", "main")
    before = heads(pair)
    assert before[0] != before[1]
    add_vm(pair.node1, "waiting")

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 1
    assert before[0] in run.stderr and before[1] in run.stderr
    assert "git fetch" in run.stderr
    assert "inventory" not in run.stdout
    assert heads(pair) == before
    assert not (pair.node1.site / "vm-config" / "example.yml").exists()
    assert applied(pair.node1) is None and applied(pair.node2) is None


def test_one_run_at_a_time(initialised: Pair):
    pair = initialised
    before = heads(pair)
    add_vm(pair.node1, "queued")
    with (pair.node1.site / ".git" / "kiss-configure.lock").open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        run = pair.run("kiss-configure", pair.node1)
        nuke = pair.run("kiss-nuke-vm", pair.node1, "queued")

    assert run.returncode == 1 and nuke.returncode == 1
    assert "another kiss-configure or kiss-nuke-vm is running" in run.stderr
    assert "another kiss-configure or kiss-nuke-vm is running" in nuke.stderr
    assert heads(pair) == before
    assert pair.head(pair.node1.site) == before[0]


def test_without_a_working_copy_it_says_run_kiss_init(pair: Pair):
    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 1
    assert "is not a git working copy: run kiss-init" in run.stderr


def test_diverged_working_copy_stops_with_instructions(initialised: Pair):
    pair = initialised
    pair.git(pair.node1.site, "commit", "-q", "--allow-empty", "-m", "committed by hand here")
    clone = pair.base / "elsewhere"
    pair.git(pair.base, "clone", "-q", str(pair.node1.bare), str(clone))
    pair.git(clone, "commit", "-q", "--allow-empty", "-m", "pushed to both from elsewhere")
    for node in (pair.node1, pair.node2):
        pair.git(clone, "push", "-q", str(node.bare), "main")
    before = heads(pair)

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 1
    assert "have diverged: merge or rebase by hand" in run.stderr
    assert heads(pair) == before
    assert applied(pair.node1) is None and applied(pair.node2) is None


def test_unreachable_peer_applies_nothing_anywhere(initialised: Pair):
    pair = initialised
    before = heads(pair)
    pair.sshd.stop()

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 1
    assert "node2's repository ssh://127.0.0.2" in run.stderr
    assert "unreachable" in run.stderr
    assert heads(pair)[0] == before[0]
    assert pair.head(pair.node1.site) == before[0]
    assert applied(pair.node1) is None and applied(pair.node2) is None


def test_force_with_the_peer_unreachable_configures_this_node_alone(initialised: Pair):
    pair = initialised
    before = heads(pair)
    pair.sshd.stop()

    run = pair.run("kiss-configure", pair.node1, "--force")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "--force: node2's repository is unreachable" in run.stdout
    assert "node2: skipped" in run.stdout
    commit = pair.head(pair.node1.site)
    assert pair.head(pair.node1.bare) == commit != before[0]
    assert applied(pair.node1) == commit
    assert applied(pair.node2) is None


def test_bad_vm_file_stops_with_file_and_field_and_changes_nothing(initialised: Pair):
    pair = initialised
    before = heads(pair)
    add_vm(pair.node1, "broken", colour="blue")

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 1
    assert "vm-config/example/broken.yml" in run.stderr
    assert "colour" in run.stderr
    assert heads(pair) == before
    assert pair.head(pair.node1.site) == before[0]
    assert applied(pair.node1) is None and applied(pair.node2) is None


def test_failing_peer_step_fails_salt_run_and_names_the_node(initialised: Pair):
    pair = initialised
    pair.node2.root.mkdir(parents=True)
    (pair.node2.root / "fail-apply").touch()

    run = pair.run("kiss-configure", pair.node1)

    assert run.returncode == 1
    assert "FAILED on node2" in run.stdout
    assert "node2:   failed: kiss-test-vms-fail" in run.stdout
    commit = pair.head(pair.node1.site)
    assert applied(pair.node1) == commit, "node1 applied before the peer step"

    salt_run = subprocess.run(
        [
            str(Path(sys.executable).with_name("salt-run")),
            "-c",
            str(pair.node1.run_config_dir),
            "--out",
            "json",
            "state.orchestrate",
            "kiss.vms",
            "pillar=" + json.dumps({"kiss_commit": commit}),
        ],
        capture_output=True,
        text=True,
        env=pair.env(),
        timeout=300,
        check=False,
    )
    assert salt_run.returncode != 0, salt_run.stdout


def test_node_refuses_to_apply_at_another_commit(initialised: Pair):
    pair = initialised
    seeded = pair.head(pair.node1.site)
    add_vm(pair.node1, "later")
    assert pair.run("kiss-configure", pair.node1).returncode == 0
    (pair.node1.root / "applied").unlink()

    stale = pair.run("kiss-configure", pair.node1, "node", "apply", "--commit", seeded, "--test")

    assert stale.returncode == 1
    answer = json.loads(stale.stdout.splitlines()[-1])
    assert answer["node"] == "node1" and answer["ok"] is False
    assert f"not at {seeded}" in answer["lines"][0]
    assert applied(pair.node1) is None


def test_dry_run_commits_nothing_and_summarises_each_node(initialised: Pair):
    pair = initialised
    before = heads(pair)
    add_vm(pair.node1, "planned")

    run = pair.run("kiss-configure", pair.node1, "--dry-run")

    assert run.returncode == 0, run.stdout + run.stderr
    assert heads(pair) == before
    assert pair.head(pair.node1.site) == before[0]
    assert "would commit vm-config/example/planned.yml" in run.stdout
    assert "would commit the cache vm-config/example.yml" in run.stdout
    assert "inventory: allocated db, mail, planned, web" in run.stdout
    for node in ("node1", "node2"):
        assert f"{node}: test=True kiss.vms at" in run.stdout
        assert f"{node}:   would change: kiss-test-vms-applied" in run.stdout
        assert f"{node}:   would change: kiss-test-vms-planned" in run.stdout
    assert applied(pair.node1) is None and applied(pair.node2) is None
    assert not (pair.node1.site / "vm-config" / "example.yml").exists()
    assert pair.git(pair.node1.site, "status", "--porcelain") == "?? vm-config/example/planned.yml"
    assert pair.git(pair.node2.site, "status", "--porcelain") == ""


def test_dry_run_with_the_peer_working_copy_behind_a_push(initialised: Pair):
    """kiss-nuke-vm pushes its commit to both nodes and leaves the peer's working copy to the
    next kiss-configure: a dry run still checks both nodes, and moves neither working copy."""
    pair = initialised
    behind = pair.head(pair.node2.site)
    (pair.node1.site / "notes.txt").write_text("pushed, not yet applied on node2\n")
    pair.git(pair.node1.site, "add", "notes.txt")
    pair.git(pair.node1.site, "commit", "-q", "-m", "notes")
    pair.git(pair.node1.site, "push", "-q", "origin", "main:main")
    assert heads(pair) == (pair.head(pair.node1.site),) * 2 != (behind,) * 2
    add_vm(pair.node1, "planned")

    run = pair.run("kiss-configure", pair.node1, "--dry-run")

    assert run.returncode == 0, run.stdout + run.stderr
    assert "node2:   would change: kiss-test-vms-planned" in run.stdout
    assert pair.head(pair.node2.site) == behind
