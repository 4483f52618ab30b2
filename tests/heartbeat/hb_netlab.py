"""Two kissclusterd daemons in real network namespaces, for the fault matrix and the benchmark.

Topology (all addresses exist only inside these namespaces)::

    <tag>n1  stor 10.231.1.1/24  <-- veth -->  stor 10.231.1.2/24  <tag>n2
             prod 10.231.2.1/24  <-- veth --> p1 ]
                                                  br0 10.231.2.254/24 in <tag>sw (the switch)
             prod 10.231.2.2/24  <-- veth --> p2 ]           (of n2)

The production net runs through the switch namespace's bridge, like a real LAN; the storage
net is a direct cable. The daemons' action is the seam: instead of `systemctl start` it runs
record_action.py, which appends "<wall time> <state>" to the node's action log.
"""

import contextlib
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kisscluster.heartbeat import status

CHECKOUT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
NODES = ("n1", "n2")
STOR = {"n1": "10.231.1.1", "n2": "10.231.1.2"}
PROD = {"n1": "10.231.2.1", "n2": "10.231.2.2"}
SWITCH = "10.231.2.254"
PORT = 694
SECRET = "correct horse battery staple, kisscluster test secret\n"


def run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, check=check, capture_output=True, text=True, timeout=30)


@dataclass
class Lab:
    root: Path
    interval: float = 1.0
    dead_time: float = 3.0
    init_dead: float | None = None  # None: four dead times
    tag: str = field(default_factory=lambda: f"kc{os.getpid() % 100000}{secrets.token_hex(2)}")
    daemons: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    events: list[tuple[float, str]] = field(default_factory=list)  # (wall time, what the test did)
    # The daemons' run dirs (status, action logs) live on tmpfs, like /run on a node: on this
    # shared host's disk an fsync can stall for seconds under other jobs' I/O.
    shm: Path = field(init=False)

    def __post_init__(self) -> None:
        tmpfs = Path("/dev/shm")
        self.shm = Path(
            tempfile.mkdtemp(prefix=f"{self.tag}-", dir=tmpfs if tmpfs.is_dir() else None)
        )

    def ns(self, name: str) -> str:
        return f"{self.tag}{name}"

    # -- namespaces ---------------------------------------------------------------------
    def setup(self) -> None:
        n1, n2, sw = self.ns("n1"), self.ns("n2"), self.ns("sw")
        for name in (n1, n2, sw):
            run("ip", "netns", "add", name)
            run("ip", "-n", name, "link", "set", "lo", "up")
        run("ip", "link", "add", "stor", "netns", n1, "type", "veth", "peer", "stor", "netns", n2)
        run("ip", "link", "add", "prod", "netns", n1, "type", "veth", "peer", "p1", "netns", sw)
        run("ip", "link", "add", "prod", "netns", n2, "type", "veth", "peer", "p2", "netns", sw)
        run("ip", "-n", sw, "link", "add", "br0", "type", "bridge")
        for port in ("p1", "p2"):
            run("ip", "-n", sw, "link", "set", port, "master", "br0", "up")
        run("ip", "-n", sw, "addr", "add", f"{SWITCH}/24", "dev", "br0")
        run("ip", "-n", sw, "link", "set", "br0", "up")
        for node, ns in (("n1", n1), ("n2", n2)):
            run("ip", "-n", ns, "addr", "add", f"{STOR[node]}/24", "dev", "stor")
            run("ip", "-n", ns, "addr", "add", f"{PROD[node]}/24", "dev", "prod")
            run("ip", "-n", ns, "link", "set", "stor", "up")
            run("ip", "-n", ns, "link", "set", "prod", "up")
        secret = self.root / "secret"
        secret.write_text(SECRET)
        secret.chmod(0o600)
        for node in NODES:
            self.rundir(node).mkdir(parents=True, exist_ok=True)
        self.write_config()
        self.wait_for(self._links_ready, 10, "namespace links up")

    def _links_ready(self) -> bool:
        probes = [
            run("ip", "netns", "exec", self.ns("n1"), "fping", "-q", "-r", "1", "-t", "200", addr,
                check=False)
            for addr in (STOR["n2"], PROD["n2"], SWITCH)
        ]  # fmt: skip
        return all(p.returncode == 0 for p in probes)

    def teardown(self) -> None:
        for process in self.daemons.values():
            with contextlib.suppress(ProcessLookupError):
                os.kill(process.pid, signal.SIGCONT)
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=5)
        for name in ("n1", "n2", "sw"):
            run("ip", "netns", "del", self.ns(name), check=False)
        for node in NODES:  # keep the action logs beside the daemon logs for a post-mortem
            with contextlib.suppress(FileNotFoundError):
                shutil.copy(self.action_log(node), self.root / f"actions-{node}.log")
        shutil.rmtree(self.shm, ignore_errors=True)

    # -- daemons ------------------------------------------------------------------------
    def config_text(self, **overrides: Any) -> str:
        recorder = HERE / "record_action.py"
        values = {
            "stor_addrs": f"{STOR['n1']} {STOR['n2']}",
            "prod_addrs": f"{PROD['n1']} {PROD['n2']}",
            "ping_addr": SWITCH,
            "port": PORT,
            "secret_file": self.root / "secret",
            "base_priority": 100,
            "priority_penalty": 10,
            "interval": self.interval,
            "dead_time": self.dead_time,
            "init_dead": self.init_dead or 4 * self.dead_time,
            "action": f"{sys.executable} -I -S {recorder} {{state}}",
        }
        values.update(overrides)
        body = "".join(f"{key} = {value}\n" for key, value in values.items())
        return f"[kissclusterd]\n{body}"

    def write_config(self, **overrides: Any) -> None:
        (self.root / "kissclusterd.conf").write_text(self.config_text(**overrides))

    def rundir(self, node: str) -> Path:
        return self.shm / f"run-{node}"

    def action_log(self, node: str) -> Path:
        return self.rundir(node) / "actions.log"

    def drbd_state(self, node: str) -> Path:
        """The fake drbdadm's resource states of `node` (fake_drbdadm.py)."""
        return self.rundir(node) / "drbd.json"

    def env(self, node: str) -> dict[str, str]:
        # The config is identical on both nodes; the seams learn their files from the environment.
        env = {**os.environ, "PYTHONPATH": str(CHECKOUT)}
        env["KISSTEST_ACTION_LOG"] = str(self.action_log(node))
        env["KISSTEST_DRBD_STATE"] = str(self.drbd_state(node))
        return env

    def start(
        self, node: str, clock_offset: Path | None = None, notify_socket: Path | None = None
    ) -> subprocess.Popen[bytes]:
        env = self.env(node)
        env.pop("NOTIFY_SOCKET", None)
        if notify_socket is not None:
            env["NOTIFY_SOCKET"] = str(notify_socket)
        if clock_offset is None:
            program = [str(CHECKOUT / "scripts" / "kissclusterd")]
        else:
            program = [str(HERE / "skewed_clock.py"), str(clock_offset)]
        argv = [
            "ip", "netns", "exec", self.ns(node), sys.executable, *program, "run",
            "--config", str(self.root / "kissclusterd.conf"), "--run-dir", str(self.rundir(node)),
        ]  # fmt: skip
        with open(self.root / f"{node}.log", "ab") as log:
            process = subprocess.Popen(argv, env=env, stdout=log, stderr=log)
        self.daemons[node] = process
        self.mark(f"start {node}")
        return process

    def signal(self, node: str, signum: int) -> None:
        os.kill(self.daemons[node].pid, signum)
        self.mark(f"signal {signum} {node}")

    def mark(self, what: str) -> float:
        now = time.time()
        self.events.append((now, what))
        return now

    def log_text(self, node: str) -> str:
        path = self.root / f"{node}.log"
        return path.read_text(errors="replace") if path.exists() else ""

    # -- observations -------------------------------------------------------------------
    def actions(self, node: str) -> list[tuple[float, str]]:
        path = self.action_log(node)
        if not path.exists():
            return []
        rows = []
        for line in path.read_text().splitlines():
            when, state = line.split()
            rows.append((float(when), state))
        return rows

    def states(self, node: str) -> list[str]:
        return [state for _, state in self.actions(node)]

    def state(self, node: str) -> str | None:
        states = self.states(node)
        return states[-1] if states else None

    def status(self, node: str) -> dict[str, Any]:
        return status.read(self.rundir(node))

    def wait_for(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll until `predicate()` holds; returns the wall time it first held."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return time.time()
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{self.describe()}")

    def wait_states(self, timeout: float, **wanted: str) -> float:
        return self.wait_for(
            lambda: all(self.state(node) == state for node, state in wanted.items()),
            timeout,
            f"states {wanted}",
        )

    def describe(self) -> str:
        parts = [f"events: {self.events}"]
        for node in NODES:
            parts.append(f"{node} actions: {self.actions(node)}")
            parts.append(f"{node} log (tail):\n{self.log_text(node)[-3000:]}")
        return "\n".join(parts)

    # -- faults -------------------------------------------------------------------------
    def link(self, node: str, ifname: str, up: bool) -> None:
        run("ip", "-n", self.ns(node), "link", "set", ifname, "up" if up else "down")
        self.mark(f"{ifname} {'up' if up else 'down'} on {node}")

    def nft(self, where: str, rules: str) -> None:
        """Load an nftables ruleset (text) into a namespace; marked once it is in force."""
        subprocess.run(
            ["ip", "netns", "exec", self.ns(where), "nft", "-f", "-"],
            input=rules,
            text=True,
            check=True,
            capture_output=True,
            timeout=30,
        )
        self.mark(f"nft on {where}: {rules.strip()!r}")

    def nft_flush(self, where: str) -> None:
        run("ip", "netns", "exec", self.ns(where), "nft", "flush", "ruleset")
        self.mark(f"nft flush on {where}")

    def tool(self, where: str, *args: str, timeout: float = 30) -> str:
        """Run nettool.py inside a namespace (sniffing, sending crafted datagrams)."""
        done = subprocess.run(
            ["ip", "netns", "exec", self.ns(where), sys.executable, str(HERE / "nettool.py"),
             *args],
            env={**os.environ, "PYTHONPATH": str(CHECKOUT)},
            check=True, capture_output=True, text=True, timeout=timeout,
        )  # fmt: skip
        return done.stdout


@contextlib.contextmanager
def lab(
    root: Path, interval: float = 1.0, dead_time: float = 3.0, init_dead: float | None = None
) -> Iterator[Lab]:
    """A set-up Lab that is torn down (daemons killed, namespaces deleted) whatever happens."""
    built = Lab(root, interval, dead_time, init_dead)
    try:
        built.setup()
        yield built
    finally:
        built.teardown()


def wanted_anywhere(state: str | None) -> bool:
    """Whether a node in this state may run VMs (no state yet: no VM target started)."""
    return state not in (None, "no-vms")


def violations(
    actions: dict[str, list[tuple[float, str]]],
    dead: dict[str, list[tuple[float, float]]] | None = None,
    until: float | None = None,
) -> list[tuple[float, float]]:
    """Every time span in which some VM is wanted on both nodes at once.

    A node wants its last recorded state; `all-vms` on one node together with anything but
    `no-vms` (or no state yet) on the other is a violation. `dead` lists spans in which a node
    counts as down (its daemon killed or frozen: it stands for a dead node, which runs nothing).
    The sweep visits every recorded change, so no span is missed, however short.
    """
    dead = dead or {}
    moments = sorted(
        {t for rows in actions.values() for t, _ in rows}
        | {t for spans in dead.values() for span in spans for t in span}
    )
    until = until if until is not None else time.time()

    def state_at(node: str, moment: float) -> str | None:
        if any(start <= moment < end for start, end in dead.get(node, [])):
            return None
        current = None
        for when, state in actions[node]:
            if when <= moment:
                current = state
        return current

    spans: list[tuple[float, float]] = []
    start: float | None = None
    for moment in [*moments, until]:
        n1, n2 = state_at("n1", moment), state_at("n2", moment)
        bad = (n1 == "all-vms" and wanted_anywhere(n2)) or (n2 == "all-vms" and wanted_anywhere(n1))
        if bad and start is None:
            start = moment
        elif not bad and start is not None:
            if moment > start:
                spans.append((start, moment))
            start = None
    if start is not None:
        spans.append((start, until))
    return spans
