"""git on a node's site: the working copy, its two bare repositories, commits, pushes, the lock.

Every git call of kiss-configure, kiss-init and kiss-nuke-vm that talks to another repository
goes through here, with GIT_TIMEOUT. The site's tracked parts are CONFIG_PATHS.
"""

import contextlib
import fcntl
import getpass
import shutil
import socket
from collections.abc import Callable, Iterator
from pathlib import Path

import git

from kisscluster.configure.node import Node

# The site's own qemu parameter templates (vm-templates/, kisscluster.paths.template_dirs) are
# optional: a site without them has the first two only.
CONFIG_PATHS = ("vm-config", "pillar", "vm-templates")
# Bytecode that Salt's py renderer leaves beside pillar/kiss.sls: never part of a site copy.
IGNORED_IN_SITE = shutil.ignore_patterns("__pycache__", "*.pyc")
#: Seconds any git command that may talk to another node gets before it is killed.
GIT_TIMEOUT = 120

Say = Callable[[str], None]


class SiteError(Exception):
    """The site's repositories are not as kiss-configure needs them; the message says what to do."""


def one_line(error: object) -> str:
    """An error (git's are multi-line) as one line for the operator."""
    return " ".join(str(error).split())


def copy_site(source: Path, target: Path) -> None:
    """Copy the site's CONFIG_PATHS (those it has) from `source` into `target`."""
    for part in CONFIG_PATHS:
        if (source / part).is_dir():
            shutil.copytree(source / part, target / part, ignore=IGNORED_IN_SITE)


def open_site(node: Node) -> git.Repo:
    try:
        return git.Repo(node.site)
    except (git.NoSuchPathError, git.InvalidGitRepositoryError) as exc:
        raise git.GitError(f"{node.site} is not a git working copy: run kiss-init") from exc


def configured_push_urls(repo: git.Repo) -> list[str]:
    """The push URLs of the working copy's `origin` (empty when there are none)."""
    try:
        return str(repo.git.config("--get-all", "remote.origin.pushurl")).split("\n")
    except git.GitCommandError:
        return []


def peer_push_url(node: Node, repo: git.Repo) -> str:
    """The peer's bare repository: the push URL of `origin` that is not this node's own."""
    urls = configured_push_urls(repo)
    local = str(node.bare)
    others = [url for url in urls if url != local]
    if local not in urls or len(others) != 1:
        raise SiteError(
            f"{node.site}: remote origin must push to this node's {local} and to the peer's bare "
            f"repository, found push URLs {urls}: run kiss-init, or fix with "
            "`git remote set-url --add --push origin <url>`"
        )
    return others[0]


def remote_head(repo: git.Repo, url: str, branch: str) -> str | None:
    """The commit of `branch` in the repository at `url` (None: no such branch yet)."""
    listing = repo.git.ls_remote(url, f"refs/heads/{branch}", kill_after_timeout=GIT_TIMEOUT)
    return str(listing).split()[0] if listing else None


def fetch(repo: git.Repo) -> None:
    repo.remotes.origin.fetch(kill_after_timeout=GIT_TIMEOUT)


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


def push(node: Node, repo: git.Repo, with_peer: bool, say: Say) -> None:
    """Push the branch to this node's bare repository (and the peer's), then check both."""
    branch = repo.active_branch.name
    local_url, peer_url = str(node.bare), peer_push_url(node, repo)
    targets = [local_url, peer_url] if with_peer else [local_url]
    say(f"git: pushing {branch} to {', '.join(targets)}")
    destination = "origin" if with_peer else local_url
    try:
        repo.git.push(destination, f"{branch}:{branch}", kill_after_timeout=GIT_TIMEOUT)
    except git.GitCommandError as exc:
        raise SiteError(f"push failed, nothing applied: {one_line(exc.stderr)}") from exc
    for url in targets:
        if remote_head(repo, url, branch) != repo.head.commit.hexsha:
            raise SiteError(f"after the push, {url} is not at {repo.head.commit.hexsha}")


@contextlib.contextmanager
def run_lock(repo: git.Repo) -> Iterator[None]:
    """One kiss-configure or kiss-nuke-vm at a time in a working copy."""
    path = Path(repo.git_dir) / "kiss-configure.lock"
    with path.open("a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise SiteError(
                f"another kiss-configure or kiss-nuke-vm is running in {repo.working_tree_dir} "
                f"(it holds {path}): wait for it to finish"
            ) from None
        yield
