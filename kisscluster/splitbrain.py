"""kiss-split-brain VM: both copies of a VM's disks side by side and, on the operator's word, the
split brain resolved with DRBD's own commands.

A split brain: both copies changed while the nodes were apart (each started a new data
generation: a bitmap UUID set on both sides, and different current UUIDs), and DRBD dropped the
connection when the nodes met again (StandAlone). Which changes to keep is the operator's call:
the other side's are lost. The discarded side stops the VM if it runs there, is demoted and
reconnects with `--discard-my-data`; the kept side reconnects; DRBD then resyncs the discarded
side from the kept one (only the blocks either side changed).

The command runs on either node; the peer's side is read, and its steps run, through the
cluster's remote command (`kiss-split-brain --here ...` there), as kiss-configure reaches it.
"""

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from kisscluster import drbd, names
from kisscluster.heartbeat import config as heartbeat_config

PROC_DRBD = Path("/proc/drbd")
CONNECT_TIMEOUT = 60.0


@dataclass(frozen=True)
class Volume:
    minor: int
    connection: str  # cs: StandAlone, WFConnection, Connected, SyncSource, ...
    roles: str  # ro: this node's role / the peer's as this node sees it
    disks: str  # ds: this node's disk / the peer's
    out_of_sync_kib: int  # oos: blocks changed since the two parted (this side's bitmap)
    generation: str  # `drbdadm get-gi`: current:bitmap:history:history:flags

    @property
    def current_uuid(self) -> int:
        return int(self.generation.split(":")[0] or "0", 16) & ~1  # bit 0: "was primary"

    @property
    def bitmap_uuid(self) -> int:
        fields = self.generation.split(":")
        return int(fields[1], 16) if len(fields) > 1 and fields[1] else 0


@dataclass(frozen=True)
class Side:
    node: str
    vm: str
    running: bool
    volumes: tuple[Volume, ...]

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Side":
        data = json.loads(text)
        volumes = tuple(Volume(**volume) for volume in data["volumes"])
        return cls(str(data["node"]), str(data["vm"]), bool(data["running"]), volumes)


def parse_proc_drbd(text: str) -> dict[int, dict[str, str]]:
    """Minor -> its fields (cs, ro, ds, oos, ...) from /proc/drbd of DRBD 8.4."""
    found: dict[int, dict[str, str]] = {}
    current: dict[str, str] | None = None
    for line in text.splitlines():
        head, _, rest = line.strip().partition(": ")
        if head.isdigit() and rest.startswith("cs:"):
            current = found.setdefault(int(head), {})
        elif current is None or not line.startswith(" "):
            current = None
            continue
        else:
            rest = line
        for field in rest.split():
            key, sep, value = field.partition(":")
            if sep:
                current[key] = value
    return found


def changed_apart(side: Side) -> bool:
    """Whether this copy started a data generation of its own since the two parted."""
    return any(volume.bitmap_uuid for volume in side.volumes)


def is_split_brain(one: Side, other: Side) -> bool:
    """Both copies changed apart, they hold different data, and they are not connected."""
    apart = any(v.connection == "StandAlone" for v in one.volumes + other.volumes)
    differ = any(
        a.current_uuid != b.current_uuid for a, b in zip(one.volumes, other.volumes, strict=False)
    )
    return apart and differ and changed_apart(one) and changed_apart(other)


def refusal(keep: Side, discard: Side) -> str | None:
    """Why `--discard` must not run now, or None."""
    if all(v.connection == "Connected" for v in keep.volumes + discard.volumes):
        return f"{keep.vm} is Connected on both nodes: there is no split brain to resolve"
    not_good = [v.minor for v in keep.volumes if not v.disks.startswith("UpToDate/")]
    if not_good:
        return (
            f"{keep.node}'s copy of {keep.vm} is not UpToDate (minors {not_good}): it cannot be "
            f"the copy that is kept"
        )
    if len(keep.volumes) != len(discard.volumes):
        counts = f"{len(keep.volumes)} on {keep.node}, {len(discard.volumes)} on {discard.node}"
        return f"{keep.vm} has different volumes on the two nodes ({counts})"
    return None


def _row(label: str, left: str, right: str) -> str:
    return f"{label:<10}{left:<36}{right}"


def render(one: Side, other: Side) -> str:
    """Both sides, volume by volume, and the commands that resolve a split brain."""
    split = is_split_brain(one, other)
    verdict = "SPLIT BRAIN: both copies changed while apart" if split else "no split brain"
    state = {True: "running", False: "stopped"}
    lines = [
        f"{one.vm}: {verdict}",
        _row("", one.node, other.node),
        _row("VM", state[one.running], state[other.running]),
    ]
    for number, (a, b) in enumerate(zip(one.volumes, other.volumes, strict=False)):
        lines += [
            _row(f"volume {number}", f"minor {a.minor} {a.connection}",
                 f"minor {b.minor} {b.connection}"),
            _row("  roles", a.roles, b.roles),
            _row("  disks", a.disks, b.disks),
            _row("  changed", f"{a.out_of_sync_kib} KiB apart", f"{b.out_of_sync_kib} KiB apart"),
            _row("  gi", a.generation[:33], b.generation[:33]),
        ]  # fmt: skip
    if split:
        lines += [
            f"keep {keep.node}'s data, lose what {lose.node} wrote apart: "
            f"kiss-split-brain {one.vm} --discard {lose.node}"
            for keep, lose in ((one, other), (other, one))
        ]
    return "\n".join(lines)


# --- this node's side and steps ------------------------------------------------------------


def _run(argv: list[str], timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def read_side(node: str, vm: str, drbdadm: str, proc_drbd: Path = PROC_DRBD) -> Side:
    minors = [int(m) for m in _run([drbdadm, "sh-minor", vm]).stdout.split() if m.isdigit()]
    proc = parse_proc_drbd(proc_drbd.read_text(encoding="ascii"))
    volumes = []
    for number, minor in enumerate(minors):
        fields = proc.get(minor, {})
        gi = _run([drbdadm, "get-gi", f"{vm}/{number}"]).stdout.strip().splitlines()
        volumes.append(
            Volume(
                minor=minor,
                connection=fields.get("cs", "Unconfigured"),
                roles=fields.get("ro", "?/?"),
                disks=fields.get("ds", "?/?"),
                out_of_sync_kib=int(fields.get("oos", "0")),
                generation=gi[0] if gi else "",
            )
        )
    running = _run(["systemctl", "is-active", "--quiet", f"vm@{vm}.service"]).returncode == 0
    return Side(node, vm, running, tuple(volumes))


def _step(argv: list[str], say: Callable[[str], None]) -> None:
    done = _run(argv, timeout=300)
    detail = drbd.error_line(done.stderr)
    say(f"{' '.join(argv)}: {'ok' if done.returncode == 0 else detail}")
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed: {detail}")


def _standalone(vm: str, drbdadm: str) -> bool:
    """Whether DRBD dropped the resource's connection (all its volumes share it)."""
    return _run([drbdadm, "cstate", vm]).stdout.split()[:1] == ["StandAlone"]


def yield_here(vm: str, drbdadm: str, say: Callable[[str], None]) -> None:
    """This side's changes are discarded: stop the VM, demote, reconnect as the sync target."""
    _step(["systemctl", "stop", f"vm@{vm}.service"], say)
    _step([drbdadm, "secondary", vm], say)
    if not _standalone(vm, drbdadm):
        _step([drbdadm, "disconnect", vm], say)
    _step([drbdadm, "connect", "--discard-my-data", vm], say)


def connect_here(vm: str, drbdadm: str, say: Callable[[str], None]) -> None:
    """This side is kept: reconnect if DRBD dropped the connection (StandAlone)."""
    if _standalone(vm, drbdadm):
        _step([drbdadm, "connect", vm], say)
    else:
        say(f"{vm}: waiting for the peer already")


# --- both nodes -----------------------------------------------------------------------------


@dataclass
class Pair:
    """This node and the way to its peer (kisscluster.configure.node)."""

    here: str
    peer: str
    remote: Callable[[list[str]], subprocess.CompletedProcess[str]]

    @classmethod
    def load(cls) -> "Pair":
        from kisscluster.configure.node import load_node

        node = load_node()
        cluster = node.cluster()
        peer = cluster.peer_of(node.minion_id)

        def remote(arguments: list[str]) -> subprocess.CompletedProcess[str]:
            command = cluster.remote_command(peer, "kiss-split-brain", *arguments)
            return _run(command, timeout=600)

        return cls(node.minion_id, peer["name"], remote)


def peer_side(pair: Pair, vm: str) -> Side | None:
    done = pair.remote(["--here", "side", vm])
    lines = done.stdout.strip().splitlines()
    try:
        return Side.from_json(lines[-1])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def resolve(pair: Pair, vm: str, discard: str, drbdadm: str, say: Callable[[str], None]) -> int:
    mine = read_side(pair.here, vm, drbdadm)
    theirs = peer_side(pair, vm)
    if theirs is None:
        say(f"{pair.peer} is unreachable: a split brain is resolved with both nodes up")
        return 2
    keep, lose = (mine, theirs) if discard == pair.peer else (theirs, mine)
    why = refusal(keep, lose)
    if why:
        say(f"refused: {why}")
        return 1
    say(f"{vm}: discarding {lose.node}'s changes, keeping {keep.node}'s")
    for node, action in ((lose.node, "yield"), (keep.node, "connect")):
        if node == pair.here:
            (yield_here if action == "yield" else connect_here)(vm, drbdadm, say)
        else:
            done = pair.remote(["--here", action, vm])
            for line in done.stdout.strip().splitlines():
                say(f"{node}: {line}")
            if done.returncode != 0:
                say(f"{node}: {action} failed: {done.stderr.strip()}")
                return 1
    began = time.monotonic()
    while time.monotonic() - began < CONNECT_TIMEOUT:
        side = read_side(pair.here, vm, drbdadm)
        if all(v.connection not in ("StandAlone", "WFConnection") for v in side.volumes):
            states = ", ".join(f"{v.minor} {v.connection} {v.disks}" for v in side.volumes)
            say(f"{vm}: connected after {time.monotonic() - began:.0f} s: {states}")
            return 0
        time.sleep(1)
    say(f"{vm}: not connected after {CONNECT_TIMEOUT:.0f} s: check both nodes' kernel logs")
    return 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiss-split-brain",
        description="Show both copies of a VM's DRBD resource; resolve a split brain by "
        "discarding one node's changes (DRBD's own --discard-my-data).",
    )
    parser.add_argument("vm")
    parser.add_argument("--discard", metavar="NODE", help="the node whose changes are lost")
    parser.add_argument("--json", action="store_true", help="both sides as JSON")
    parser.add_argument(
        "--config",
        type=Path,
        default=heartbeat_config.DEFAULT_PATH,
        help="kissclusterd.conf, for its drbdadm (default %(default)s)",
    )
    parser.add_argument("--here", choices=("side", "yield", "connect"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    try:
        vm = names.validate_vm_name(args.vm)
        drbdadm = heartbeat_config.load(args.config).drbdadm
    except (ValueError, OSError, heartbeat_config.ConfigError) as exc:
        print(f"kiss-split-brain: {exc}", file=sys.stderr)
        return 2
    if args.here:
        return _here(args.here, vm, drbdadm)
    pair = Pair.load()
    if args.discard:
        if args.discard not in (pair.here, pair.peer):
            print(f"kiss-split-brain: {args.discard!r} is neither {pair.here} nor {pair.peer}",
                  file=sys.stderr)  # fmt: skip
            return 2
        return resolve(pair, vm, args.discard, drbdadm, print)
    mine, theirs = read_side(pair.here, vm, drbdadm), peer_side(pair, vm)
    if theirs is None:
        print(f"{pair.peer}: unreachable; {pair.here} alone:\n{mine.to_json()}")
        return 2
    if args.json:
        print(json.dumps({"split_brain": is_split_brain(mine, theirs),
                          "sides": [asdict(mine), asdict(theirs)]}, sort_keys=True))  # fmt: skip
    else:
        print(render(mine, theirs))
    return 1 if is_split_brain(mine, theirs) else 0


def _here(action: str, vm: str, drbdadm: str) -> int:
    from kisscluster.configure.node import load_node

    node = load_node().minion_id
    if action == "side":
        print(read_side(node, vm, drbdadm).to_json())
        return 0
    try:
        (yield_here if action == "yield" else connect_here)(vm, drbdadm, print)
    except RuntimeError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    return 0
