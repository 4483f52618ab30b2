"""The daemon's helpers beside its loop: the switch pinger and the outdate responder (threads),
the runner of actions (one process at a time), and the throttle of repetitive log lines."""

import contextlib
import ipaddress
import logging
import queue
import shutil
import socket
import subprocess
import threading
import time
from collections import Counter
from typing import TYPE_CHECKING

from kisscluster.heartbeat import outdate
from kisscluster.heartbeat.config import Address
from kisscluster.unitctl import RETRIED

if TYPE_CHECKING:
    from kisscluster.heartbeat.daemon import Daemon

log = logging.getLogger("kissclusterd")

DROP_LOG_PERIOD = 10.0  # seconds between two log lines about dropped packets of one kind
RETRY = "retry"  # the label of the looks for failed VM starts in the ActionRunner
ANSWER_MEMORY = 60.0  # seconds a final answer to an outdate request is remembered
# Seconds a "retry" answer is repeated without asking DRBD again: the asking side sends every
# half second on both nets, and each look at DRBD takes a while on a slow node.
RETRY_MEMORY = 1.0
PING_RUN_LIMIT = 3  # intervals a ping may take to run before it counts as no reply


def ping_command(address: Address, timeout: float) -> list[str]:
    """One echo request with a reply timeout: fping if installed, else iputils ping."""
    if shutil.which("fping"):
        return ["fping", "-q", "-r", "0", "-t", str(max(1, int(timeout * 1000))), str(address)]
    return ["ping", "-n", "-q", "-c", "1", "-W", f"{timeout:.3f}", str(address)]


class Pinger(threading.Thread):
    """Pings the switch once per interval and queues (ok, monotonic time) results."""

    def __init__(self, target: tuple[Address, float], wake: socket.socket) -> None:
        super().__init__(name="ping", daemon=True)
        self.target = target  # (address, interval); replaced on reload
        self.results: queue.SimpleQueue[tuple[bool, float]] = queue.SimpleQueue()
        self.stop = threading.Event()
        self._wake = wake
        self._failures = Throttle(DROP_LOG_PERIOD)

    def run(self) -> None:
        next_round = time.monotonic()
        while not self.stop.is_set():
            address, interval = self.target
            command = ping_command(address, interval * 0.8)
            try:
                done = subprocess.run(
                    command,
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL,
                    # The reply timeout is fping's own; a busy node may take longer than an
                    # interval just to start it, and that is no silence of the switch.
                    timeout=PING_RUN_LIMIT * interval,
                    check=False,
                )
                ok = done.returncode == 0
            except (OSError, subprocess.TimeoutExpired) as exc:
                suppressed = self._failures.allow(("ping", type(exc).__name__), time.monotonic())
                if suppressed is not None:
                    log.warning(
                        "ping %s failed to run: %s (%d more not logged)", address, exc, suppressed
                    )
                ok = False
            self.results.put((ok, time.monotonic()))
            with contextlib.suppress(OSError):
                self._wake.send(b"p")
            next_round = max(next_round + interval, time.monotonic())
            self.stop.wait(max(0.0, next_round - time.monotonic()))


class ActionRunner:
    """Runs one action at a time without blocking. A newer state's action supersedes the one
    running (systemd replaces the superseded target's jobs with the new ones); a retry runs
    only when nothing else does."""

    def __init__(self) -> None:
        self.running: tuple[str, subprocess.Popen[bytes]] | None = None
        self.queued: tuple[str, list[str]] | None = None
        self.superseded = False

    def idle(self) -> bool:
        return self.running is None and self.queued is None

    def request(self, label: str, argv: list[str]) -> None:
        if self.running is not None and self.running[1].poll() is None:
            log.info("action for %s superseded by %s", self.running[0], label)
            self.running[1].terminate()
            self.superseded = True
        self.queued = (label, argv)
        self.poll()

    @staticmethod
    def _say(label: str, message: str, *args: object) -> None:
        """Actions in the journal; the routine look for failed starts only when debugging."""
        log.log(logging.DEBUG if label == RETRY else logging.INFO, message, label, *args)

    def poll(self) -> tuple[str, int] | None:
        """Start what is queued once nothing runs; the (label, status) of an action that ended."""
        ended = None
        if self.running is not None:
            label, process = self.running
            code = process.poll()
            if code is None:
                return None
            if code == 0:
                self._say(label, "action for %s done")
            elif self.superseded:
                self._say(label, "action for %s ended (superseded)")
            elif code != RETRIED:
                log.error("action for %s exited with status %d", label, code)
            self.running, ended, self.superseded = None, (label, code), False
        if self.queued is not None:
            label, argv = self.queued
            self.queued = None
            self._say(label, "running action for %s: %s", argv)
            try:
                self.running = (label, subprocess.Popen(argv, stdin=subprocess.DEVNULL))
            except OSError as exc:
                log.error("cannot run action %s: %s", argv, exc)
        return ended


class Responder(threading.Thread):
    """Answers the peer's outdate and connect requests (kisscluster.heartbeat.outdate) off the
    main loop: drbdadm may take its time, and the heartbeats must not wait for it."""

    def __init__(self, daemon: "Daemon") -> None:
        super().__init__(name="outdate", daemon=True)
        self.owner = daemon
        self.requests: queue.SimpleQueue[tuple[str, bytes, tuple[str, int]]] = queue.SimpleQueue()
        self.answered: dict[bytes, tuple[float, outdate.Answer]] = {}
        self._log = Throttle(DROP_LOG_PERIOD)

    def run(self) -> None:
        while True:
            net, datagram, source = self.requests.get()
            try:
                self.handle(net, datagram, source)
            except Exception:
                log.exception("outdate request on %s from %s", net, source[0])

    def handle(self, net: str, datagram: bytes, source: tuple[str, int]) -> None:
        daemon = self.owner
        peer = daemon.identity.peer[net]
        connect = datagram[:4] == outdate.CONNECT_MAGIC
        kind, act, magic = (
            ("connect", outdate.answer_connect, outdate.CONNECT_MAGIC)
            if connect
            else ("outdate", outdate.answer_request, outdate.REQUEST_MAGIC)
        )
        try:
            request = outdate.decode_request(datagram, daemon.secret, magic)
            sender = ipaddress.ip_address(source[0].split("%")[0])
            if request.sender != peer or sender != peer:
                raise outdate.BadMessage(f"from {sender} claiming {request.sender}, not {peer}")
        except (outdate.BadMessage, ValueError) as exc:
            if self._log.allow((net, "outdate"), time.monotonic()) is not None:
                log.warning("dropped %s request on %s from %s: %s", kind, net, source[0], exc)
            return
        now = time.monotonic()
        self.answered = {n: a for n, a in self.answered.items() if now - a[0] < ANSWER_MEMORY}
        known = self.answered.get(request.nonce)
        window = daemon.config.rules.dead_time + daemon.config.fence_timeout
        skew = request.timestamp - time.time()
        answer: outdate.Answer
        if known is not None and (
            known[1] != outdate.Answer.RETRY or now - known[0] < RETRY_MEMORY
        ):
            answer = known[1]
        elif abs(skew) > window:
            # Not acted on (it may be a replay), but answered: a peer whose clock lags after a
            # hang must learn that this node lives, never take its silence for death.
            answer = outdate.Answer.RETRY
            if self._log.allow((net, "outdate-window"), now) is not None:
                log.warning(
                    "%s request on %s %+.1f s off our clock: answered retry", kind, net, skew
                )
        else:
            answer, line = act(daemon.config.drbdadm, request.resource)
            log.warning("%s request from the peer on %s: %s", kind, net, line)
            self.answered[request.nonce] = (now, answer)
        reply = outdate.Reply(daemon.identity.own[net], time.time(), request.nonce, answer)
        with contextlib.suppress(OSError):
            daemon.sockets[net].sendto(outdate.encode_reply(reply, daemon.secret), source)


class Throttle:
    """Rate limit for repetitive log lines: one per key and period, counting the rest."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.last: dict[tuple[str, str], float] = {}
        self.suppressed: Counter[tuple[str, str]] = Counter()

    def allow(self, key: tuple[str, str], now: float) -> int | None:
        """None if this line should be suppressed, else how many were suppressed before it."""
        if now - self.last.get(key, -self.period) < self.period:
            self.suppressed[key] += 1
            return None
        self.last[key] = now
        return self.suppressed.pop(key, 0)
