"""What the daemon publishes under its runtime directory, and `kissclusterd status`."""

import json
import time
from pathlib import Path
from typing import Any

from kisscluster.atomic import write_atomic

DEFAULT_RUN_DIR = Path("/run/kissclusterd")
STATUS_FILE = "status.json"


def publish(run_dir: Path, status: dict[str, Any]) -> None:
    write_atomic(run_dir / STATUS_FILE, json.dumps(status, sort_keys=True) + "\n")


def read(run_dir: Path) -> dict[str, Any]:
    """The published status plus ages in seconds; raises OSError or ValueError."""
    status = json.loads((run_dir / STATUS_FILE).read_text(encoding="utf-8"))
    now = time.time()
    status["age"] = round(now - status["updated"], 3)
    status["heartbeat_age"] = {
        net: None if when is None else round(now - when, 3)
        for net, when in status["last_heartbeat"].items()
    }
    ping = status["last_ping"]
    status["ping_age"] = None if ping is None else round(now - ping["at"], 3)
    # Since the switch's latest reply, or since the start if it never replied.
    since = status.get("last_ping_ok") or status.get("started")
    status["switch_silent_for"] = None if since is None else round(now - since, 3)
    status["stale"] = status["age"] > 2 * status["interval"] + 1
    until = status.get("lease_until")
    status["lease_left"] = None if until is None else round(max(0.0, until - now), 3)
    return status


def _age(seconds: float | None) -> str:
    return "never" if seconds is None else f"{seconds:.1f} s ago"


def _lease(status: dict[str, Any]) -> str:
    answer = status.get("witness_answer")
    if answer is None:
        return "never answered"
    at, holder = answer
    said = f"answered {time.time() - at:.1f} s ago"
    if status.get("lease_left"):
        return f"this node holds the lease ({status['lease_left']:.1f} s left), {said}"
    return f"{'the peer holds' if holder is not None else 'nobody holds'} the lease, {said}"


def render(status: dict[str, Any]) -> str:
    peer = status["peer_priority"]
    ping = status["last_ping"]
    lines = [
        f"node:           {status['node']} (pid {status['pid']})",
        f"state:          {status['state'] or 'none yet'}"
        + (f" (computed {status['computed']})" if status["computed"] != status["state"] else ""),
        f"own priority:   {status['own_priority']}",
        f"peer priority:  {'silent' if peer is None else peer}",
    ]
    for net, age in status["heartbeat_age"].items():
        lines.append(f"heartbeat {net}: {_age(age)}")
    reply = "none" if ping is None else ("reply" if ping["ok"] else "no reply")
    lines.append(f"last ping:      {reply}, {_age(status['ping_age'])}")
    if status.get("witness"):
        lines.append(f"witness:        {status['witness']}: {_lease(status)}")
    if status.get("power_fencing"):
        lines.append("power fencing:  the peer is switched off before its VMs are taken")
    if status.get("cannot_run"):
        lines.append(f"cannot run here: {', '.join(status['cannot_run'])} (not UpToDate)")
    if status.get("stale_copies"):
        lines.append("                own VMs' copies not UpToDate: the peer keeps them")
    if status["dropped"]:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(status["dropped"].items()))
        lines.append(f"dropped:        {counts}")
    if status["stale"]:
        lines.append(f"WARNING: status is {status['age']:.0f} s old: is kissclusterd running?")
    return "\n".join(lines)
