"""Outdate requests: how a node's DRBD fence-peer handler asks the peer's kissclusterd to mark
its copy of a resource Outdated (the idea of Linux-HA's dopd), and what the peer answers.

Both travel as UDP datagrams on both nets, to and from kissclusterd's heartbeat port, with the
heartbeat's shared secret:

    request  magic b"KCOQ", version, sender (16), timestamp (8), nonce (16), resource (64), mac
    reply    magic b"KCOA", version, sender (16), timestamp (8), nonce (16), answer (1), mac

A connect request (magic b"KCOC", else like a request) comes from a node that stood down: it
gave its copy fresh metadata, and the peer, whose DRBD may have dropped the connection for good
(StandAlone) when the resumed node first came back as Primary, reconnects so that the copy
resyncs. Connecting never overrides DRBD's own judgement of the two copies.

The nonce ties a reply to its request; a request is acted on once per nonce (it is sent on
both nets and repeated until answered) and only within the time window. The answers are the
exit codes DRBD 8.4 gives meaning to (drbd.conf(5), `conn_try_outdate_peer`): the handler
exits with the answer it got. RETRY means "not now" (DRBD here still sees the peer connected,
or the outdate failed): the handler asks again until its timeout.

Inside a live migration's dual-primary window (kisscluster.migration: both nodes Primary, the
VM marked as migrating) a lost link makes both sides ask. The side whose qemu does not hold the
guest (the target before the switch-over, the source after it) gives way: its qemu quits, its
copy goes Secondary and is outdated, and it undoes its own part of the migration, which
kiss-migrate cannot reach any more; the side that runs the guest answers PRIMARY as usual, and
its fence-peer handler ends the window there (kisscluster.heartbeat.fence).
"""

import enum
import hashlib
import hmac
import struct
import subprocess
from dataclasses import dataclass

from kisscluster import drbd, names
from kisscluster.heartbeat.protocol import Address, packed_address, unpacked_address
from kisscluster.unitctl import NO_GUEST_HERE
from kisscluster.vmmonitor import RUN_DIR

REQUEST_MAGIC = b"KCOQ"
CONNECT_MAGIC = b"KCOC"
REPLY_MAGIC = b"KCOA"
VERSION = 1
RESOURCE_BYTES = 64
_REQUEST = struct.Struct(f"!4sB16sd16s{RESOURCE_BYTES}s")
_REPLY = struct.Struct("!4sB16sd16sB")
MAC_SIZE = hashlib.sha256().digest_size
REQUEST_SIZE = _REQUEST.size + MAC_SIZE
REPLY_SIZE = _REPLY.size + MAC_SIZE


class Answer(enum.IntEnum):
    RETRY = 0
    CONNECTING = 2  # to a connect request: DRBD here is (again) waiting for the peer
    INCONSISTENT = 3  # the peer's copy is Inconsistent or worse: it cannot be promoted anyway
    OUTDATED = 4  # the peer's copy is now (or already was) Outdated
    PRIMARY = 6  # the peer is Primary: the asking side must not be


STAND_ASIDE_WAIT = 20.0  # seconds for this side of a live migration to let go of its copy


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    sender: Address
    timestamp: float
    nonce: bytes
    resource: str


@dataclass(frozen=True)
class Reply:
    sender: Address
    timestamp: float
    nonce: bytes
    answer: Answer


def _sign(body: bytes, secret: bytes) -> bytes:
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def _verified(datagram: bytes, size: int, magic: bytes, secret: bytes) -> bytes:
    if len(datagram) != size or datagram[:4] != magic:
        raise BadMessage(f"not a {magic.decode()} datagram of {size} bytes")
    body, mac = datagram[:-MAC_SIZE], datagram[-MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        raise BadMessage("HMAC does not match (wrong secret or tampered)")
    if body[4] != VERSION:
        raise BadMessage(f"protocol version {body[4]}, this side speaks {VERSION}")
    return body


def encode_request(request: Request, secret: bytes, magic: bytes = REQUEST_MAGIC) -> bytes:
    resource = names.validate_vm_name(request.resource).encode()
    return _sign(
        _REQUEST.pack(
            magic,
            VERSION,
            packed_address(request.sender),
            request.timestamp,
            request.nonce,
            resource,
        ),
        secret,
    )


def decode_request(datagram: bytes, secret: bytes, magic: bytes = REQUEST_MAGIC) -> Request:
    body = _verified(datagram, REQUEST_SIZE, magic, secret)
    _, _, sender, timestamp, nonce, raw = _REQUEST.unpack(body)
    try:
        resource = names.validate_vm_name(raw.rstrip(b"\0").decode("ascii"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadMessage(f"bad resource name: {exc}") from None
    return Request(unpacked_address(sender), timestamp, nonce, resource)


def encode_reply(reply: Reply, secret: bytes) -> bytes:
    return _sign(
        _REPLY.pack(
            REPLY_MAGIC,
            VERSION,
            packed_address(reply.sender),
            reply.timestamp,
            reply.nonce,
            reply.answer,
        ),
        secret,
    )


def decode_reply(datagram: bytes, secret: bytes) -> Reply:
    body = _verified(datagram, REPLY_SIZE, REPLY_MAGIC, secret)
    _, _, sender, timestamp, nonce, answer = _REPLY.unpack(body)
    try:
        return Reply(unpacked_address(sender), timestamp, nonce, Answer(answer))
    except ValueError:
        raise BadMessage(f"unknown answer {answer}") from None


# -- the answering side ------------------------------------------------------------------------
# Connection states in which DRBD here does not see the peer ("Unconfigured": the resource is
# down, and `drbdadm outdate` writes the metadata directly).
DISCONNECTED = ("StandAlone", "WFConnection", "Unconnected", "Unconfigured")


@dataclass(frozen=True)
class LocalCopy:
    """What DRBD here says about one resource: per volume role, connection and disk state, and
    whether any volume holds writes the peer has not seen (`ahead`: DRBD keeps a bitmap UUID
    from the moment a Primary here lost the peer until the next resync). Empty lists: the
    resource is not up here."""

    roles: tuple[str, ...]
    connections: tuple[str, ...]
    disks: tuple[str, ...]
    ahead: bool = False


def decide(copy: LocalCopy) -> Answer | None:
    """The answer that needs no action, or None: run `drbdadm outdate` and answer OUTDATED."""
    if "Primary" in copy.roles:
        return Answer.PRIMARY
    if any(c not in DISCONNECTED for c in copy.connections):
        # DRBD here still sees the peer (or is just connecting): an outdate would be refused,
        # and the asking side's view of a lost link is not ours yet.
        return Answer.RETRY
    if copy.ahead and "UpToDate" in copy.disks:
        # Primary here since the link went, then demoted (a failback to a node that resumed
        # from a hang): this copy is newer than the asking side's, which must stand down.
        return Answer.PRIMARY
    if copy.disks and all(d == "Outdated" for d in copy.disks):
        return Answer.OUTDATED
    if any(d in ("Inconsistent", "Diskless", "Failed", "Attaching", "Negotiating")
           for d in copy.disks):  # fmt: skip
        return Answer.INCONSISTENT
    return None


def _lines(drbdadm: str, command: str, resource: str) -> tuple[str, ...] | None:
    done = subprocess.run(
        [drbdadm, command, resource], capture_output=True, text=True, timeout=30, check=False
    )
    if done.returncode != 0:
        return None
    return tuple(line.split("/")[0].strip() for line in done.stdout.split())


def bitmap_uuid_set(generation_ids: tuple[str, ...]) -> bool:
    """Whether any volume's bitmap UUID (the second field of each `drbdadm get-gi` line,
    `current:bitmap:history1:history2:...`) is set."""
    fields = [line.split(":") for line in generation_ids]
    return any(len(f) > 1 and f[1].strip("0") != "" for f in fields)


def read_copy(drbdadm: str, resource: str) -> LocalCopy:
    roles = _lines(drbdadm, "role", resource)
    connections = _lines(drbdadm, "cstate", resource)
    disks = _lines(drbdadm, "dstate", resource)
    if roles is None or connections is None or disks is None:
        return LocalCopy((), (), ())
    generation_ids = _lines(drbdadm, "get-gi", resource)
    ahead = generation_ids is not None and bitmap_uuid_set(generation_ids)
    return LocalCopy(roles, connections, disks, ahead)


def _drbdadm(drbdadm: str, command: str, resource: str) -> str | None:
    """Run `drbdadm COMMAND RESOURCE` for the peer; None if it worked, else drbdadm's message."""
    done = subprocess.run(
        [drbdadm, command, resource], capture_output=True, text=True, timeout=60, check=False
    )
    return None if done.returncode == 0 else drbd.error_line(done.stderr)


def yields_in_migration(marked: bool, qemu_status: str | None) -> bool:
    """Whether this side of a live migration's dual-primary window gives way when the peer asks
    it to outdate: only if no qemu here holds the guest. Before the switch-over the target's
    qemu only waits for the guest (`inmigrate`), after it the source's holds none
    (`postmigrate`): that side writes nothing and stands aside, so the side that runs the guest
    goes on. In every other state (running, paused, in the migration's last phase, a qemu that
    does not answer) the guest is, or may be, here."""
    return marked and (qemu_status is None or qemu_status in NO_GUEST_HERE)


def _stand_aside(resource: str) -> str | None:
    """Inside a migration's window: this side gives way unless its qemu holds the guest
    (kisscluster.migration.node.give_way); why it could not, or None."""
    # Imported here, not at the top: the fence-peer handler imports this module while DRBD
    # holds I/O frozen, and migration.node's imports would double its start-up.
    from kisscluster.migration import node as migration

    if not yields_in_migration(True, migration.qemu_status(resource)):
        return None
    try:
        migration.give_way(resource, wait=STAND_ASIDE_WAIT)
    except (OSError, ValueError, KeyError, TimeoutError, subprocess.SubprocessError) as exc:
        return str(exc)
    return None


def answer_request(drbdadm: str, resource: str) -> tuple[Answer, str]:
    """Act on an outdate request for `resource`: the answer and a line for the journal."""
    resource = names.validate_vm_name(resource)
    if (RUN_DIR / f"{resource}.migration").exists():
        failed = _stand_aside(resource)
        if failed is not None:
            return Answer.RETRY, f"{resource}: standing aside in a live migration: {failed}"
    copy = read_copy(drbdadm, resource)
    answer = decide(copy)
    if answer is not None:
        ahead = ", ahead of the peer" if copy.ahead else ""
        return (
            answer,
            f"{resource}: {answer.name.lower()} (roles {copy.roles}, {copy.disks}{ahead})",
        )
    failed = _drbdadm(drbdadm, "outdate", resource)
    if failed is None:
        return Answer.OUTDATED, f"{resource}: outdated on the peer's request"
    return Answer.RETRY, f"{resource}: drbdadm outdate failed: {failed}"


def answer_connect(drbdadm: str, resource: str) -> tuple[Answer, str]:
    """Act on a connect request: `drbdadm connect` a resource DRBD left StandAlone here."""
    resource = names.validate_vm_name(resource)
    copy = read_copy(drbdadm, resource)
    if "StandAlone" not in copy.connections:
        return (
            Answer.CONNECTING,
            f"{resource}: connect request, not StandAlone here {copy.connections}",
        )
    failed = _drbdadm(drbdadm, "connect", resource)
    if failed is None:
        return Answer.CONNECTING, f"{resource}: reconnected on the peer's request (it stood down)"
    return Answer.RETRY, f"{resource}: drbdadm connect failed: {failed}"
