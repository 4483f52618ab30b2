"""Heartbeat datagrams: layout, HMAC-SHA256 authentication and the acceptance checks.

A heartbeat is 87 bytes, network byte order:

    magic      4  b"KCHB"
    version    1  1
    sender    16  the sender's address on this net (IPv4 as IPv4-mapped IPv6)
    priority   2  the sender's current priority
    timestamp  8  the sender's wall clock (float seconds since the epoch)
    boot_id   16  the sender's kernel boot id (/proc/sys/kernel/random/boot_id)
    sequence   8  the sender's monotonic clock in ns: grows for the whole boot, across restarts
    mac       32  HMAC-SHA256(secret, all of the above)

A receiver drops (and counts, by reason) anything malformed, unauthenticated, from the wrong
sender, with a priority out of range, outside the time window, or replayed: per sender address,
the (boot_id, sequence) must be newer than the last accepted one; a new boot_id is accepted only
with a timestamp newer than the last accepted packet's.
"""

import hashlib
import hmac
import ipaddress
import struct
from dataclasses import dataclass

MAGIC = b"KCHB"
VERSION = 1
_BODY = struct.Struct("!4sB16sHd16sQ")
MAC_SIZE = hashlib.sha256().digest_size
SIZE = _BODY.size + MAC_SIZE

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

# Reasons a datagram is dropped (also the keys of the status counters).
MALFORMED = "malformed"
UNAUTHENTICATED = "unauthenticated"
WRONG_SENDER = "wrong-sender"
BAD_PRIORITY = "priority-out-of-range"
OUT_OF_WINDOW = "outside-time-window"
REPLAYED = "replayed"


@dataclass(frozen=True)
class Heartbeat:
    sender: Address
    priority: int
    timestamp: float
    boot_id: bytes
    sequence: int


class Dropped(Exception):
    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def packed_address(address: Address) -> bytes:
    """16 bytes on the wire: an IPv6 address, or an IPv4 one mapped into IPv6."""
    if isinstance(address, ipaddress.IPv4Address):
        return ipaddress.IPv6Address(b"\0" * 10 + b"\xff\xff" + address.packed).packed
    return address.packed


def unpacked_address(raw: bytes) -> Address:
    address = ipaddress.IPv6Address(raw)
    return address.ipv4_mapped or address


def encode(heartbeat: Heartbeat, secret: bytes) -> bytes:
    body = _BODY.pack(
        MAGIC,
        VERSION,
        packed_address(heartbeat.sender),
        heartbeat.priority,
        heartbeat.timestamp,
        heartbeat.boot_id,
        heartbeat.sequence,
    )
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def decode(datagram: bytes, secret: bytes) -> Heartbeat:
    """Check layout and MAC (in constant time); raise Dropped on any failure."""
    if len(datagram) != SIZE:
        raise Dropped(MALFORMED, f"{len(datagram)} bytes, expected {SIZE}")
    body, mac = datagram[: _BODY.size], datagram[_BODY.size :]
    magic, version, sender, priority, timestamp, boot_id, sequence = _BODY.unpack(body)
    if magic != MAGIC:
        raise Dropped(MALFORMED, f"bad magic {magic!r}")
    if version != VERSION:
        raise Dropped(MALFORMED, f"protocol version {version}, this daemon speaks {VERSION}")
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        raise Dropped(UNAUTHENTICATED, "HMAC does not match (wrong secret or tampered)")
    if timestamp != timestamp:  # NaN
        raise Dropped(MALFORMED, "timestamp is not a number")
    return Heartbeat(unpacked_address(sender), priority, timestamp, boot_id, sequence)


@dataclass
class Receiver:
    """The acceptance checks for the heartbeats of one net, with the replay memory."""

    peer: Address
    max_priority: int
    window: float  # seconds a timestamp may differ from our wall clock
    last: tuple[bytes, int, float] | None = None  # (boot_id, sequence, timestamp) accepted

    def accept(self, datagram: bytes, source: Address, secret: bytes, wall: float) -> Heartbeat:
        heartbeat = decode(datagram, secret)
        if heartbeat.sender != self.peer or source != self.peer:
            raise Dropped(
                WRONG_SENDER,
                f"claims {heartbeat.sender}, sent from {source}, expected {self.peer}",
            )
        if not 0 <= heartbeat.priority <= self.max_priority:
            raise Dropped(BAD_PRIORITY, f"priority {heartbeat.priority} > {self.max_priority}")
        skew = heartbeat.timestamp - wall
        if abs(skew) > self.window:
            raise Dropped(
                OUT_OF_WINDOW, f"timestamp {skew:+.3f} s from our clock (window {self.window} s)"
            )
        if self.last is not None:
            boot_id, sequence, timestamp = self.last
            if heartbeat.boot_id == boot_id and heartbeat.sequence <= sequence:
                raise Dropped(REPLAYED, f"sequence {heartbeat.sequence} <= {sequence}")
            if heartbeat.boot_id != boot_id and heartbeat.timestamp <= timestamp:
                raise Dropped(REPLAYED, "older packet of a previous boot")
        self.last = (heartbeat.boot_id, heartbeat.sequence, heartbeat.timestamp)
        return heartbeat
