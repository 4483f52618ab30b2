"""kiss-overview: both nodes at a glance, from either node.

This node's facts are read here while the peer's are read over the cluster's remote command
(`kiss-overview --local` there), so the answer takes one round trip to the peer, and a dead
peer at most the peer timeout. Exit status: 0 healthy, 1 degraded, 2 cannot tell.
"""

import argparse
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from kisscluster import inventory
from kisscluster.configure.node import NodeError, load_node
from kisscluster.overview import assess, facts, render

MAX_TIMEOUT = 600.0


def local_or_unreachable(places: facts.Places) -> facts.Facts:
    try:
        return facts.local_facts(places)
    except OSError as exc:
        return facts.unreachable(f"its own facts could not be read: {exc}")


def report(config_dir: Path | None = None, timeout: float = facts.PEER_TIMEOUT) -> dict[str, Any]:
    """The report on both nodes (kisscluster.overview.assess), from this node. Raises NodeError
    or InventoryError when this node cannot say which cluster it is in."""
    if not 0 < timeout <= MAX_TIMEOUT:
        raise ValueError(f"a peer timeout of {timeout:g} s is not between 0 and {MAX_TIMEOUT:g}")
    with ThreadPoolExecutor(1) as pool:
        mine = pool.submit(local_or_unreachable, facts.NODE)
        node = load_node(config_dir)
        cluster = node.cluster()
        peer = cluster.peer_of(node.minion_id)
        command = cluster.remote_command(peer, "kiss-overview", "--local")
        theirs = facts.peer_facts(facts.bounded(command), timeout)
        found = {node.minion_id: mine.result(), peer["name"]: theirs}
    return assess.assess(node.minion_id, {m["name"]: found[m["name"]] for m in cluster.members})


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiss-overview", description=__doc__.split("\n\n")[0])
    parser.add_argument("--json", action="store_true", help="the report as JSON, for monitoring")
    parser.add_argument("--local", action="store_true",
                        help="this node's facts as JSON (what the peer is asked)")  # fmt: skip
    parser.add_argument("--timeout", type=float, default=facts.PEER_TIMEOUT,
                        help="seconds the peer has to answer (default %(default)s)")  # fmt: skip
    parser.add_argument("-c", "--config-dir", type=Path,
                        help="the Salt minion config directory (default $SALT_CONFIG_DIR, "
                        "else /etc/salt)")  # fmt: skip
    args = parser.parse_args(argv)
    if args.local:
        print(json.dumps(local_or_unreachable(facts.NODE), sort_keys=True))
        return 0
    try:
        found = report(args.config_dir, args.timeout)
    except (NodeError, inventory.InventoryError, ValueError) as exc:
        print(f"kiss-overview: cannot tell: {exc}", file=sys.stderr)
        return 2
    print(json.dumps(found, sort_keys=True) if args.json else render.render(found))
    return int(found["status"])
