"""kiss-configure on the primary: commit, sync both bare repos, inventory, push, orchestrate.

Order, so that a refusal leaves nothing half done: identity check; compare both bare repos
(unreachable or different → stop); fast-forward the working copy; inventory (bad input → stop,
nothing committed); commit the operator's edits, then the cache; push to both; salt-run.
--dry-run runs the inventory on a copy of the working tree (the candidate) and has both nodes
apply that candidate with test=True: what a real run would change, with nothing committed.
"""

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git

from kisscluster import inventory
from kisscluster.configure import gitsite, rollout
from kisscluster.configure.gitsite import commit_paths, pending_edits, remote_head
from kisscluster.configure.node import Cluster, Node, load_node

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
    local_url, peer_url = str(node.bare), gitsite.peer_push_url(node, repo)
    peer = cluster.peer_of(node.minion_id)["name"]
    say(f"git: comparing {node.minion_id} {local_url} and {peer} {peer_url}")
    try:
        local_head = remote_head(repo, local_url, branch)
    except git.GitCommandError as exc:
        raise ConfigureError(
            f"cannot read {node.minion_id}'s repository {local_url}: {exc}"
        ) from exc
    try:
        peer_head = remote_head(repo, peer_url, branch)
    except git.GitCommandError as exc:
        detail = gitsite.one_line(exc.stderr) if exc.stderr else str(exc)
        if not options.force:
            raise ConfigureError(
                f"{peer}'s repository {peer_url} is unreachable ({detail}). Nothing was "
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
    gitsite.fetch(repo)
    head, wanted = repo.head.commit, repo.commit(target)
    if head == wanted or repo.is_ancestor(wanted, head):
        return
    if not repo.is_ancestor(head, wanted):
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


def configure(options: Options, say: Say = print) -> int:
    """The whole kiss-configure run. Raises ConfigureError (or InventoryError) on a refusal."""
    node = load_node(options.config_dir)
    repo = gitsite.open_site(node)
    cluster = node.cluster()
    if not cluster.is_primary(node.minion_id):
        if not options.force:
            raise ConfigureError(
                f"this node is {node.minion_id}, not the primary {cluster.primary}: run "
                "kiss-configure there (or --force, after which keeping git in sync is your job)"
            )
        say(
            f"--force: running on {node.minion_id}, not on the primary {cluster.primary}; "
            "keeping the two repositories in sync is now your job"
        )
    with gitsite.run_lock(repo):
        return _configure(options, node, cluster, repo, say)


def _configure(options: Options, node: Node, cluster: Cluster, repo: git.Repo, say: Say) -> int:
    with_peer = _sync_heads(options, node, cluster, repo, say)
    if options.dry_run:
        return _dry_run(options, node, cluster, repo, with_peer, say)

    result = _inventory(node.site, say)
    cache = inventory.cache_file(cluster.name)
    cache_files = [cache, *([result.original_kept] if result.original_kept else [])]
    pending = pending_edits(repo)
    edits = [path for path in pending if path not in cache_files]
    if edits:
        sha = commit_paths(repo, edits, f"kiss-configure: {', '.join(edits)}")
        say(f"git: committed {', '.join(edits)} as {sha[:12]}")
    if cache in pending:
        committed = [path for path in cache_files if path in pending]
        sha = commit_paths(repo, committed, f"kiss-configure: allocation cache {cache}")
        say(f"git: committed the cache {', '.join(committed)} as {sha[:12]}")
    gitsite.push(node, repo, with_peer, say)
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
    if result.original_kept:
        say(
            f"inventory: the original KISScluster's cache is converted (its inventory would read "
            f"the new one as empty); the original is kept as {result.original_kept}"
        )
    return result


# Six parameters: the run's options and the five parts of it that _configure holds already.
def _dry_run(
    options: Options, node: Node, cluster: Cluster, repo: git.Repo, with_peer: bool, say: Say
) -> int:
    """Inventory and test=True apply on both nodes of a copy of the working tree (the
    candidate): what a real run would commit, nothing committed, pushed or written here."""
    cache = inventory.cache_file(cluster.name)
    with tempfile.TemporaryDirectory(prefix="kiss-configure-dry-run-") as scratch:
        candidate = Path(scratch) / "site"
        gitsite.copy_site(node.site, candidate)
        say(f"dry run: working tree copied to {candidate}; nothing is committed or pushed")
        result = _inventory(candidate, say)
        edits = [path for path in pending_edits(repo) if path != cache]
        if edits:
            say(f"git: would commit {', '.join(edits)}")
        if result.changed:
            say(f"git: would commit the cache {cache}")
        commit = repo.head.commit.hexsha
        return _orchestrate(options, node, cluster, commit, with_peer, say, candidate)


# Seven parameters: the run's options, the parts _configure holds, and this run's commit.
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
    succeeded = rollout.tell(reports, node.minion_id, peer, say, not_run="not applied")
    applied = {
        node.minion_id: any(step.endswith("-apply-local") for step in succeeded),
        peer: not with_peer or any(step.endswith("-apply-peer") for step in succeeded),
    }
    if not with_peer:
        say(f"{peer}: skipped (--force with the peer unreachable)")
    clean = returncode == 0 and all(applied.values())
    verb = "checked" if options.dry_run else "applied"
    say(f"kiss-configure: {verb} cleanly on every node" if clean else "kiss-configure: FAILED")
    return 0 if clean else 1
