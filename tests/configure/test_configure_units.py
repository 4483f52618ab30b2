"""The small parts of kiss-configure: the remote command, git URLs, state summaries, and which
files count as the operator's edits (real git)."""

from pathlib import Path

import git
import pytest

from kisscluster.configure import nodeside
from kisscluster.configure.gitsite import commit_paths, pending_edits
from kisscluster.configure.node import Cluster, Node, NodeError
from kisscluster.configure.remote import ssh_url
from kisscluster.configure.summary import summarize

pytestmark = pytest.mark.fast

PEER = {"name": "node2", "prod_addr": "192.0.2.12", "stor_addr": "10.99.0.2"}


def cluster(**lookup) -> Cluster:
    return Cluster("example", ({"name": "node1", "stor_addr": "10.99.0.1"}, PEER), lookup, {})


def test_default_remote_command_is_ssh_to_the_peer_storage_address():
    assert cluster().remote_command(PEER, "kiss-configure", "node", "check") == [
        "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "ServerAliveInterval=5",
        "-o", "ServerAliveCountMax=6", "10.99.0.2",
        "kiss-configure", "node", "check",
    ]  # fmt: skip


def test_remote_command_template_names_the_peer():
    template = ["ssh", "{stor_addr}", "env", "SALT_CONFIG_DIR=/nodes/{name}/salt"]
    assert cluster(remote_command=template).remote_command(PEER, "x") == [
        "ssh", "10.99.0.2", "env", "SALT_CONFIG_DIR=/nodes/node2/salt", "x",
    ]  # fmt: skip


@pytest.mark.parametrize("argument", ["a;reboot", "$(id)", "two words", "`x`", "a|b", ""])
def test_arguments_the_peer_shell_would_interpret_are_refused(argument: str):
    with pytest.raises(NodeError, match="refusing to pass"):
        cluster().remote_command(PEER, "kiss-configure", argument)


def test_remote_command_must_be_a_list():
    with pytest.raises(NodeError, match="list of strings"):
        cluster(remote_command="ssh node2").remote_command(PEER)


def test_not_a_member_names_the_members():
    with pytest.raises(NodeError, match=r"'node3' is not a member.*node1, node2"):
        cluster().peer_of("node3")


def test_ssh_url_brackets_ipv6():
    assert ssh_url("10.99.0.2", Path("/srv/kiss-configure.git")) == (
        "ssh://10.99.0.2/srv/kiss-configure.git"
    )
    assert ssh_url("fd00::2", Path("/srv/k.git")) == "ssh://[fd00::2]/srv/k.git"


def test_summary_of_state_results_orders_by_run_and_counts():
    local = {
        "file_|-b_|-/b_|-managed": {"result": True, "changes": {}, "__run_num__": 1, "__id__": "b"},
        "file_|-a_|-/a_|-managed": {
            "result": True,
            "changes": {"diff": "new"},
            "comment": "File /a updated",
            "__run_num__": 0,
            "__id__": "a",
        },
        "test_|-c_|-c_|-fail_without_changes": {
            "result": False,
            "changes": {},
            "comment": "Failure!",
            "__run_num__": 2,
            "__id__": "c",
        },
    }
    summary = summarize(local)
    assert not summary.ok
    assert summary.lines(test=False) == [
        "3 states, 1 changed, 1 failed",
        "  failed: c (test.fail_without_changes): Failure!",
        "  changed: a (file.managed): File /a updated",
    ]


def test_summary_of_render_errors_is_a_failure():
    summary = summarize(["Rendering SLS 'base:kiss.vms' failed: mapping values"])
    assert not summary.ok
    assert (
        summary.lines(test=True)[1]
        == "  error: Rendering SLS 'base:kiss.vms' failed: mapping values"
    )


def test_pending_edits_name_both_sides_of_a_staged_rename(tmp_path: Path):
    repo = git.Repo.init(tmp_path, initial_branch="main")
    for name in ("mail.yml", "web.yml"):
        path = tmp_path / "vm-config" / "example" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(f"name: {name[:-4]}\n")
    (tmp_path / "notes.txt").write_text("not configuration\n")
    repo.git.add("-A")
    repo.index.commit("seed")
    repo.git.mv("vm-config/example/mail.yml", "vm-config/example/mail.yml.off")
    (tmp_path / "vm-config" / "example" / "web.yml").write_text("name: web\ncpus: 2\n")
    (tmp_path / "notes.txt").write_text("edited, still not configuration\n")

    assert pending_edits(repo) == [
        "vm-config/example/mail.yml",
        "vm-config/example/mail.yml.off",
        "vm-config/example/web.yml",
    ]


@pytest.mark.parametrize("commit", ["main", "--upload-pack=x", "HEAD~1", "abc123", "A" * 40])
def test_node_steps_accept_only_a_full_commit_id(commit: str, tmp_path: Path):
    node = Node(tmp_path / "salt", "node2", tmp_path / "site")

    for outcome in (nodeside.check(node, commit), nodeside.apply(node, commit, test=True)):
        assert not outcome.ok
        assert "is not a full commit id" in outcome.lines[0]


def test_commit_paths_commits_only_those_paths(tmp_path: Path):
    repo = git.Repo.init(tmp_path, initial_branch="main")
    for name in ("a.yml", "b.yml"):
        (tmp_path / name).write_text("old\n")
    repo.git.add("-A")
    repo.index.commit("seed")
    (tmp_path / "a.yml").write_text("new\n")
    (tmp_path / "b.yml").write_text("staged by the operator\n")
    repo.git.add("b.yml")

    sha = commit_paths(repo, ["a.yml"], "kiss-configure: a.yml")

    assert repo.head.commit.hexsha == sha
    assert repo.head.commit.message.strip() == "kiss-configure: a.yml"
    assert list(repo.head.commit.stats.files) == ["a.yml"]
    assert repo.git.diff("--cached", "--name-only") == "b.yml"
