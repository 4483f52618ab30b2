"""The steps of `salt-run state.orchestrate kiss.vms` and the salt-run call that drives them.

orchestrate/kiss/vms.sls calls `kiss.rollout_step` (salt/_modules/kiss.py) once per step inside
salt-run, with no salt-master daemon: check-peer, apply-local, apply-peer. Each step returns a
module.run result whose `comment` is the node's readable outcome; a failed step fails the
orchestration and salt-run exits non-zero.
"""

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from kisscluster.configure import nodeside
from kisscluster.configure.node import Cluster, Node, NodeError, load_node

STEPS = ("check-peer", "apply-local", "apply-peer")
REMOTE_TIMEOUT = 1800
SALT_RUN_TIMEOUT = 3600
REMOTE_PROGRAM = "kiss-configure"


def run_remote(
    node: Node,
    arguments: list[str],
    timeout: int = REMOTE_TIMEOUT,
    stdin: str | None = None,
    cluster: Cluster | None = None,
) -> nodeside.Outcome:
    """Run `kiss-configure <arguments>` on the peer; its last stdout line is its Outcome."""
    cluster = cluster or node.cluster()
    peer = cluster.peer_of(node.minion_id)
    command = cluster.remote_command(peer, REMOTE_PROGRAM, *arguments)
    try:
        completed = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return nodeside.Outcome(peer["name"], False, [f"remote command {command} failed: {exc}"])
    lines = completed.stdout.strip().splitlines()
    try:
        outcome = nodeside.Outcome.from_json(lines[-1])
    except (IndexError, ValueError, KeyError, TypeError):
        detail = " ".join(completed.stderr.split())[-2000:]
        return nodeside.Outcome(
            peer["name"],
            False,
            [f"unreachable or failed: {' '.join(command)} exited {completed.returncode}: {detail}"],
        )
    if outcome.node != peer["name"]:
        return nodeside.Outcome(
            peer["name"],
            False,
            [
                f"the remote command reached {outcome.node!r}, not {peer['name']}: check pillar "
                "kiss:cluster:lookup:remote_command and that node's minion id",
                *outcome.lines,
            ],
        )
    return outcome


def run_step(
    step: str,
    config_dir: Path | None,
    commit: str | None,
    sls: str,
    test: bool,
    candidate: Path | None = None,
) -> dict[str, Any]:
    """One orchestration step as a module.run result (`result` decides success). `candidate`:
    see nodeside.apply; the peer gets it on its standard input."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}: one of {', '.join(STEPS)}")
    try:
        node = load_node(config_dir)
        commit = commit or git.Repo(node.site).head.commit.hexsha
        if step == "apply-local":
            outcome = nodeside.apply(node, commit, sls, test, candidate)
        elif step == "check-peer":
            outcome = run_remote(node, ["node", "check", "--commit", commit])
        else:
            arguments = ["node", "apply", "--commit", commit, "--sls", sls]
            arguments += ["--test"] if test else []
            stdin = None
            if candidate is not None:
                arguments.append("--candidate-stdin")
                stdin = nodeside.pack_candidate(candidate)
            outcome = run_remote(node, arguments, stdin=stdin)
    except (NodeError, git.GitError, OSError, ValueError) as exc:
        return {"result": False, "comment": f"{step}: {exc}", "step": step}
    return {"result": outcome.ok, "comment": outcome.text(), "step": step, "node": outcome.node}


@dataclass
class StepReport:
    """What salt-run said about one step of the orchestration."""

    step_id: str
    ok: bool
    comment: str


def orchestrate(
    run_config_dir: Path, mods: str, pillar: dict[str, Any], timeout: int = SALT_RUN_TIMEOUT
) -> tuple[int, list[StepReport]]:
    """Run `salt-run -c <run_config_dir> state.orchestrate <mods>`; its exit code and steps."""
    if not (run_config_dir / "master").is_file():
        detail = f"{run_config_dir}/master is missing: install salt/master.example there"
        return 1, [StepReport("salt-run", False, detail)]
    command = [
        "salt-run",
        "-c",
        str(run_config_dir),
        "--out",
        "json",
        "--log-level",
        "quiet",
        "state.orchestrate",
        mods,
        "pillar=" + json.dumps(pillar),
    ]
    try:
        completed = subprocess.run(
            command, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return 1, [StepReport("salt-run", False, f"{' '.join(command)}: {exc}")]
    try:
        data = json.loads(completed.stdout)["data"]
    except (json.JSONDecodeError, KeyError, TypeError):
        detail = " ".join((completed.stderr or completed.stdout).split())[-2000:]
        return completed.returncode or 1, [StepReport("salt-run", False, detail)]
    reports = []
    for results in data.values():
        if not isinstance(results, dict):
            reports.append(StepReport("salt-run", False, " ".join(map(str, results))))
            continue
        for result in sorted(results.values(), key=lambda r: r.get("__run_num__", 0)):
            comment = result.get("comment") or ""
            for prefix in ("'kiss.rollout_step' failed: ", "kiss.rollout_step: "):
                comment = comment.replace(prefix, "")
            reports.append(
                StepReport(result.get("__id__", "?"), result.get("result") is True, comment)
            )
    return completed.returncode, reports
