"""The steps of `salt-run state.orchestrate kiss.vms` and the salt-run call that drives them.

orchestrate/kiss/vms.sls calls `kiss.rollout_step` (salt/_modules/kiss.py) once per step inside
salt-run, with no salt-master daemon: check-peer, apply-local, apply-peer. Each step returns a
module.run result whose `comment` is the node's readable outcome; a failed step fails the
orchestration and salt-run exits non-zero.
"""

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from kisscluster.configure import nodeside
from kisscluster.configure.node import NodeError, load_node
from kisscluster.configure.remote import run_remote

STEPS = ("check-peer", "apply-local", "apply-peer")
SALT_RUN_TIMEOUT = 3600

Say = Callable[[str], None]


# Six parameters: the arguments of `kiss.rollout_step`, one for one (orchestrate/kiss/vms.sls).
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
    ran: bool = True


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
    return completed.returncode, step_reports(data)


def step_reports(data: dict[str, Any]) -> list[StepReport]:
    """The steps in the `data` of `salt-run --out json state.orchestrate`, in run order."""
    reports = []
    for results in data.values():
        if not isinstance(results, dict):
            reports.append(StepReport("salt-run", False, " ".join(map(str, results))))
            continue
        # Each step requires the one before it (orchestrate/kiss/*.sls): after the first failure
        # no step ran, and Salt's comment on those only repeats that.
        failed = False
        for result in sorted(results.values(), key=lambda r: r.get("__run_num__", 0)):
            ok = result.get("result") is True
            comment = _module_run_comment(str(result.get("comment") or ""))
            reports.append(StepReport(result.get("__id__", "?"), ok, comment, ran=not failed))
            failed = failed or not ok
    return reports


def _module_run_comment(comment: str) -> str:
    """The step's own comment, without the `'<function>' failed: ` or `<function>: ` that
    module.run puts before it."""
    for function in ("kiss.rollout_step", "kiss.nuke_step"):
        for prefix in (f"'{function}' failed: ", f"{function}: "):
            comment = comment.replace(prefix, "")
    return comment


def tell(reports: list[StepReport], local: str, peer: str, say: Say, not_run: str) -> list[str]:
    """Say what each step of the orchestration did, per node; the ids of the steps that
    succeeded. `not_run` says what a step after a failure was not (applied, nuked, …)."""
    succeeded = []
    for report in reports:
        target = peer if report.step_id.endswith("-peer") else local
        if report.ok:
            succeeded.append(report.step_id)
            say(report.comment)
        elif not report.ran:
            say(f"{target}: {not_run}: an earlier step failed")
        else:
            named = report.comment.startswith(target)
            say(report.comment if named else f"{target}: {report.comment}")
            say(f"FAILED on {target} ({report.step_id})")
    return succeeded
