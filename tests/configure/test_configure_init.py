"""kiss-init on two nodes of one machine (real git over a real sshd on 127.0.0.2, see
twonodes.py): repositories on both nodes, group permissions, re-runs, the heartbeat secret."""

import shutil
import stat
from pathlib import Path

import git
from twonodes import Pair


def secret_path(root: Path) -> Path:
    return root / "etc" / "kisscluster" / "kissclusterd.secret"


def test_init_makes_both_repositories_and_working_copies(pair: Pair):
    run = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))

    assert run.returncode == 0, run.stdout + run.stderr
    for node, peer in ((pair.node1, pair.node2), (pair.node2, pair.node1)):
        assert git.Repo(node.bare).bare
        repo = git.Repo(node.site)
        assert repo.remotes.origin.url == str(node.bare)
        push_urls = repo.git.config("--get-all", "remote.origin.pushurl").split("\n")
        assert push_urls == [str(node.bare), f"ssh://{peer.stor_addr}{peer.bare}"]
        assert pair.head(node.site) == pair.head(node.bare) == pair.head(peer.bare)
        cluster_file = node.site / "pillar" / "cluster.yml"
        assert cluster_file.stat().st_gid == 4, "group adm"
        assert cluster_file.stat().st_mode & stat.S_IWGRP
        assert (node.site / "vm-config").stat().st_mode & stat.S_ISGID
    assert "no heartbeat secret" in run.stdout


def test_init_again_keeps_everything_and_copies_the_secret(pair: Pair):
    assert pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton)).returncode == 0
    seeded = pair.head(pair.node1.bare)
    secret = secret_path(pair.node1.root)
    secret.parent.mkdir(parents=True)
    secret.write_text("c2VjcmV0IG9mIG5vZGUxIGF0IGxlYXN0IDE2IGJ5dGVz\n")
    secret.chmod(0o600)

    again = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))

    assert again.returncode == 0, again.stdout + again.stderr
    assert "kiss-configure.git: exists, kept" in again.stdout
    assert pair.head(pair.node1.bare) == pair.head(pair.node2.bare) == seeded
    copied = secret_path(pair.node2.root)
    assert copied.read_text() == secret.read_text()
    assert stat.S_IMODE(copied.stat().st_mode) == 0o600
    assert "heartbeat secret" in again.stdout and "copied" in again.stdout

    copied.write_text("a different secret that must be replaced\n")
    third = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))
    assert third.returncode == 0, third.stdout + third.stderr
    assert copied.read_text() == secret.read_text()

    fourth = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))
    assert "same, kept" in fourth.stdout


def test_init_refuses_to_overwrite_what_is_not_its_own(pair: Pair):
    pair.node1.site.mkdir(parents=True)
    (pair.node1.site / "notes.txt").write_text("the operator's\n")

    run = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))

    assert run.returncode == 1
    assert "is not empty and is not a git working copy" in run.stderr
    assert (pair.node1.site / "notes.txt").read_text() == "the operator's\n"
    assert not pair.node2.site.exists()


def test_init_refuses_on_the_peer(pair: Pair):
    run = pair.run("kiss-init", pair.node2, "--from", str(pair.skeleton))

    assert run.returncode == 1
    assert "not the primary node1" in run.stderr
    assert not pair.node1.bare.exists() and not pair.node2.bare.exists()


def test_a_remote_command_that_reaches_the_wrong_node_is_caught(pair: Pair):
    cluster_file = pair.skeleton / "pillar" / "cluster.yml"
    text = cluster_file.read_text()
    cluster_file.write_text(text.replace("/{name}/salt", "/node1/salt"))

    run = pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton))

    assert run.returncode == 1
    assert "the remote command reached 'node1', not node2" in run.stderr
    assert not pair.node2.bare.exists()


def test_rejoin_on_the_survivor_remakes_a_reinstalled_primarys_repositories(pair: Pair):
    """node1, the primary, reinstalled: no repositories, no secret. kiss-init there would seed a
    new site from the skeleton; --rejoin on node2 gives it node2's site, history and secret."""
    assert pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton)).returncode == 0
    secret = secret_path(pair.node1.root)
    secret.parent.mkdir(parents=True)
    secret.write_text("c2VjcmV0IG9mIG5vZGUxIGF0IGxlYXN0IDE2IGJ5dGVz\n")
    secret.chmod(0o600)
    assert pair.run("kiss-init", pair.node1, "--from", str(pair.skeleton)).returncode == 0
    (pair.node2.site / "vm-config" / "note.txt").write_text("made while node1 was away\n")
    pair.git(pair.node2.site, "add", "-A")
    pair.git(pair.node2.site, "commit", "-m", "while node1 was away")
    pair.git(pair.node2.site, "push", str(pair.node2.bare), "main")
    survivor = pair.head(pair.node2.bare)
    for gone in (pair.node1.site, pair.node1.bare):
        shutil.rmtree(gone)
    secret.unlink()

    refused = pair.run("kiss-init", pair.node1, "--rejoin")
    assert refused.returncode == 1
    assert "this is the node to be rejoined" in refused.stderr
    assert not pair.node1.bare.exists() and not pair.node1.site.exists()

    run = pair.run("kiss-init", pair.node2, "--rejoin")

    assert run.returncode == 0, run.stdout + run.stderr
    assert pair.head(pair.node1.bare) == pair.head(pair.node1.site) == survivor
    assert (pair.node1.site / "vm-config" / "note.txt").is_file()
    assert secret.read_text() == secret_path(pair.node2.root).read_text()
    repo = git.Repo(pair.node1.site)
    push_urls = repo.git.config("--get-all", "remote.origin.pushurl").split("\n")
    assert push_urls == [str(pair.node1.bare), f"ssh://{pair.node2.stor_addr}{pair.node2.bare}"]
