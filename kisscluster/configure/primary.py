"""kiss-configure on the primary: commit, sync both bare repos, inventory, push, orchestrate.

Order, so that a refusal leaves nothing half done: identity check; compare both bare repos
(unreachable or different → stop); fast-forward the working copy; inventory (bad input → stop,
nothing committed); commit the operator's edits, then the cache; push to both; salt-run.
--dry-run runs the inventory on a copy of the working tree (the candidate) and has both nodes
apply that candidate with test=True: what a real run would change, with nothing committed.
"""

import contextlib
import fcntl
import getpass
import shutil
import socket
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import git

from kisscluster import inventory
from kisscluster.configure import rollout
from kisscluster.configure.node import Cluster, Node, load_node
from kisscluster.configure.nodeside import CONFIG_PATHS, GIT_TIMEOUT, IGNORED_IN_SITE, open_site

DEFAULT_RUN_CONFIG_DIR = Path("/etc/kisscluster/salt-run")
ORCHESTRATE_MODS = "kiss.vms"

Say = Callable[[str], None]


class ConfigureError(Exception):
    """kiss-configure stopped; the message says why and what to do."""


@dataclass(frozen=True)
class Options:
    force: bool = False
    dry_run: bool = False
    config_dir: Path | None = None
    run_config_dir: Path = DEFAULT_RUN_CONFIG_DIR


@dataclass(frozen=True)
class Repos:
    """The two bare repositories the working copy's `origin` pushes to."""

    local_url: str
    peer_url: str


def repos(node: Node, repo: git.Repo) -> Repos:
    urls = repo.git.config("--get-all", "remote.origin.pushurl").split("\n")
    local = str(node.bare)
    others = [url for url in urls if url != local]
    if local not in urls or len(others) != 1:
        raise ConfigureError(
            f"{node.site}: remote origin must push to this node's {local} and to the peer's bare "
            f"repository, found push URLs {urls}: run kiss-init, or fix with "
            "`git remote set-url --add --push origin <url>`"
        )
    return Repos(local, others[0])


def remote_head(repo: git.Repo, url: str, branch: str) -> str | None:
    """The commit of `branch` in the repository at `url` (None: no such branch yet)."""
    listing = repo.git.ls_remote(url, f"refs/heads/{branch}", kill_after_timeout=GIT_TIMEOUT)
    return listing.split()[0] if listing else None


def pending_edits(repo: git.Repo) -> list[str]:
    """Every path under vm-config/ and pillar/ that differs from HEAD (both sides of a rename)."""
    status = repo.git.status("--porcelain", "-z", "--untracked-files=all", "--", *CONFIG_PATHS)
    fields = iter(status.split("\0"))
    paths = set()
    for entry in fields:
        if len(entry) > 3:
            paths.add(entry[3:])
            if entry[0] in "RC":
                paths.add(next(fields))
    return sorted(paths)


def _identity(repo: git.Repo) -> dict[str, str]:
    """Who commits when git has no user configured: the operator's login on this node."""
    try:
        repo.git.config("user.email")
        return {}
    except git.GitCommandError:
        name = f"kiss-configure ({getpass.getuser()})"
        email = f"{getpass.getuser()}@{socket.getfqdn()}"
        return {
            "GIT_AUTHOR_NAME": name,
            "GIT_AUTHOR_EMAIL": email,
            "GIT_COMMITTER_NAME": name,
            "GIT_COMMITTER_EMAIL": email,
        }


def commit_paths(repo: git.Repo, paths: list[str], message: str) -> str:
    """Commit exactly `paths` (nothing else the operator may have staged)."""
    # `git add` refuses a path in neither the index nor the work tree: one whose deletion is
    # already staged (the old name after `git mv`). `commit --only` takes it all the same.
    listed = repo.git.ls_files("-z", "--cached", "--others", "--", *paths)
    present = sorted(set(listed.split("\0")) - {""})
    if present:
        repo.git.add("-A", "--", *present)
    repo.git.commit("--quiet", "--only", "-m", message, "--", *paths, env=_identity(repo))
    return repo.head.commit.hexsha


def _describe_heads(node: Node, peer: str, heads: dict[str, str | None]) -> str:
    shown = "\n".join(f"  {name}: {sha or '(no branch)'}" for name, sha in heads.items())
    return (
        f"the bare repositories of {node.minion_id} and {peer} are at different commits:\n{shown}\n"
        "Nothing was changed. Find out which is right (`git log` in both bare repositories), "
        "then bring the other one to it, e.g. from this working copy: `git fetch <url of the "
        "right one> && git merge --ff-only FETCH_HEAD && git push origin`, or push with --force "
        "when you are sure. Then run kiss-configure again."
    )


def _sync_heads(options: Options, node: Node, cluster: Cluster, repo: git.Repo, say: Say) -> bool:
    """Compare both bare repos and fast-forward the working copy. True: the peer takes part."""
    branch = repo.active_branch.name
    urls = repos(node, repo)
    peer = cluster.peer_of(node.minion_id)["name"]
    say(f"git: comparing {node.minion_id} {urls.local_url} and {peer} {urls.peer_url}")
    try:
        local_head = remote_head(repo, urls.local_url, branch)
    except git.GitCommandError as exc:
        raise ConfigureError(
            f"cannot read {node.minion_id}'s repository {urls.local_url}: {exc}"
        ) from exc
    try:
        peer_head = remote_head(repo, urls.peer_url, branch)
    except git.GitCommandError as exc:
        detail = " ".join(exc.stderr.split()) if exc.stderr else str(exc)
        if not options.force:
            raise ConfigureError(
                f"{peer}'s repository {urls.peer_url} is unreachable ({detail}). Nothing was "
                f"changed on either node. Bring {peer} back, or run with --force to configure "
                f"{node.minion_id} alone (then syncing {peer} later is your job)."
            ) from exc
        say(f"--force: {peer}'s repository is unreachable ({detail}); configuring only here")
        _fast_forward(options, repo, branch, local_head, say)
        return False
    if local_head != peer_head:
        heads = {node.minion_id: local_head, peer: peer_head}
        raise ConfigureError(_describe_heads(node, peer, heads))
    _fast_forward(options, repo, branch, local_head, say)
    return True


def _fast_forward(
    options: Options, repo: git.Repo, branch: str, target: str | None, say: Say
) -> None:
    if target is None:
        return
    repo.remotes.origin.fetch(kill_after_timeout=GIT_TIMEOUT)
    head = repo.head.commit
    if head.hexsha == target or repo.is_ancestor(target, head):
        return
    if not repo.is_ancestor(head, target):
        raise ConfigureError(
            f"the working copy's {branch} ({head.hexsha}) and the repositories' ({target}) have "
            "diverged: merge or rebase by hand (`git merge origin/" + branch + "`), then run "
            "kiss-configure again"
        )
    if options.dry_run:
        say(f"git: would fast-forward the working copy to {target}")
    else:
        say(f"git: fast-forwarding the working copy to {target}")
        repo.git.merge("--ff-only", target)


@contextlib.contextmanager
def run_lock(repo: git.Repo) -> Iterator[None]:
    """One kiss-configure or kiss-nuke-vm at a time in a working copy."""
    path = Path(repo.git_dir) / "kiss-configure.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ConfigureError(
                f"another kiss-configure or kiss-nuke-vm is running in {repo.working_tree_dir} "
                f"(it holds {path}): wait for it to finish"
            ) from None
        yield


def configure(options: Options, say: Say = print) -> int:
    """The whole kiss-configure run. Raises ConfigureError (or InventoryError) on a refusal."""
    node = load_node(options.config_dir)
    repo = open_site(node)
    cluster = node.cluster()
    cluster.member(node.minion_id)
    if node.minion_id != cluster.primary:
        if not options.force:
            raise ConfigureError(
                f"this node is {node.minion_id}, not the primary {cluster.primary}: run "
                "kiss-configure there (or --force, after which keeping git in sync is your job)"
            )
        say(
            f"--force: running on {node.minion_id}, not on the primary {cluster.primary}; "
            "keeping the two repositories in sync is now your job"
        )
    with run_lock(repo):
        return _configure(options, node, cluster, repo, say)


def _configure(options: Options, node: Node, cluster: Cluster, repo: git.Repo, say: Say) -> int:
    with_peer = _sync_heads(options, node, cluster, repo, say)
    if options.dry_run:
        return _dry_run(options, node, cluster, repo, with_peer, say)

    _inventory(node.site, say)
    cache = f"vm-config/{cluster.name}.yml"
    pending = pending_edits(repo)
    edits = [path for path in pending if path != cache]
    if edits:
        sha = commit_paths(repo, edits, f"kiss-configure: {', '.join(edits)}")
        say(f"git: committed {', '.join(edits)} as {sha[:12]}")
    if cache in pending:
        sha = commit_paths(repo, [cache], f"kiss-configure: allocation cache {cache}")
        say(f"git: committed the cache {cache} as {sha[:12]}")
    push(node, repo, with_peer, say)
    return _orchestrate(options, node, cluster, repo.head.commit.hexsha, with_peer, say)


def _inventory(site: Path, say: Say) -> inventory.Result:
    say(f"inventory: {site}")
    result = inventory.run(site)
    for label, vms in (
        ("allocated", result.allocated),
        ("activated", result.activated),
        ("disabled", result.disabled),
    ):
        if vms:
            say(f"inventory: {label} {', '.join(sorted(vms))}")
    return result


def _dry_run(
    options: Options, node: Node, cluster: Cluster, repo: git.Repo, with_peer: bool, say: Say
) -> int:
    """Inventory and test=True apply on both nodes of a copy of the working tree (the
    candidate): what a real run would commit, nothing committed, pushed or written here."""
    cache = f"vm-config/{cluster.name}.yml"
    with tempfile.TemporaryDirectory(prefix="kiss-configure-dry-run-") as scratch:
        candidate = Path(scratch) / "site"
        for part in CONFIG_PATHS:
            shutil.copytree(node.site / part, candidate / part, ignore=IGNORED_IN_SITE)
        say(f"dry run: working tree copied to {candidate}; nothing is committed or pushed")
        result = _inventory(candidate, say)
        edits = [path for path in pending_edits(repo) if path != cache]
        if edits:
            say(f"git: would commit {', '.join(edits)}")
        if result.changed:
            say(f"git: would commit the cache {cache}")
        commit = repo.head.commit.hexsha
        return _orchestrate(options, node, cluster, commit, with_peer, say, candidate)


def push(node: Node, repo: git.Repo, with_peer: bool, say: Say) -> None:
    branch = repo.active_branch.name
    urls = repos(node, repo)
    targets = [urls.local_url, urls.peer_url] if with_peer else [urls.local_url]
    say(f"git: pushing {branch} to {', '.join(targets)}")
    try:
        if with_peer:
            repo.git.push("origin", f"{branch}:{branch}", kill_after_timeout=GIT_TIMEOUT)
        else:
            repo.git.push(urls.local_url, f"{branch}:{branch}", kill_after_timeout=GIT_TIMEOUT)
    except git.GitCommandError as exc:
        raise ConfigureError(
            f"push failed, nothing applied: {' '.join(str(exc.stderr).split())}"
        ) from exc
    for url in targets:
        if remote_head(repo, url, branch) != repo.head.commit.hexsha:
            raise ConfigureError(f"after the push, {url} is not at {repo.head.commit.hexsha}")


def _orchestrate(
    options: Options,
    node: Node,
    cluster: Cluster,
    commit: str,
    with_peer: bool,
    say: Say,
    candidate: Path | None = None,
) -> int:
    peer = cluster.peer_of(node.minion_id)["name"]
    mode = " test=True" if options.dry_run else ""
    say(f"salt-run state.orchestrate {ORCHESTRATE_MODS} at {commit[:12]}{mode}")
    pillar = {
        "kiss_commit": commit,
        "kiss_test": options.dry_run,
        "kiss_config_dir": str(node.config_dir),
        "kiss_skip_peer": not with_peer,
        "kiss_candidate": str(candidate) if candidate else "",
    }
    returncode, reports = rollout.orchestrate(options.run_config_dir, ORCHESTRATE_MODS, pillar)
    applied = {node.minion_id: False, peer: False}
    for report in reports:
        target = peer if report.step_id.endswith("peer") else node.minion_id
        if report.ok:
            if report.step_id.endswith("apply-local") or report.step_id.endswith("apply-peer"):
                applied[target] = True
            say(report.comment)
        elif "requisite failed" in report.comment:
            say(f"{target}: not applied: an earlier step failed")
        else:
            say(
                report.comment
                if report.comment.startswith(target)
                else f"{target}: {report.comment}"
            )
            say(f"FAILED on {target} ({report.step_id})")
    if not with_peer:
        say(f"{peer}: skipped (--force with the peer unreachable)")
    clean = returncode == 0 and all(applied[name] for name in applied if with_peer or name != peer)
    verb = "checked" if options.dry_run else "applied"
    say(f"kiss-configure: {verb} cleanly on every node" if clean else "kiss-configure: FAILED")
    return 0 if clean else 1
