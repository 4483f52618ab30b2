"""The kissclusterd daemon: heartbeats on both nets, switch pings, decisions, actions.

One thread runs the loop (sockets, decisions, actions, status); a second one only runs the ping
tool once per interval and hands the result over. Signal handlers only set flags. The loop
evaluates the core after every input and at every moment the core names (a dead time running
out, a pending state becoming confirmable), so a failover takes at most dead time + interval.
"""

import contextlib
import enum
import ipaddress
import os
import selectors
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

from kisscluster import placement
from kisscluster.heartbeat import copies, outdate, protocol, status
from kisscluster.heartbeat.config import Config, ConfigError, load, read_secret
from kisscluster.heartbeat.core import NETS, ClockJump, Core, Decision, State
from kisscluster.heartbeat.identity import IP_FREEBIND, IPV6_FREEBIND, Identity, identify
from kisscluster.heartbeat.journal import log, notify
from kisscluster.heartbeat.witness import WitnessClient
from kisscluster.heartbeat.workers import (
    DROP_LOG_PERIOD,
    RETRY,
    ActionRunner,
    Pinger,
    Responder,
    Throttle,
)
from kisscluster.unitctl import RETRIED

BOOT_ID_FILE = Path("/proc/sys/kernel/random/boot_id")
# Seconds between two looks for failed VM starts, doubled (up to RETRY_MAX) after each retry.
RETRY_MIN, RETRY_MAX = 30.0, 480.0


class ExitCode(enum.IntEnum):
    STOPPED = 0
    FAILED = 1
    CONFIG = 2
    CLOCK_JUMP = 3


class Daemon:
    def __init__(
        self,
        config_path: Path,
        run_dir: Path,
        copy_paths: tuple[Path, Path, Path] = (
            copies.SYSTEMD_DIR,
            copies.DRBD_DIR,
            copies.PROC_DRBD,
        ),
    ) -> None:
        self.config_path = config_path
        self.run_dir = run_dir
        self.copy_paths = copy_paths  # where the enabled VMs, their minors and DRBD's state are
        self.stale_copies: list[str] = []  # of this node's own VMs: they lower its priority
        self.cannot_run: list[str] = []  # of every enabled VM: shown in the status
        self.placement_error = False
        self.retry_at = 0.0
        self.retry_backoff = RETRY_MIN
        self.boot_id = bytes.fromhex(BOOT_ID_FILE.read_text().strip().replace("-", ""))
        self.selector = selectors.DefaultSelector()
        self.wake_read, self.wake_write = socket.socketpair()
        self.sockets: dict[str, socket.socket] = {}
        self.bound: tuple[Identity, int] | None = None
        self.receivers: dict[str, protocol.Receiver] = {}
        self.dropped: Counter[str] = Counter()
        self.drop_log = Throttle(DROP_LOG_PERIOD)
        self.send_log = Throttle(DROP_LOG_PERIOD)
        self.last_heartbeat_wall: dict[str, float | None] = dict.fromkeys(NETS)
        self.last_ping: dict[str, Any] | None = None
        self.last_ping_ok: float | None = None  # wall time of the switch's latest reply
        # The witness's latest answer: wall time, and the member holding the lease (or None).
        self.witness_answer: tuple[float, int | None] | None = None
        self.actions = ActionRunner()
        self.flags = {"reload": False, "stop": False}
        self.started_wall = time.time()

    # -- set-up -------------------------------------------------------------------------
    def _signal(self, signum: int, _frame: object) -> None:
        self.flags["reload" if signum == signal.SIGHUP else "stop"] = True

    def _bind(self, identity: Identity, port: int) -> None:
        for sock in self.sockets.values():
            self.selector.unregister(sock)
            sock.close()
        self.sockets = {}
        for net in NETS:
            address = identity.own[net]
            v4 = address.version == 4
            sock = socket.socket(socket.AF_INET if v4 else socket.AF_INET6, socket.SOCK_DGRAM)
            sock.setsockopt(
                socket.IPPROTO_IP if v4 else socket.IPPROTO_IPV6,
                IP_FREEBIND if v4 else IPV6_FREEBIND,
                1,
            )
            sock.bind((str(address), port))
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ, net)
            self.sockets[net] = sock

    def _apply(self, config: Config, secret: bytes, identity: Identity) -> None:
        if self.bound != (identity, config.port):
            self._bind(identity, config.port)
            self.receivers = {}
            self.bound = (identity, config.port)
        for net in NETS:
            window = config.rules.dead_time
            receiver = self.receivers.get(net)
            if receiver is None:
                self.receivers[net] = protocol.Receiver(
                    identity.peer[net], config.rules.base_priority, window
                )
            else:
                receiver.max_priority, receiver.window = config.rules.base_priority, window
        self.config, self.secret, self.identity = config, secret, identity

    def _load(self) -> tuple[Config, bytes, Identity]:
        config = load(self.config_path)
        return config, read_secret(config.secret_file), identify(config)

    def reload(self) -> None:
        notify(f"RELOADING=1\nMONOTONIC_USEC={time.monotonic_ns() // 1000}")
        try:
            config, secret, identity = self._load()
        except ConfigError as exc:
            log.error("reload refused, keeping the running configuration: %s", exc)
        else:
            self._apply(config, secret, identity)
            self.core.rules = config.rules
            self.core.witness = config.witness is not None
            self.pinger.target = (config.ping_addr, config.rules.interval)
            self.witness.settings = self._witness_settings(config)
            log.info("configuration reloaded from %s", self.config_path)
        notify("READY=1")

    @staticmethod
    def _witness_settings(config: Config) -> tuple[tuple[str, int] | None, float, float]:
        # The lease asked for is one dead time: a dead holder's lease runs out as the peer
        # notices that it is dead.
        return config.witness, config.rules.interval, config.rules.dead_time

    def _takeover_argv(self, state: State, decision: Decision) -> list[str]:
        """The action for a new state; taking a silent peer's VMs waits for power fencing."""
        argv = self.config.action_argv(state)
        peer_device = self.config.fence[1 - self.identity.index]
        if state != State.ALL or decision.peer_priority is not None or peer_device is None:
            return argv
        return [
            sys.executable, "-m", "kisscluster.heartbeat.cli", "fence-then",
            "--config", str(self.config_path), "--run-dir", str(self.run_dir), "--", *argv,
        ]  # fmt: skip

    def _witness_results(self) -> None:
        while not self.witness.results.empty():
            until, holder = self.witness.results.get()
            if until is None and holder is None:
                continue  # silent: a lease already held runs out by itself
            self.core.lease(until)
            self.witness_answer = (time.time(), holder)

    # -- the loop -----------------------------------------------------------------------
    def _send(self, priority: int) -> None:
        for net in NETS:
            heartbeat = protocol.Heartbeat(
                sender=self.identity.own[net],
                priority=priority,
                timestamp=time.time(),
                boot_id=self.boot_id,
                sequence=time.monotonic_ns(),
            )
            target = (str(self.identity.peer[net]), self.config.port)
            try:
                self.sockets[net].sendto(protocol.encode(heartbeat, self.secret), target)
            except OSError as exc:
                suppressed = self.send_log.allow((net, type(exc).__name__), time.monotonic())
                if suppressed is not None:
                    log.warning(
                        "cannot send heartbeat on %s to %s: %s (%d more not logged)",
                        net,
                        target[0],
                        exc.strerror or exc,
                        suppressed,
                    )

    def _receive(self, net: str) -> None:
        sock = self.sockets[net]
        while True:
            try:
                datagram, source = sock.recvfrom(max(protocol.SIZE, outdate.REQUEST_SIZE) + 1)
            except BlockingIOError:
                return
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                log.debug("receive on %s: %s", net, exc)
                continue
            if datagram[:4] in (outdate.REQUEST_MAGIC, outdate.CONNECT_MAGIC):
                self.responder.requests.put((net, datagram, source))
                continue
            try:
                sender = ipaddress.ip_address(source[0].split("%")[0])
                heartbeat = self.receivers[net].accept(datagram, sender, self.secret, time.time())
            except protocol.Dropped as drop:
                self.dropped[drop.reason] += 1
                suppressed = self.drop_log.allow((net, drop.reason), time.monotonic())
                if suppressed is not None:
                    log.warning(
                        "dropped packet on %s from %s: %s (%d more like it not logged)",
                        net,
                        source[0],
                        drop,
                        suppressed,
                    )
                continue
            self.core.heartbeat(net, heartbeat.priority, time.monotonic())
            self.last_heartbeat_wall[net] = time.time()

    def _status(self, decision: Decision) -> dict[str, Any]:
        return {
            "node": str(self.identity.own["stor"]),
            "member_index": self.identity.index,
            "own_addrs": {net: str(a) for net, a in self.identity.own.items()},
            "peer_addrs": {net: str(a) for net, a in self.identity.peer.items()},
            "pid": os.getpid(),
            "started": self.started_wall,
            "updated": time.time(),
            "interval": self.config.rules.interval,
            "dead_time": self.config.rules.dead_time,
            "state": decision.state,
            "computed": decision.computed,
            "in_grace": decision.in_grace,
            "own_priority": decision.own_priority,
            "peer_priority": decision.peer_priority,
            "last_heartbeat": self.last_heartbeat_wall,
            "last_ping": self.last_ping,
            "last_ping_ok": self.last_ping_ok,
            "dropped": dict(self.dropped),
            "stale_copies": self.stale_copies,
            "cannot_run": self.cannot_run,
            "maintenance": self.core.maintenance,
            "witness": None
            if self.config.witness is None
            else "{}:{}".format(*self.config.witness),
            "witness_answer": self.witness_answer,
            "lease_until": None
            if self.core.lease_until is None
            else time.time() + self.core.lease_until - time.monotonic(),
            "power_fencing": self.config.fence[1 - self.identity.index] is not None,
        }

    def run(self) -> int:
        for signum in (signal.SIGHUP, signal.SIGTERM, signal.SIGINT):
            signal.signal(signum, self._signal)
        try:
            config, secret, identity = self._load()
            self._apply(config, secret, identity)
            self.run_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        except ConfigError as exc:
            log.error("%s", exc)
            return ExitCode.CONFIG
        except OSError as exc:
            log.error("cannot start: %s", exc)
            return ExitCode.FAILED
        for sock in (self.wake_read, self.wake_write):
            sock.setblocking(False)
        signal.set_wakeup_fd(self.wake_write.fileno(), warn_on_full_buffer=False)
        self.selector.register(self.wake_read, selectors.EVENT_READ, None)
        self.core = Core(self.config.rules, started=time.monotonic(), last_wall=time.time())
        self.core.witness = config.witness is not None
        self.pinger = Pinger((self.config.ping_addr, self.config.rules.interval), self.wake_write)
        self.pinger.start()
        self.witness = WitnessClient(identity.index, secret, self._witness_settings(config))
        self.witness.wake = self.wake_write
        self.witness.start()
        self.responder = Responder(self)
        self.responder.start()
        self._check_copies()
        log.info(
            "started as member %d (%s): peer %s / %s, switch %s, interval %g s, dead time %g s"
            ", a peer never heard is dead after %g s",
            identity.index + 1,
            ", ".join(f"{n} {a}" for n, a in identity.own.items()),
            identity.peer["stor"],
            identity.peer["prod"],
            config.ping_addr,
            config.rules.interval,
            config.rules.dead_time,
            config.rules.init_dead,
        )
        notify("READY=1\nSTATUS=start-up grace period")
        try:
            return self._loop()
        except ClockJump as jump:
            log.critical("%s: exiting so that a restart decides on sound timing", jump)
            notify(f"STATUS=exited: {jump}")
            return ExitCode.CLOCK_JUMP
        finally:
            self.pinger.stop.set()
            self.witness.stop.set()
            signal.set_wakeup_fd(-1)

    def _loop(self) -> int:
        next_send = time.monotonic()
        announced: int | None = None
        last_line = ""
        watchdog = "WATCHDOG_USEC" in os.environ
        while True:
            if self.flags["stop"]:
                log.info("stopping on signal (the active target is left as it is)")
                notify("STOPPING=1")
                return ExitCode.STOPPED
            if self.flags["reload"]:
                self.flags["reload"] = False
                self.reload()
            now = time.monotonic()
            deadline = min(d for d in (next_send, self.core.next_deadline(now)) if d is not None)
            for key, _ in self.selector.select(max(0.0, deadline - now)):
                if key.data is None:
                    with contextlib.suppress(BlockingIOError):
                        while self.wake_read.recv(512):
                            pass
                else:
                    self._receive(key.data)
            while not self.pinger.results.empty():
                ok, at = self.pinger.results.get()
                self.core.ping(ok, at)
                self.last_ping = {"ok": ok, "at": time.time() - (time.monotonic() - at)}
                if ok:
                    self.last_ping_ok = self.last_ping["at"]
            self._witness_results()
            self._action_ended(self.actions.poll())

            now = time.monotonic()
            decision = self.core.evaluate(now, time.time())
            if decision.changed:
                assert decision.state is not None
                self.actions.request(decision.state, self._takeover_argv(decision.state, decision))
                self.retry_at, self.retry_backoff = now + RETRY_MIN, RETRY_MIN
                notify(f"STATUS={decision.state}")
            elif decision.state is not None and now >= self.retry_at and self.actions.idle():
                self._retry_failed(decision.state)
            line = decision.line()
            tick = now >= next_send
            if decision.own_priority != announced or tick:
                self._send(decision.own_priority)
                announced = decision.own_priority
            if tick:
                self._check_copies()
                self._check_maintenance()
                next_send += self.config.rules.interval
                if next_send <= now:  # the loop was held up: keep the cadence from now on
                    next_send = now + self.config.rules.interval
                if watchdog:
                    notify("WATCHDOG=1")
            if line != last_line or tick:
                if line != last_line:
                    log.info("%s", line)
                    last_line = line
                status.publish(self.run_dir, self._status(decision))

    def _check_copies(self) -> None:
        systemd_dir, drbd_dir, proc_drbd = self.copy_paths
        self.cannot_run = copies.stale(copies.enabled_vms(systemd_dir), drbd_dir, proc_drbd)
        home = set(copies.home_vms(systemd_dir))
        stale = [entry for entry in self.cannot_run if entry.split("/")[0].split()[0] in home]
        if stale != self.stale_copies:
            if stale:
                log.warning(
                    "own VMs' copies not UpToDate here (the peer keeps them): %s", ", ".join(stale)
                )
            else:
                log.info("every copy of this node's own VMs is UpToDate here")
        self.stale_copies = stale
        self.core.copies_ready = not stale

    def _check_maintenance(self) -> None:
        try:
            marked = placement.load(self.config.placement_file).maintenance
        except (placement.PlacementError, OSError) as exc:
            if not self.placement_error:
                log.error("placement file unreadable, maintenance unchanged: %s", exc)
            self.placement_error = True
            return
        self.placement_error = False
        members = self.config.members
        on = members is not None and members[self.identity.index] in marked
        if on != self.core.maintenance:
            log.warning(
                "maintenance %s: %s", "on" if on else "off",
                "no VM runs here while the peer can run them" if on else "VMs may run here again",
            )  # fmt: skip
        self.core.maintenance = on

    def _retry_failed(self, state: State) -> None:
        """Restart VM units that failed to start under the current state (exits RETRIED)."""
        argv = [sys.executable, "-m", "kisscluster.unitctl", "retry-failed", "--"]
        self.actions.request(RETRY, argv + self.config.action_argv(state))
        self.retry_at = time.monotonic() + self.retry_backoff

    def _action_ended(self, ended: tuple[str, int] | None) -> None:
        if ended is None or ended[0] != RETRY:
            return
        if ended[1] == RETRIED:
            self.retry_backoff = min(2 * self.retry_backoff, RETRY_MAX)
            log.warning("retried failed VM starts; next check in %.0f s", self.retry_backoff)
        else:
            self.retry_backoff = RETRY_MIN
        self.retry_at = time.monotonic() + self.retry_backoff
