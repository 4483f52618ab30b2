"""The peer, reached over the remote command (ssh): its answers and its repositories' URLs.

The primary runs `kiss-configure node <action> ...` on the peer (cli.py); the peer prints its
Outcome as one JSON line on stdout, the last line, which the primary reads back as data.
"""

import json
import subprocess
from dataclasses import asdict, dataclass, field
from pathlib import Path

from kisscluster.configure.node import Cluster, Node

REMOTE_TIMEOUT = 1800
REMOTE_PROGRAM = "kiss-configure"


@dataclass
class Outcome:
    """One node's answer to one step: whether it succeeded and what to tell the operator."""

    node: str
    ok: bool
    lines: list[str] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join(f"{self.node}: {line}" for line in self.lines)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Outcome":
        data = json.loads(text)
        return cls(
            node=str(data["node"]),
            ok=bool(data["ok"]),
            lines=[str(line) for line in data["lines"]],
            data={str(key): str(value) for key, value in data.get("data", {}).items()},
        )


def run_remote(
    node: Node,
    arguments: list[str],
    timeout: int = REMOTE_TIMEOUT,
    stdin: str | None = None,
    cluster: Cluster | None = None,
) -> Outcome:
    """Run `kiss-configure <arguments>` on the peer; its last stdout line is its Outcome."""
    cluster = cluster or node.cluster()
    peer = cluster.peer_of(node.minion_id)
    command = cluster.remote_command(peer, REMOTE_PROGRAM, *arguments)
    try:
        completed = subprocess.run(
            command, input=stdin, capture_output=True, text=True, timeout=timeout, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return Outcome(peer["name"], False, [f"remote command {command} failed: {exc}"])
    lines = completed.stdout.strip().splitlines()
    try:
        outcome = Outcome.from_json(lines[-1])
    except (IndexError, ValueError, KeyError, TypeError):
        detail = " ".join(completed.stderr.split())[-2000:]
        return Outcome(
            peer["name"],
            False,
            [f"unreachable or failed: {' '.join(command)} exited {completed.returncode}: {detail}"],
        )
    if outcome.node != peer["name"]:
        return Outcome(
            peer["name"],
            False,
            [
                f"the remote command reached {outcome.node!r}, not {peer['name']}: check pillar "
                "kiss:cluster:lookup:remote_command and that node's minion id",
                *outcome.lines,
            ],
        )
    return outcome


def ssh_url(address: str, path: Path) -> str:
    """A git URL for the repository `path` on the host `address` (IPv6 in brackets)."""
    host = f"[{address}]" if ":" in address else address
    return f"ssh://{host}{path}"
