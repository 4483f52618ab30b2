"""kiss-verify: both nodes against the committed cache and the pillar, with the fix of each
difference; exit 1 on any.

    kiss-verify [--json] [--local] [--config-dir DIR]

This node's facts are read here (kisscluster.verifyfacts); the peer's come over the remote
command of kiss-configure (pillar kiss:cluster:lookup:remote_command, ssh on the storage link) as
`kiss-verify --local --json` run there, and both are compared here with this node's pillar
(kisscluster.verify). `--local` checks this node alone. `salt-call --local kiss.verify` does the
same as kiss-verify.
"""

import argparse
import json
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from kisscluster import inventory, verify
from kisscluster import pillar as pillar_mod
from kisscluster.configure import node as node_mod
from kisscluster.verifyfacts import Host, Where, gather

REMOTE_PROGRAM = "kiss-verify"
REMOTE_TIMEOUT = 300


def peer_facts(kiss: Mapping[str, Any], where: Where) -> tuple[str, dict[str, Any] | None, str]:
    """The peer's name, its facts (None when it could not be had) and, if so, why."""
    cluster = node_mod.Cluster.from_pillar(dict(kiss))
    cluster = node_mod.Cluster(
        cluster.name, cluster.members, {**cluster.lookup, **where.overrides}, cluster.heartbeat
    )
    member = cluster.peer_of(where.node)
    peer = member["name"]
    command = cluster.remote_command(member, REMOTE_PROGRAM, "--local", "--json")
    try:
        done = subprocess.run(
            command, capture_output=True, text=True, timeout=REMOTE_TIMEOUT, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return peer, None, f"{' '.join(command)}: {exc}"
    lines = done.stdout.strip().splitlines()
    try:
        facts = json.loads(lines[-1])["facts"]
    except (IndexError, ValueError, KeyError, TypeError):
        detail = " ".join(done.stderr.split())[-500:]
        return peer, None, f"{' '.join(command)} exited {done.returncode}: {detail}"
    if facts.get("node") != peer:
        return peer, None, f"{' '.join(command)} reached {facts.get('node')!r}, not {peer}"
    return peer, facts, ""


def run(
    kiss: Mapping[str, Any], where: Where, local: bool, host: Host | None = None
) -> dict[str, Any]:
    """The report: `clean`, the `nodes` checked, every difference; with `local`, the facts."""
    facts = {where.node: gather(where, kiss, host or Host())}
    unreachable = []
    if not local:
        peer, theirs, why = peer_facts(kiss, where)
        if theirs is None:
            fix = "check the storage link and root ssh to the peer, then kiss-verify again"
            unreachable.append(verify.Difference(peer, "unreachable", "peer", why, fix))
        else:
            facts[peer] = theirs
    differences = unreachable + verify.compare(kiss, facts)
    report: dict[str, Any] = {
        "clean": not differences,
        "nodes": sorted(facts),
        "vms": len(kiss["vms"]),
        "differences": [d.as_dict() for d in differences],
    }
    if local:
        report["facts"] = facts[where.node]
    return report


def human(report: Mapping[str, Any]) -> str:
    nodes = " and ".join(report["nodes"])
    if report["clean"]:
        return f"kiss-verify: {nodes} agree with the committed cache ({report['vms']} VMs)"
    lines = [f"kiss-verify: {len(report['differences'])} difference(s) on {nodes}"]
    for d in report["differences"]:
        lines.append(f"{d['node'] or 'both'}: {d['kind']} {d['subject']}: {d['detail']}")
        lines.append(f"    fix: {d['fix']}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiss-verify",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    parser.add_argument("--local", action="store_true", help="check this node only")
    parser.add_argument("--config-dir", type=Path, help="the minion config dir (/etc/salt)")
    args = parser.parse_args(argv)
    try:
        node = node_mod.load_node(args.config_dir)
        kiss = pillar_mod.build(node.site)
        where = Where(node.minion_id, node.lookup_overrides, node.site, node.bare)
        report = run(kiss, where, args.local)
    except (node_mod.NodeError, inventory.InventoryError, ValueError, OSError) as exc:
        print(f"kiss-verify: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(report, sort_keys=True) if args.json else human(report), flush=True)
    return 0 if report["clean"] else 1
