"""Heartbeat datagrams: round trip and every reason to drop one."""

import ipaddress
import struct

import pytest

from kisscluster.heartbeat import protocol
from kisscluster.heartbeat.protocol import Dropped, Heartbeat, Receiver

pytestmark = pytest.mark.fast

SECRET = b"0123456789abcdef-shared"
PEER = ipaddress.ip_address("10.99.0.2")
BOOT = bytes(range(16))
NOW = 1_800_000_000.0


def packet(sequence=1, priority=100, timestamp=NOW, sender=PEER, boot=BOOT, secret=SECRET):
    return protocol.encode(Heartbeat(sender, priority, timestamp, boot, sequence), secret)


def receiver():
    return Receiver(PEER, max_priority=100, window=3.0)


def reason(datagram, source=PEER, wall=NOW, into=None):
    with pytest.raises(Dropped) as caught:
        (into or receiver()).accept(datagram, source, SECRET, wall)
    return caught.value.reason


def test_round_trip_ipv4_and_ipv6():
    heartbeat = receiver().accept(packet(sequence=7, priority=90), PEER, SECRET, NOW)
    assert (heartbeat.sender, heartbeat.priority, heartbeat.sequence) == (PEER, 90, 7)
    v6 = ipaddress.ip_address("fd00::2")
    data = protocol.encode(Heartbeat(v6, 100, NOW, BOOT, 1), SECRET)
    assert Receiver(v6, 100, 3.0).accept(data, v6, SECRET, NOW).sender == v6
    assert len(data) == protocol.SIZE == 87


@pytest.mark.parametrize(
    "datagram",
    [b"", b"garbage", packet()[:-1], packet() + b"x", b"XXXX" + packet()[4:]],
)
def test_malformed(datagram):
    assert reason(datagram) == protocol.MALFORMED


def test_other_protocol_version_is_malformed():
    data = bytearray(packet())
    data[4] = 2
    assert reason(bytes(data)) == protocol.MALFORMED


def test_wrong_secret_and_tampering_are_unauthenticated():
    assert reason(packet(secret=b"another-secret-of-16")) == protocol.UNAUTHENTICATED
    data = bytearray(packet(priority=100))
    struct.pack_into("!H", data, 21, 0)  # rewrite the priority in flight
    assert reason(bytes(data)) == protocol.UNAUTHENTICATED


def test_wrong_sender_claimed_or_actual():
    other = ipaddress.ip_address("10.99.0.3")
    assert reason(packet(sender=other), source=other) == protocol.WRONG_SENDER
    assert reason(packet(), source=other) == protocol.WRONG_SENDER
    assert reason(packet(sender=other)) == protocol.WRONG_SENDER


def test_priority_out_of_range():
    assert reason(packet(priority=101)) == protocol.BAD_PRIORITY


@pytest.mark.parametrize("offset", [-3.01, 3.01, -3600.0])
def test_outside_time_window(offset):
    assert reason(packet(timestamp=NOW + offset)) == protocol.OUT_OF_WINDOW


def test_nan_timestamp_is_malformed():
    assert reason(packet(timestamp=float("nan"))) == protocol.MALFORMED


def test_replays_and_older_sequences_dropped():
    accepting = receiver()
    first, second = packet(sequence=10), packet(sequence=11)
    accepting.accept(first, PEER, SECRET, NOW)
    accepting.accept(second, PEER, SECRET, NOW)
    assert reason(second, into=accepting) == protocol.REPLAYED
    assert reason(first, into=accepting) == protocol.REPLAYED
    accepting.accept(packet(sequence=12), PEER, SECRET, NOW)


def test_new_boot_accepted_only_with_a_newer_timestamp():
    accepting = receiver()
    accepting.accept(packet(sequence=10**12, timestamp=NOW), PEER, SECRET, NOW)
    rebooted = bytes(16)
    assert (
        reason(packet(sequence=5, timestamp=NOW - 1, boot=rebooted), into=accepting)
        == protocol.REPLAYED
    )
    accepting.accept(packet(sequence=5, timestamp=NOW + 1, boot=rebooted), PEER, SECRET, NOW)
    # and the old boot's packets are now replays
    old = packet(sequence=10**12 + 1, timestamp=NOW + 0.5)
    assert reason(old, into=accepting) == protocol.REPLAYED
