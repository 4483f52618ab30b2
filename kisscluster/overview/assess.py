"""Both nodes' facts (kisscluster.overview.facts) judged together, with no I/O: each node's
heartbeat state, each VM's home, where it runs and its volumes, and every disagreement.

Where a VM should run follows the targets: a node on all-vms runs every enabled VM, one on
primary-vms the VMs whose home (primary_on) it is, one on no-vms none; on manual-vms the
operator decides. A problem is anything that keeps the pair from being healthy: a node
unreachable or without a decision, a heartbeat or the switch silent, a VM running on both nodes
or on neither, or where its node's target does not want it, a volume not Connected, not
UpToDate on both sides, frozen or Primary on both. The report's `status` is 0 when there is no
problem, 1 when there is one, 2 when no node could be read at all.
"""

from collections.abc import Mapping
from typing import Any

from kisscluster.overview.facts import TARGETS, Facts

HEALTH = {0: "healthy", 1: "degraded", 2: "cannot tell"}
AUTOMATIC = ("all-vms", "primary-vms", "no-vms")


def active_target(facts: Facts) -> str | None:
    active = [t for t in TARGETS if facts.get("targets", {}).get(t) == "active"]
    return active[0] if active else None


def _since(seconds: float | None) -> str:
    return "ever" if seconds is None else f"for {seconds:.0f} s"


def daemon_problems(
    name: str, daemon: Mapping[str, Any], target: str | None, targets_known: bool = True
) -> list[str]:
    """What kissclusterd's published status says is wrong on node `name`, whose active
    `target` is known unless systemd did not answer."""
    if daemon["stale"]:
        return [f"{name}: kissclusterd status is {daemon['age']:.0f} s old: is it running?"]
    problems = []
    state, dead = daemon["state"], daemon["dead_time"]
    if state is None:
        grace = " (start-up grace)" if daemon.get("in_grace") else ""
        problems.append(f"{name}: kissclusterd has not decided yet{grace}")
    elif targets_known and target != state:
        active = f"{target} is" if target else "no target is"
        problems.append(f"{name}: kissclusterd chose {state}, but {active} active")
    for net, age in sorted(daemon["heartbeat_age"].items()):
        if age is None or age > dead:
            problems.append(f"{name}: no heartbeat from the peer on {net} {_since(age)}")
    silent = daemon.get("switch_silent_for")
    if daemon.get("last_ping") is not None and silent is not None and silent > dead:
        problems.append(f"{name}: no reply from the switch {_since(silent)}")
    if daemon.get("cannot_run"):
        problems.append(f"{name}: copies that cannot run here: {', '.join(daemon['cannot_run'])}")
    return problems


def node_view(name: str, facts: Facts) -> dict[str, Any]:
    """One node's row: reachability, target, kissclusterd's figures, and its problems."""
    if not facts.get("reachable"):
        why = facts.get("error") or "no answer"
        return {"name": name, "reachable": False, "error": why,
                "problems": [f"{name}: unreachable ({why})"]}  # fmt: skip
    target = active_target(facts)
    problems = []
    if facts.get("placement_error"):
        problems.append(f"{name}: {facts['placement_error']}")
    if facts.get("units_error"):
        problems.append(f"{name}: systemd did not answer ({facts['units_error']})")
    elif target is None:
        problems.append(f"{name}: no VM target is active")
    daemon = facts.get("kissclusterd")
    maintenance = facts.get("placement", {}).get("maintenance", [])
    view: dict[str, Any] = {"name": name, "reachable": True, "target": target,
                            "units_error": facts.get("units_error"),
                            "daemon_unit": facts.get("daemon_unit"),
                            "maintenance": maintenance}  # fmt: skip
    if target == "manual-vms":
        problems.append(f"{name}: manual-vms: kissclusterd is stopped, no VM fails over")
    elif daemon is None:
        why = facts.get("kissclusterd_error") or "no status"
        problems.append(f"{name}: kissclusterd published no status ({why})")
    else:
        problems += daemon_problems(name, daemon, target, not facts.get("units_error"))
    if daemon is not None:
        view["kissclusterd"] = {
            key: daemon.get(key)
            for key in ("state", "computed", "in_grace", "own_priority", "peer_priority",
                        "heartbeat_age", "last_ping", "switch_silent_for", "age", "stale",
                        "cannot_run")
        }  # fmt: skip
    view["problems"] = problems
    return view


def volume_healthy(volume: Mapping[str, Any]) -> bool:
    return (
        volume.get("cs") == "Connected"
        and volume.get("disk") == volume.get("peer_disk") == "UpToDate"
        and volume.get("io") == "r"
        and not volume.get("role") == volume.get("peer_role") == "Primary"
    )


def describe_volume(volume: Mapping[str, Any]) -> str:
    """`Connected Primary/Secondary UpToDate/UpToDate`, with a resync's progress, frozen I/O."""
    if volume.get("cs") == "Unconfigured":
        return f"not up (minor {volume['minor']})"
    text = (
        f"{volume['cs']} {volume['role']}/{volume['peer_role']} "
        f"{volume['disk']}/{volume['peer_disk']}"
    )
    if "synced" in volume:
        text += f", {volume['synced']:g}% synced, finish {volume.get('finish', '?')}"
    if volume.get("io") == "s":
        text += ", I/O frozen"
    return text


def _wants(facts: Facts, vm: str) -> bool:
    """Whether this node's active target runs `vm`."""
    target = active_target(facts)
    return target == "all-vms" or (target == "primary-vms" and vm in facts["home"])


def _placement(vm: str, facts: dict[str, Facts], running: list[str], known: list[str]) -> list[str]:
    """The problems of where an enabled VM runs (on the `known` nodes, whose units were read),
    against where the targets want it."""
    decided = [n for n in known if active_target(facts[n]) in AUTOMATIC]
    wanted = [n for n in decided if _wants(facts[n], vm)]
    if len(running) == 2:
        return [f"{vm}: runs on both nodes"]
    if not running:
        if len(known) == len(facts):
            return [f"{vm}: runs on neither node"]
        return [
            f"{vm}: should run on {n} ({active_target(facts[n])}), its unit is "
            f"{facts[n]['units'].get(vm)}"
            for n in wanted
        ]
    problems = []
    runner = running[0]
    if runner in decided and runner not in wanted:
        problems.append(f"{vm}: runs on {runner}, whose {active_target(facts[runner])} "
                        "does not want it")  # fmt: skip
    problems += [f"{vm}: should run on {n} ({active_target(facts[n])}), runs on {runner}"
                 for n in wanted if n != runner]  # fmt: skip
    return problems


def vm_view(vm: str, facts: dict[str, Facts]) -> dict[str, Any]:
    """One VM across both nodes: home, where it runs, its units and volumes, its problems."""
    nodes = list(facts)
    reachable = [n for n in nodes if facts[n].get("reachable")]
    enabled_on = [n for n in reachable if vm in facts[n]["enabled"]]
    units = {n: facts[n]["units"].get(vm) for n in reachable}
    known = [n for n in reachable if not facts[n].get("units_error")]
    running = [n for n in known if units[n] == "active"]
    problems, notes = [], []
    claims = [n for n in reachable if vm in facts[n]["home"]]  # where primary-vms wants it
    home = claims[0] if len(claims) == 1 else None
    if enabled_on and not claims and len(reachable) == 1:
        home = next(n for n in nodes if n not in reachable)  # a VM's home is one of the two
    elif enabled_on and home is None:
        problems.append(f"{vm}: home is {'both nodes' if claims else 'neither node'}")
    moved_to = {facts[n].get("placement", {}).get("away", {}).get(vm) for n in reachable} - {None}
    if moved_to:  # kiss-migrate put it there: primary-vms wants it there, its home is the other
        home = next((n for n in nodes if n not in moved_to), None)
        notes.append(f"placed on {' and '.join(sorted(moved_to))} by kiss-migrate")
        if len(moved_to) > 1 or any((n in claims) != (n in moved_to) for n in reachable):
            problems.append(f"{vm}: the nodes' placement files or targets disagree")
    if enabled_on and len(enabled_on) < len(reachable):
        problems.append(f"{vm}: enabled on {enabled_on[0]} only: were both nodes rolled out "
                        "at the same commit?")  # fmt: skip
    if enabled_on:
        problems += _placement(vm, facts, running, known)
    elif running:
        problems.append(f"{vm}: disabled, but runs on {' and '.join(running)}")
    problems += [f"{vm}: its unit failed on {n}" for n in reachable if units[n] == "failed"]
    if home and running and running != [home]:
        notes.append(f"away from home ({home})")
    volumes = {}
    for n in reachable:
        found = facts[n]["drbd"].get(vm)
        if found is None:
            if vm in facts[n]["enabled"]:
                problems.append(f"{vm}: no DRBD resource file on {n}")
            continue
        volumes[n] = found
        problems += [f"{vm}/{v['volume']} on {n}: {describe_volume(v)}"
                     for v in found if not volume_healthy(v)]  # fmt: skip
    if len(volumes) == 2:
        first, second = ({v["volume"] for v in vs if v.get("role") == "Primary"}
                         for vs in volumes.values())  # fmt: skip
        problems += [f"{vm}/{p}: Primary on both nodes" for p in sorted(first & second)]
    return {
        "name": vm,
        "disabled": not enabled_on,
        "home": home,
        "runs_on": running,
        "unknown_on": [n for n in nodes if n not in known],
        "units": units,
        "volumes": volumes,
        "problems": problems,
        "notes": notes,
    }


def assess(here: str, facts: dict[str, Facts]) -> dict[str, Any]:
    """The report on both nodes from their facts (by node name, in cluster order)."""
    nodes = [node_view(name, f) for name, f in facts.items()]
    reachable = [f for f in facts.values() if f.get("reachable")]
    names = sorted({vm for f in reachable for vm in f["vms"]})
    vms = [vm_view(vm, facts) for vm in names]
    problems = [p for view in nodes + vms for p in view["problems"]]
    status = 2 if not reachable else 1 if problems else 0
    return {
        "here": here,
        "status": status,
        "health": HEALTH[status],
        "nodes": nodes,
        "vms": vms,
        "problems": problems,
    }
