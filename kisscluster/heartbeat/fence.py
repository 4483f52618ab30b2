"""DRBD's handlers: `kissclusterd fence-peer`, `kissclusterd stand-down` and the notifications.

DRBD runs the fence-peer handler (with `fencing resource-and-stonith`, I/O frozen meanwhile)
when this node is Primary and loses the peer, or wants to become Primary without knowing the
peer's disk. The handler asks the peer's kissclusterd on both nets to outdate its copy
(kisscluster.heartbeat.outdate) and exits with the code DRBD 8.4 acts on:

* 4 the peer's copy is Outdated, 3 it is Inconsistent or worse: go on, the peer cannot promote.
* 6 the peer is Primary, or its copy holds writes this side lacks (it ran the VM while this
  node hung, then handed it back): DRBD outdates this side if it is Secondary (the promotion
  is refused).
  If this side is Primary too, DRBD cannot outdate it and its I/O stays frozen, so nothing it
  writes from now on is ever acknowledged; the stand-down then kills its VM and turns this copy
  into a sync target of the peer's.
* The peer answered but could not outdate yet (its DRBD still sees us, or our clock lags
  after a hang), or this node's kissclusterd hears its heartbeats: exit 1, which leaves I/O
  frozen (or refuses the promotion) -- a peer known to live is never claimed dead.
* Silence on both nets, and this node's kissclusterd has no reply from the switch either: this
  node is the one cut off (its links are down, not the peer), and the peer, which still has the
  switch, takes the VMs over. Exit 1: I/O stays frozen (or the promotion is refused), and a
  Primary here stands down as above, so nothing it writes after the cut is ever acknowledged.
* Silence on both nets until the timeout, the switch still answering: `peer_silent` decides.
  `takeover` exits 5 (DRBD marks the peer Outdated and goes on): right when the peer is dead,
  and safe when it only hangs, because a Primary that resumes finds its own I/O frozen and this
  node Primary. Its cost: if both links fail while both nodes live and both still reach the
  switch, both take the VMs (a split brain). `freeze` exits 1: never two writers, but a dead
  peer's VMs wait for the operator.
* Before `peer_silent`, a witness and power fencing decide where configured. Without the
  witness's lease (the peer holds it, or the witness is silent too) exit 1, and a Primary here
  stands down: the peer, holding the lease, takes the VMs. With the lease, or without a witness,
  power fencing switches the peer off (kisscluster.heartbeat.power) and exits 7 once that is
  confirmed; while it is not, exit 1.

Inside a live migration's window (kisscluster.migration, both sides Primary): a side whose qemu
holds no guest and hears PRIMARY does not stand down, since it wrote nothing; the peer, which
holds the guest, asks it to give way (kisscluster.heartbeat.outdate). A side that goes on (exit
3, 4, 5 or 7) ends the window there once this handler returned (migration.node go-on).
"""

import contextlib
import ipaddress
import logging
import os
import secrets
import selectors
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from kisscluster import names
from kisscluster.heartbeat import outdate, power, status
from kisscluster.heartbeat.config import Config, load, read_secret
from kisscluster.heartbeat.identity import IP_FREEBIND, IPV6_FREEBIND, Identity, identify

log = logging.getLogger("kissclusterd")

RESEND = 0.5  # seconds between two rounds of requests
PEER_UNREACHABLE = 5
FENCED = 7
FAILED = 1
# The exit codes with which DRBD goes on here without the peer (drbd.conf(5)): in a migration's
# window, this side then ends the window (kisscluster.migration.node go-on).
GOES_ON = (int(outdate.Answer.INCONSISTENT), int(outdate.Answer.OUTDATED), PEER_UNREACHABLE, FENCED)
# Seconds member 2 waits before it powers a silent peer off when there is no witness: if both
# links fail between two live nodes, member 1's power-off wins instead of each killing the other.
SECOND_MEMBER_FENCE_DELAY = 10.0


def _socket(address: outdate.Address) -> socket.socket:
    v4 = address.version == 4
    sock = socket.socket(socket.AF_INET if v4 else socket.AF_INET6, socket.SOCK_DGRAM)
    level = socket.IPPROTO_IP if v4 else socket.IPPROTO_IPV6
    sock.setsockopt(level, IP_FREEBIND if v4 else IPV6_FREEBIND, 1)
    sock.bind((str(address), 0))
    sock.setblocking(False)
    return sock


# Six parameters: the daemon's config, secret and identity, what to ask, and how to tell the peer
# lives.
def ask_peer(
    config: Config,
    secret: bytes,
    identity: Identity,
    resource: str,
    alive: Callable[[], bool],
    magic: bytes = outdate.REQUEST_MAGIC,
) -> tuple[outdate.Answer | None, bool]:
    """Ask the peer to outdate `resource` (or, with CONNECT_MAGIC, to reconnect to it) until it
    gives a final answer, or it is silent for fence_timeout, or fence_patience runs out on a
    peer known to live: one that answers "retry", or that this node's daemon still hears
    (`alive`), may just be slow to answer. Returns (final answer or None, whether the peer is
    known to live)."""
    clock = time.monotonic
    nonce = secrets.token_bytes(16)
    sockets = {net: _socket(identity.own[net]) for net in identity.own}
    heard = False
    try:
        with selectors.DefaultSelector() as selector:
            for net, sock in sockets.items():
                selector.register(sock, selectors.EVENT_READ, net)
            began = clock()
            deadline = began + config.fence_timeout
            patience = began + config.fence_patience
            next_send = began
            while clock() < deadline or (not heard and clock() < patience and alive()):
                if clock() >= next_send:
                    for net, sock in sockets.items():
                        request = outdate.Request(identity.own[net], time.time(), nonce, resource)
                        with contextlib.suppress(OSError):
                            sock.sendto(
                                outdate.encode_request(request, secret, magic),
                                (str(identity.peer[net]), config.port),
                            )
                    next_send = clock() + RESEND
                wait = max(0.0, next_send - clock())
                for key, _ in selector.select(wait):
                    reply = _reply(key.fileobj, identity.peer[key.data], secret, nonce)
                    if reply is None:
                        continue
                    heard = True
                    if reply.answer != outdate.Answer.RETRY:
                        return reply.answer, heard
                    # It lives: wait for its DRBD to notice, however slow its answers come.
                    deadline = max(deadline, patience)
    finally:
        for sock in sockets.values():
            sock.close()
    return None, heard


def _reply(
    sock: object, peer: outdate.Address, secret: bytes, nonce: bytes
) -> outdate.Reply | None:
    assert isinstance(sock, socket.socket)
    try:
        datagram, source = sock.recvfrom(outdate.REPLY_SIZE + 1)
        reply = outdate.decode_reply(datagram, secret)
    except (OSError, outdate.BadMessage) as exc:
        log.warning("fence-peer: ignored a datagram: %s", exc)
        return None
    sender = ipaddress.ip_address(source[0].split("%")[0])
    if reply.nonce != nonce or reply.sender != peer or sender != peer:
        log.warning("fence-peer: ignored a reply from %s not to this request", source[0])
        return None
    return reply


def is_primary(drbdadm: str, resource: str) -> bool:
    return "Primary" in outdate.read_copy(drbdadm, resource).roles


def exit_code(
    answer: outdate.Answer | None,
    heard: bool,
    peer_silent: str,
    primary_here: bool,
    switch_lost: bool = False,
    lease: bool | None = None,
    fenced: bool | None = None,
) -> tuple[int, str]:
    """The handler's exit code for what the peer answered, and why (pure). `lease`: whether
    this node holds the witness's lease (None: no witness); `fenced`: whether power fencing
    confirmed the peer off (None: no power fencing)."""
    if answer is not None:
        if answer == outdate.Answer.PRIMARY and primary_here:
            return answer, (
                "the peer is Primary too, or holds newer writes: I/O stays frozen and this node "
                "stands down"
            )
        return answer, f"the peer answered {answer.name.lower()}"
    if heard:
        return FAILED, "the peer answers but cannot outdate yet: I/O stays frozen"
    if switch_lost:
        then = "stands down" if primary_here else "promotes nothing"
        return FAILED, f"the peer and the switch are silent: this node is cut off and {then}"
    if lease is False:
        then = "stands down" if primary_here else "promotes nothing"
        return FAILED, f"the peer is silent and the witness's lease is not ours: this node {then}"
    if fenced is not None:
        if fenced:
            return FENCED, "the peer is silent on both nets and was powered off"
        return FAILED, "the peer is silent and could not be powered off: I/O stays frozen"
    if peer_silent == "takeover":
        return PEER_UNREACHABLE, "the peer is silent on both nets: taken for dead (peer_silent)"
    return FAILED, "the peer is silent on both nets: I/O stays frozen (peer_silent = freeze)"


def daemon_hears_peer(run_dir: Path, dead_time: float) -> bool:
    """Whether this node's kissclusterd got a heartbeat from the peer within the dead time."""
    try:
        ages = status.read(run_dir)["heartbeat_age"].values()
    except (OSError, ValueError, KeyError):
        return False
    return any(age is not None and age < dead_time for age in ages)


def switch_lost(run_dir: Path, dead_time: float) -> bool:
    """Whether this node's kissclusterd has had no reply from the switch for the dead time (since
    it started, if never). False when it cannot tell (no status or a stale one): the switch is
    not taken for lost on no evidence."""
    try:
        published = status.read(run_dir)
    except (OSError, ValueError, KeyError):
        return False
    silent_for = published.get("switch_silent_for")
    return not published["stale"] and silent_for is not None and silent_for >= dead_time


def fence_peer(config_path: Path, run_dir: Path = status.DEFAULT_RUN_DIR) -> int:
    resource = names.validate_vm_name(os.environ.get("DRBD_RESOURCE", ""))
    config = load(config_path)
    secret = read_secret(config.secret_file)
    identity = identify(config)
    began = time.monotonic()

    def alive() -> bool:
        return daemon_hears_peer(run_dir, config.rules.dead_time)

    marked, no_guest_here = migration_window(resource)
    answer, heard = ask_peer(config, secret, identity, resource, alive)
    heard = heard or alive()
    primary_here = is_primary(config.drbdadm, resource)
    silent = answer is None and not heard
    cut_off = silent and switch_lost(run_dir, config.rules.dead_time)
    lease = holds_lease(run_dir) if silent and config.witness else None
    fenced = None
    if silent and not cut_off and lease is not False and peer_device(config, identity):
        fenced = fence_silent_peer(config, identity, run_dir)
    code, why = exit_code(answer, heard, config.peer_silent, primary_here, cut_off, lease, fenced)
    log.warning(
        "fence-peer %s: exit %d after %.1f s: %s", resource, code, time.monotonic() - began, why
    )
    window = (marked, no_guest_here)
    for job in jobs_after(code, answer, primary_here, cut_off, lease, window):
        start_outside_handler(job, resource)
    return code


# Six parameters: the handler's exit code, what decided it, and the migration window here.
def jobs_after(
    code: int,
    answer: outdate.Answer | None,
    primary_here: bool,
    cut_off: bool,
    lease: bool | None,
    window: tuple[bool, bool],
) -> list[str]:
    """What runs once the handler returned (OUTSIDE_JOBS), in order (pure). `window`: whether
    a migration is marked here, and whether no qemu here holds its guest."""
    marked, no_guest_here = window
    jobs = []
    # In a migration's window the peer that holds the guest asks this side, which holds none
    # and wrote nothing, to give way (outdate.answer_request): no stand-down, no full resync.
    gives_way = no_guest_here and answer == outdate.Answer.PRIMARY
    stands_down = answer == outdate.Answer.PRIMARY or cut_off or lease is False
    if primary_here and stands_down and not gives_way:
        jobs.append("stand-down")
    if marked and code in GOES_ON:
        jobs.append("go-on")
    return jobs


def migration_window(resource: str) -> tuple[bool, bool]:
    """Whether kiss-migrate marked `resource` here (kisscluster.migration.node), and if so
    whether no qemu here holds its guest."""
    if not (outdate.RUN_DIR / f"{resource}.migration").exists():
        return False, False
    # Only inside a window: migration.node's imports would double the handler's start-up.
    from kisscluster.migration import node as migration

    return True, outdate.yields_in_migration(True, migration.qemu_status(resource))


def holds_lease(run_dir: Path) -> bool:
    """Whether this node's kissclusterd holds the witness's lease now (False if unknown)."""
    try:
        published = status.read(run_dir)
    except (OSError, ValueError, KeyError):
        return False
    return not published["stale"] and (published.get("lease_left") or 0) > 0


def peer_device(config: Config, identity: Identity) -> power.Device | None:
    return config.fence[1 - identity.index]


def fence_silent_peer(config: Config, identity: Identity, run_dir: Path) -> bool:
    """Power the silent peer off (kisscluster.heartbeat.power), retrying while it stays
    silent: True once confirmed off, False if it spoke again first."""
    device = peer_device(config, identity)
    assert device is not None
    dead_time = config.rules.dead_time
    if identity.index == 1 and config.witness is None:
        log.warning("power fencing: member 2 waits %.0f s first", SECOND_MEMBER_FENCE_DELAY)
        time.sleep(SECOND_MEMBER_FENCE_DELAY)
    try:
        heard = [t for t in status.read(run_dir)["last_heartbeat"].values() if t is not None]
    except (OSError, ValueError, KeyError):
        heard = []
    # Not knowing when the peer was last heard, no earlier power-off counts for this silence.
    silent_since = max(heard, default=time.time())
    return power.fence_until_done(
        lambda: power.fence(device, config.fence_secret_file, run_dir, silent_since),
        lambda: not daemon_hears_peer(run_dir, dead_time),
    )


def fence_then_act(config_path: Path, run_dir: Path, argv: list[str]) -> int:
    """The daemon's takeover of a silent peer's VMs with power fencing: the peer first, then
    the action (`argv`), which never runs unless the peer is confirmed off."""
    config = load(config_path)
    identity = identify(config)
    if not fence_silent_peer(config, identity, run_dir):
        log.warning("power fencing: the peer speaks again; its VMs are not taken over")
        return FAILED
    return subprocess.run(argv, stdin=subprocess.DEVNULL, check=False).returncode


OUTSIDE_JOBS = {  # job -> the module that runs it, with the job as its command
    "stand-down": "kisscluster.heartbeat.cli",
    "go-on": "kisscluster.migration.node",
}


def start_outside_handler(what: str, resource: str) -> None:
    """The job `what` (OUTSIDE_JOBS) for `resource` as a transient unit, outside DRBD's
    handler: it needs this handler to have returned (DRBD holds the resource's I/O until
    then)."""
    argv = [
        "systemd-run", "--no-block", "--collect", f"--unit=kiss-{what}-{resource}",
        sys.executable, "-m", OUTSIDE_JOBS[what], what, resource,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        log.error("cannot start the %s of %s: %s", what, resource, done.stderr.strip())


def stand_down(config_path: Path, resource: str) -> int:
    """This node was Primary while the peer took the resource over: make sure the guest here
    never sees another write acknowledged, and turn this copy into the peer's sync target.

    The guest's qemu is killed first, while DRBD still holds its I/O frozen. DRBD is then cut
    off from the peer (nothing frozen is resent into the peer's newer data) and from its disk
    (a force-detach: from here on this side holds no data), and only then are the frozen
    requests released, failing, to the dead process. Once demoted, the copy is given fresh
    metadata, so that it comes back as a new disk: a full resync from the peer, which also
    overwrites whatever this side wrote that the peer never got.
    """
    resource = names.validate_vm_name(resource)
    drbdadm = load(config_path).drbdadm
    unit = f"vm@{resource}.service"
    for argv in (
        ["systemctl", "kill", "--signal=SIGKILL", unit],
        ["systemctl", "stop", "--no-block", unit],
        [drbdadm, "disconnect", resource],
        [drbdadm, "detach", "--force", resource],
        [drbdadm, "resume-io", resource],
    ):
        _step(argv)
    _until_ok([drbdadm, "secondary", resource], timeout=60)
    for argv in (
        ["systemctl", "stop", f"drbd-resource@{resource}.service"],
        [drbdadm, "down", resource],
        [drbdadm, "--force", "create-md", resource],
        [drbdadm, "up", resource],
    ):
        _step(argv)
    ask_peer_to_connect(config_path, resource)
    log.warning("stand-down %s: done; this copy resyncs in full from the peer", resource)
    return 0


def ask_peer_to_connect(config_path: Path, resource: str) -> None:
    """The peer's DRBD may have dropped the connection for good (StandAlone) when this node
    first came back as Primary: ask it to connect to this copy, which now has fresh metadata."""
    config = load(config_path)
    answer, _ = ask_peer(
        config, read_secret(config.secret_file), identify(config), resource, lambda: False,
        outdate.CONNECT_MAGIC,
    )  # fmt: skip
    said = "no answer" if answer is None else answer.name.lower()
    log.warning("stand-down %s: asked the peer to connect: %s", resource, said)


def _step(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"
    log.warning("stand-down: %s: %s", " ".join(argv), outcome)


def _until_ok(argv: list[str], timeout: float) -> None:
    """Retry `argv` until it works: the killed qemu lets go of the device once its I/O ended."""
    deadline = time.monotonic() + timeout
    while True:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode == 0 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    outcome = "ok" if done.returncode == 0 else f"exit {done.returncode}: {done.stderr.strip()}"
    log.warning("stand-down: %s: %s", " ".join(argv), outcome)


EVENTS = {
    "split-brain": "DRBD split brain on {resource} (minor {minor}, peer {peer}): both copies "
    "changed while apart and DRBD disconnected; `kiss-split-brain {resource}` on either node "
    "shows both sides, and `kiss-split-brain {resource} --discard NODE` resolves it",
    "local-io-error": "DRBD {resource} (minor {minor}): I/O error on the local disk, detached; "
    "the resource is served from the peer",
    "after-resync-target": "DRBD {resource} (minor {minor}): resync done, this copy is UpToDate",
}


def notify(event: str, mail: str | None) -> int:
    """A DRBD event in the journal, and by mail to `mail` if given and `mail` is installed."""
    fields = {key: os.environ.get(f"DRBD_{key.upper()}", "?") for key in ("resource", "minor")}
    text = EVENTS[event].format(peer=os.environ.get("DRBD_PEER_ADDRESS", "?"), **fields)
    log.log(logging.INFO if event == "after-resync-target" else logging.ERROR, "%s", text)
    if mail:
        program = shutil.which("mail")
        if program is None:
            log.error("no `mail` program: %s not told by mail", mail)
            return 0
        subprocess.run(
            [program, "-s", f"kisscluster: {event} on {fields['resource']}", "--", mail],
            input=text + "\n",
            text=True,
            timeout=60,
            check=False,
        )
    return 0
