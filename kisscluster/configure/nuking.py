"""kiss-nuke-vm: `salt-run state.orchestrate kiss.nuke` on both nodes, then forget the VM.

orchestrate/kiss/nuke.sls calls `kiss.nuke_step` once per step: check-local and check-peer (the
nuke in test mode, so that a refusal on either node stops the run before anything is removed),
nuke-local, nuke-peer, and forget (drop the VM from the cache, keeping the high-water mark so its
minors are never handed out again; commit and push to both bare repositories).
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from kisscluster import inventory, names, nuke
from kisscluster import pillar as pillar_mod
from kisscluster.configure import gitsite, primary, rollout
from kisscluster.configure.node import Node, NodeError, load_node
from kisscluster.configure.remote import Outcome, run_remote

STEPS = ("check-local", "check-peer", "nuke-local", "nuke-peer", "forget")
ORCHESTRATE_MODS = "kiss.nuke"


def nuke_here(node: Node, vm: str, test: bool, force: bool) -> Outcome:
    """kiss.nuke on this node, as an Outcome."""
    try:
        lines = nuke.nuke(
            node.site,
            pillar_mod.build(node.site),
            vm,
            lookup_overrides=node.lookup_overrides,
            test=test,
            force=force,
        )
    except (nuke.NukeError, inventory.InventoryError, ValueError, OSError) as exc:
        return Outcome(node.minion_id, False, str(exc).splitlines())
    if not test:
        lines.append(f"{vm} nuked")
    return Outcome(node.minion_id, True, lines)


def forget(node: Node, vm: str, test: bool) -> Outcome:
    """Drop `vm` from the cache, commit and push to both nodes (`test`: only say so)."""
    try:
        repo = gitsite.open_site(node)
        known = inventory.forget(node.site, vm, dry_run=test)
        if not known:
            return Outcome(node.minion_id, True, [f"{vm} is not in the cache (already forgotten)"])
        if test:
            return Outcome(node.minion_id, True, [f"would forget {vm} from the cache"])
        cache = inventory.cache_file(node.cluster().name)
        sha = gitsite.commit_paths(repo, [cache], f"kiss-nuke-vm: forget {vm}")
        pushed: list[str] = []
        gitsite.push(node, repo, True, pushed.append)
    except (inventory.InventoryError, gitsite.SiteError, git.GitError, NodeError) as exc:
        return Outcome(node.minion_id, False, [gitsite.one_line(exc)])
    return Outcome(
        node.minion_id,
        True,
        [f"forgot {vm} from the cache (its minors stay spent), committed {sha[:12]}", *pushed],
    )


def run_step(
    step: str, vm: str, config_dir: Path | None, test: bool, force: bool
) -> dict[str, Any]:
    """One step of orchestrate/kiss/nuke.sls as a module.run result."""
    if step not in STEPS:
        raise ValueError(f"unknown step {step!r}: one of {', '.join(STEPS)}")
    try:
        vm = names.validate_vm_name(vm)
        node = load_node(config_dir)
        checking = step.startswith("check-")
        if step in ("check-local", "nuke-local"):
            outcome = nuke_here(node, vm, test or checking, force)
        elif step == "forget":
            outcome = forget(node, vm, test)
        else:
            flags = [*(["--test"] if test or checking else []), *(["--force"] if force else [])]
            outcome = run_remote(node, ["node", "nuke", "--vm", vm, *flags])
    except (NodeError, ValueError) as exc:
        return {"result": False, "comment": f"{step}: {exc}", "step": step}
    return {"result": outcome.ok, "comment": outcome.text(), "step": step, "node": outcome.node}


@dataclass(frozen=True)
class NukeOptions:
    vm: str
    test: bool = False
    force: bool = False
    config_dir: Path | None = None
    run_config_dir: Path = primary.DEFAULT_RUN_CONFIG_DIR


def nuke_vm(options: NukeOptions, say: Callable[[str], None] = print) -> int:
    """kiss-nuke-vm on the primary: the orchestration, reported per node."""
    vm = names.validate_vm_name(options.vm)
    node = load_node(options.config_dir)
    repo = gitsite.open_site(node)
    cluster = node.cluster()
    if not cluster.is_primary(node.minion_id):
        raise primary.ConfigureError(
            f"this node is {node.minion_id}, not the primary {cluster.primary}: run kiss-nuke-vm "
            f"there (or `salt-call --local kiss.nuke {vm}` on each node by hand)"
        )
    peer = cluster.peer_of(node.minion_id)["name"]
    mode = " test=True" if options.test else ""
    say(f"salt-run state.orchestrate {ORCHESTRATE_MODS} for {vm}{mode}")
    pillar = {
        "vm": vm,
        "kiss_test": options.test,
        "kiss_force": options.force,
        "kiss_config_dir": str(node.config_dir),
    }
    with gitsite.run_lock(repo):
        returncode, reports = rollout.orchestrate(options.run_config_dir, ORCHESTRATE_MODS, pillar)
    succeeded = rollout.tell(reports, node.minion_id, peer, say, not_run="skipped")
    ok = returncode == 0 and len(succeeded) == len(reports)
    if not ok:
        say("kiss-nuke-vm: FAILED")
        return 1
    say(f"kiss-nuke-vm: {vm} {'checked' if options.test else 'nuked'} on both nodes")
    return 0
