"""What each node does for a rollout, on itself: check, bring its working copy to a commit, apply.

The primary runs these in-process; the peer runs them as `kiss-configure node ...` through the
remote command and answers with one JSON line. A node refuses to apply unless its working copy
is exactly at the commit the orchestration names.
"""

import base64
import io
import json
import re
import shutil
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Any

import git
import yaml

from kisscluster.configure.gitsite import CONFIG_PATHS, fetch, one_line, open_site, pending_edits
from kisscluster.configure.node import Node
from kisscluster.configure.remote import Outcome
from kisscluster.configure.summary import summarize

SALT_CALL_TIMEOUT = 1800
_COMMIT = re.compile(r"[0-9a-f]{40}\Z")
_SLS = re.compile(r"[a-z][a-z0-9_]*(\.[a-z][a-z0-9_]*)*\Z")


def validate_commit(commit: str) -> str:
    """A full commit id: what the orchestration names (never a branch, never an option)."""
    if not _COMMIT.match(commit):
        raise ValueError(f"{commit!r} is not a full commit id (40 hexadecimal digits)")
    return commit


def _reachable(node: Node, repo: git.Repo, commit: str) -> list[str]:
    """Why the working copy cannot be fast-forwarded to `commit` (empty when it can)."""
    problems = []
    edits = pending_edits(repo)
    if edits:
        problems.append(
            f"working copy {node.site} has local edits ({', '.join(edits)}): normal work happens "
            "on the primary; commit them there or discard them here (git checkout/clean)"
        )
    return problems + _behind(node, repo, commit)


def _behind(node: Node, repo: git.Repo, commit: str) -> list[str]:
    """Why the working copy's commit is not `commit` or an ancestor of it (empty when it is)."""
    fetch(repo)
    try:
        target = repo.commit(commit)
    except (ValueError, git.BadName):
        return [f"commit {commit} is not in {node.bare}: was the push to this node lost?"]
    head = repo.head.commit
    if not repo.is_ancestor(head, target):
        return [
            f"working copy {node.site} is at {head.hexsha}, which is not an ancestor of {commit}: "
            "reconcile the branches by hand (git log both, then reset or merge)"
        ]
    return []


def check(node: Node, commit: str) -> Outcome:
    """Can this node's working copy be brought to `commit`? Changes nothing but remote refs."""
    try:
        validate_commit(commit)
        problems = _reachable(node, open_site(node), commit)
    except (git.GitError, ValueError) as exc:
        problems = [f"git: {one_line(exc)}"]
    if problems:
        return Outcome(node.minion_id, False, problems)
    return Outcome(node.minion_id, True, [f"working copy can be brought to {commit}"])


def pack_candidate(candidate: Path) -> str:
    """The candidate site (its CONFIG_PATHS) as base64 text, to send to the peer."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for part in CONFIG_PATHS:
            if (candidate / part).is_dir():
                archive.add(candidate / part, arcname=part)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def unpack_candidate(text: str, into: Path) -> Path:
    """Unpack what pack_candidate sent into the directory `into`.

    A site is directories and regular files under CONFIG_PATHS and nothing else: any other
    member (a link, a device, a path that is absolute, climbs with `..` or lies outside those
    directories) is refused before anything is written. Written by hand rather than with
    `extractall(filter="data")`, which Debian 12's Python 3.11.2 lacks (it came in 3.11.4)."""
    with tarfile.open(fileobj=io.BytesIO(base64.b64decode(text)), mode="r:gz") as archive:
        members = archive.getmembers()
        for member in members:
            _check_member(member)
        for member in members:
            target = into.joinpath(*Path(member.name).parts)
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            source = archive.extractfile(member)
            assert source is not None  # a regular file, checked above
            with source, open(target, "xb") as copy:
                shutil.copyfileobj(source, copy)
    return into


def _check_member(member: tarfile.TarInfo) -> None:
    path = Path(member.name)
    if not (member.isfile() or member.isdir()):
        raise ValueError(f"candidate archive: {member.name!r} is not a file or directory")
    if path.is_absolute() or ".." in path.parts or path.parts[0] not in CONFIG_PATHS:
        raise ValueError(f"candidate archive: {member.name!r} lies outside the site")


def candidate_config(node: Node, candidate: Path, into: Path) -> Path:
    """A copy of the node's minion config whose site (and pillar root) is `candidate`."""
    into.mkdir()
    shutil.copy2(node.config_dir / "minion", into / "minion")
    includes = node.config_dir / "minion.d"
    if includes.is_dir():
        shutil.copytree(includes, into / "minion.d")
    else:
        (into / "minion.d").mkdir()
    override = {"kiss_site": str(candidate), "pillar_roots": {"base": [str(candidate / "pillar")]}}
    (into / "minion.d" / "zz-kiss-configure-dry-run.conf").write_text(
        yaml.safe_dump(override), encoding="utf-8"
    )
    return into


def _salt_call(
    node: Node, config_dir: Path, sls: str, commit: str, test: bool
) -> list[str] | dict[str, Any]:
    pillar: dict[str, Any] = {"kiss_commit": commit}
    if node.lookup_overrides:
        pillar["kiss"] = {"cluster": {"lookup": node.lookup_overrides}}
    command = [
        "salt-call",
        "--local",
        "-c",
        str(config_dir),
        "--out",
        "json",
        "--log-level",
        "error",
        "state.apply",
        sls,
        "pillar=" + json.dumps(pillar),
    ]
    if test:
        command.append("test=True")
    completed = subprocess.run(
        command, capture_output=True, text=True, timeout=SALT_CALL_TIMEOUT, check=False
    )
    try:
        return json.loads(completed.stdout)["local"]
    except (json.JSONDecodeError, KeyError, TypeError):
        detail = " ".join((completed.stderr or completed.stdout).split())[-2000:]
        return [f"salt-call exited {completed.returncode} without a state result: {detail}"]


def apply(
    node: Node,
    commit: str,
    sls: str = "kiss.vms",
    test: bool = False,
    candidate: Path | None = None,
) -> Outcome:
    """Bring the working copy to `commit` (unless `test`) and apply `sls` with salt-call.

    `candidate` (test only, for kiss-configure --dry-run): a site directory holding the edits
    and the cache the run would commit on top of `commit`; the node applies it with test=True
    through a copy of its minion config, its working copy untouched. That copy need only be
    able to reach `commit`: it may lag behind a push (kiss-nuke-vm pushes its commit to both
    nodes and leaves the peer's working copy to the next kiss-configure)."""
    if candidate is not None and not test:
        raise ValueError("a candidate site is only ever applied with test=True")
    try:
        validate_commit(commit)
        if not _SLS.match(sls):
            raise ValueError(f"{sls!r} is not an SLS name")
        repo = open_site(node)
        if candidate is not None:
            problems = _behind(node, repo, commit)
            if problems:
                return Outcome(node.minion_id, False, problems)
        elif not test:
            problems = _reachable(node, repo, commit)
            if problems:
                return Outcome(node.minion_id, False, problems)
            repo.git.merge("--ff-only", commit)
        head = repo.head.commit.hexsha
    except (git.GitError, ValueError) as exc:
        return Outcome(node.minion_id, False, [f"git: {one_line(exc)}"])
    if head != commit and candidate is None:
        return Outcome(
            node.minion_id,
            False,
            [
                f"refusing to apply: working copy {node.site} is at {head}, "
                f"not at {commit} named by the orchestration"
            ],
        )
    if candidate is None:
        summary = summarize(_salt_call(node, node.config_dir, sls, commit, test))
    else:
        with tempfile.TemporaryDirectory(prefix="kiss-configure-dry-run-") as scratch:
            config = candidate_config(node, candidate, Path(scratch) / "salt")
            summary = summarize(_salt_call(node, config, sls, commit, test))
    mode = "test=True " if test else ""
    lines = [f"{mode}{sls} at {commit[:12]}: " + summary.lines(test)[0], *summary.lines(test)[1:]]
    return Outcome(node.minion_id, summary.ok, lines)
