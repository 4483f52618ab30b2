"""kiss-init: the bare repository and the working copy on both nodes, and the shared secret.

Run once on the primary. Each node gets `<site>.git` (bare) and `<site>` (working copy) whose
`origin` fetches from the node's own bare repository and pushes to both. The site is seeded from a
skeleton directory (its `pillar/` and `vm-config/`). Safe to re-run: what exists is checked and
kept, never overwritten; a repository that does not look like kiss-init's own is refused.

`--rejoin` runs on the node that kept its site, primary or not, when the peer was reinstalled:
the peer's repositories are made again from this node's and get its secret. It never seeds from
a skeleton: on a node without a site it refuses, as that node is the one to be rejoined.
"""

import grp
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import git

from kisscluster import paths
from kisscluster.atomic import write_atomic
from kisscluster.configure import gitsite
from kisscluster.configure.gitsite import CONFIG_PATHS, GIT_TIMEOUT
from kisscluster.configure.node import Cluster, Node, NodeError, load_node
from kisscluster.configure.remote import Outcome, run_remote, ssh_url

BRANCH = "main"
# Salt's py renderer leaves bytecode beside pillar/kiss.sls: never part of the site.
SITE_GITIGNORE = "__pycache__/\n*.pyc\n"
DEFAULT_GROUP = "adm"

Say = Callable[[str], None]


class InitError(Exception):
    """kiss-init refused; the message says why."""


@dataclass(frozen=True)
class InitOptions:
    config_dir: Path | None = None
    skeleton: Path | None = None
    group: str = DEFAULT_GROUP
    force: bool = False
    rejoin: bool = False


def ensure_bare(bare: Path, group: str) -> str:
    """Create the bare repository unless it exists; refuse anything else at that path."""
    if bare.exists():
        try:
            repo = git.Repo(bare)
        except git.GitError as exc:
            raise InitError(f"{bare} exists and is not a git repository: move it away") from exc
        if not repo.bare:
            raise InitError(f"{bare} exists and is not a bare repository: move it away")
        return f"{bare}: exists, kept"
    git.Repo.init(bare, mkdir=True, bare=True, shared="group", initial_branch=BRANCH)
    share_with_group(bare, group)
    return f"{bare}: created"


def share_with_group(top: Path, group: str) -> None:
    """Give `group` read and write access to the tree `top`; directories are setgid."""
    try:
        gid = grp.getgrnam(group).gr_gid
    except KeyError as exc:
        raise InitError(f"group {group!r} does not exist on this node (--group)") from exc
    for directory, _, files in os.walk(top):
        for path in [Path(directory), *(Path(directory) / name for name in files)]:
            if path.is_symlink():
                continue
            os.chown(path, -1, gid)
            mode = stat.S_IMODE(path.stat().st_mode) | stat.S_IRGRP | stat.S_IWGRP
            if path.is_dir():
                mode |= stat.S_IXGRP | stat.S_ISGID
            os.chmod(path, mode)


def _check_remote(repo: git.Repo, site: Path, push_urls: list[str]) -> None:
    if "origin" not in [remote.name for remote in repo.remotes]:
        raise InitError(f"{site} has no remote origin: it is not a kiss-init working copy")
    found = gitsite.configured_push_urls(repo)
    if found != push_urls:
        raise InitError(
            f"{site}: origin pushes to {found}, expected {push_urls}: refusing to change an "
            "existing repository; fix it with `git remote set-url` or move it away"
        )


def ensure_working_copy(
    node: Node, push_urls: list[str], group: str, skeleton: Path | None = None
) -> str:
    """Create the working copy (from the bare repo if it has commits, else from `skeleton`)."""
    site = node.site
    if site.exists() and (site / ".git").exists():
        _check_remote(git.Repo(site), site, push_urls)
        return f"{site}: exists, kept"
    if site.exists() and any(site.iterdir()):
        raise InitError(f"{site} exists, is not empty and is not a git working copy: move it away")
    bare_has_branch = bool(git.Repo(node.bare).heads)
    if bare_has_branch:
        repo = git.Repo.clone_from(str(node.bare), site)
        how = f"cloned from {node.bare}"
    else:
        if skeleton is None:
            raise InitError(f"{node.bare} is empty: seed it with kiss-init on the primary first")
        repo = git.Repo.init(site, mkdir=True, initial_branch=BRANCH)
        gitsite.copy_site(skeleton, site)
        ignore_file = site / ".gitignore"
        if not ignore_file.exists():
            ignore_file.write_text(SITE_GITIGNORE, encoding="utf-8")
        repo.git.add("-A", "--", ".gitignore", *(p for p in CONFIG_PATHS if (site / p).is_dir()))
        repo.index.commit(f"kiss-init: site seeded from {skeleton}")
        repo.create_remote("origin", str(node.bare))
        how = f"seeded from {skeleton}"
    with repo.config_writer() as writer:
        writer.set_value('remote "origin"', "url", str(node.bare))
        writer.set_value(f'branch "{BRANCH}"', "remote", "origin")
        writer.set_value(f'branch "{BRANCH}"', "merge", f"refs/heads/{BRANCH}")
        writer.set_value("core", "sharedRepository", "group")
    for url in push_urls:
        repo.git.remote("set-url", "--add", "--push", "origin", url)
    share_with_group(site, group)
    return f"{site}: {how}"


def write_secret(path: Path, secret: str) -> bool:
    """Install the heartbeat secret (mode 0600) unless it is already there. True if written."""
    if (
        path.exists()
        and path.read_text(encoding="utf-8") == secret
        and stat.S_IMODE(path.stat().st_mode) == 0o600
    ):
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, secret, mode=0o600)
    return True


def _remote_or_fail(
    node: Node, cluster: Cluster, arguments: list[str], stdin: str | None = None
) -> Outcome:
    outcome = run_remote(node, arguments, stdin=stdin, cluster=cluster)
    if not outcome.ok:
        raise InitError(outcome.text())
    return outcome


def init(options: InitOptions, say: Callable[[str], None] = print) -> None:
    node = load_node(options.config_dir)
    has_site = (node.site / ".git").exists()
    if options.rejoin and not has_site:
        raise InitError(
            f"--rejoin: {node.site} is no working copy here, so this is the node to be "
            "rejoined: run `kiss-init --rejoin` on the peer, which kept the site"
        )
    skeleton = Path(options.skeleton or paths.product_root())
    source = node.site if has_site else skeleton
    say(f"kiss-init: cluster definition from {source}/pillar")
    cluster = node.cluster(source)
    if not cluster.is_primary(node.minion_id) and not (options.force or options.rejoin):
        raise InitError(
            f"this node is {node.minion_id}, not the primary {cluster.primary}: run kiss-init there"
        )
    peer = cluster.peer_of(node.minion_id)

    say(f"{node.minion_id}: {ensure_bare(node.bare, options.group)}")
    answer = _remote_or_fail(node, cluster, ["node", "init-bare", "--group", options.group])
    say(answer.text())
    peer_url = ssh_url(peer["stor_addr"], Path(answer.data["bare"]))
    made = ensure_working_copy(node, [str(node.bare), peer_url], options.group, skeleton)
    say(f"{node.minion_id}: {made}")

    repo = git.Repo(node.site)
    say(f"git: pushing {BRANCH} to {node.bare} and {peer_url}")
    try:
        repo.git.push("origin", f"{BRANCH}:{BRANCH}", kill_after_timeout=GIT_TIMEOUT)
    except git.GitCommandError as exc:
        raise InitError(
            f"push failed: {gitsite.one_line(exc.stderr)}: the bare repositories hold other "
            "history; reconcile by hand, then run kiss-init again"
        ) from exc
    me = cluster.member(node.minion_id)
    clone = ["node", "clone", "--peer-addr", me["stor_addr"], "--peer-bare", str(node.bare)]
    clone += ["--group", options.group]
    say(_remote_or_fail(node, cluster, clone).text())

    secret_file = cluster.secret_file()
    if not secret_file.exists():
        say(
            f"{node.minion_id}: no heartbeat secret at {secret_file} yet: apply kiss.node here "
            "(it creates one), then run kiss-init again to copy it to the peer"
        )
        return
    secret = secret_file.read_text(encoding="utf-8")
    say(_remote_or_fail(node, cluster, ["node", "secret"], stdin=secret).text())


def node_init_bare(node: Node, group: str) -> Outcome:
    """Peer side of kiss-init: make sure this node's bare repository exists."""
    try:
        line = ensure_bare(node.bare, group)
    except InitError as exc:
        return Outcome(node.minion_id, False, [str(exc)])
    return Outcome(node.minion_id, True, [line], {"bare": str(node.bare)})


def node_clone(node: Node, peer_addr: str, peer_bare: Path, group: str) -> Outcome:
    """Peer side of kiss-init: the working copy, cloned from this node's bare repository; its
    origin also pushes to the bare repository `peer_bare` on `peer_addr` (the primary)."""
    try:
        line = ensure_working_copy(node, [str(node.bare), ssh_url(peer_addr, peer_bare)], group)
    except (InitError, git.GitError) as exc:
        return Outcome(node.minion_id, False, [gitsite.one_line(exc)])
    return Outcome(node.minion_id, True, [line])


def node_secret(node: Node, secret: str) -> Outcome:
    """Peer side of kiss-init: install the primary's heartbeat secret if ours differs."""
    if not secret.strip():
        return Outcome(node.minion_id, False, ["refusing an empty heartbeat secret"])
    try:
        path = node.cluster().secret_file()
        written = write_secret(path, secret)
    except (NodeError, OSError) as exc:
        return Outcome(node.minion_id, False, [str(exc)])
    return Outcome(
        node.minion_id, True, [f"heartbeat secret {path}: {'copied' if written else 'same, kept'}"]
    )
