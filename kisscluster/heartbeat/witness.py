"""The witness: a third host that gives one node at a time a lease, so that when the two nodes
lose each other on both nets the one holding the lease keeps or takes the VMs and the other
gives them up.

`kissclusterd witness` runs on any third host on the production network (nothing else of
kisscluster is used there) with the cluster's heartbeat secret. Each node's kissclusterd keeps
one TCP connection to it and asks once per interval:

    request  magic b"KCWQ", version, member (1: 0 or 1), lease (4: ms asked for),
             timestamp (8: the asker's wall clock), nonce (16), mac (32)
    reply    magic b"KCWA", version, holder (1: member, 255 none), remaining (4: ms),
             nonce (16: the request's), mac (32)

The MACs are HMAC-SHA256 with the shared secret, like the heartbeats'. The lease goes to the
first member that asks while nobody holds it; its holder renews it with every request; it
passes to the other member only once the holder has been silent for the whole lease. A node
counts its lease from the moment it sent the request, never from the reply, so it always
believes it holds the lease for less time than the witness does.
"""

import contextlib
import hashlib
import hmac
import logging
import queue
import secrets
import selectors
import socket
import struct
import threading
import time
from dataclasses import dataclass

log = logging.getLogger("kissclusterd")

REQUEST_MAGIC, REPLY_MAGIC = b"KCWQ", b"KCWA"
VERSION = 1
NOBODY = 255
_REQUEST = struct.Struct("!4sBBId16s")
_REPLY = struct.Struct("!4sBBI16s")
MAC_SIZE = hashlib.sha256().digest_size
REQUEST_SIZE = _REQUEST.size + MAC_SIZE
REPLY_SIZE = _REPLY.size + MAC_SIZE
MAX_LEASE = 60.0  # seconds: a longer lease would keep a dead holder's VMs down for as long
WINDOW = 30.0  # seconds a request's timestamp may differ from the witness's clock


class BadMessage(ValueError):
    pass


@dataclass(frozen=True)
class Request:
    member: int
    lease: float  # seconds
    timestamp: float
    nonce: bytes


@dataclass(frozen=True)
class Reply:
    holder: int | None
    remaining: float  # seconds
    nonce: bytes


def _sign(body: bytes, secret: bytes) -> bytes:
    return body + hmac.new(secret, body, hashlib.sha256).digest()


def _verified(message: bytes, size: int, magic: bytes, secret: bytes) -> bytes:
    if len(message) != size or message[:4] != magic:
        raise BadMessage(f"not a {magic.decode()} message of {size} bytes")
    body, mac = message[:-MAC_SIZE], message[-MAC_SIZE:]
    if not hmac.compare_digest(mac, hmac.new(secret, body, hashlib.sha256).digest()):
        raise BadMessage("HMAC does not match (wrong secret or tampered)")
    if body[4] != VERSION:
        raise BadMessage(f"protocol version {body[4]}, this side speaks {VERSION}")
    return body


def encode_request(request: Request, secret: bytes) -> bytes:
    body = _REQUEST.pack(
        REQUEST_MAGIC,
        VERSION,
        request.member,
        round(request.lease * 1000),
        request.timestamp,
        request.nonce,
    )
    return _sign(body, secret)


def decode_request(message: bytes, secret: bytes) -> Request:
    _, _, member, lease_ms, timestamp, nonce = _REQUEST.unpack(
        _verified(message, REQUEST_SIZE, REQUEST_MAGIC, secret)
    )
    if member not in (0, 1):
        raise BadMessage(f"member {member} is neither 0 nor 1")
    return Request(member, lease_ms / 1000, timestamp, nonce)


def encode_reply(reply: Reply, secret: bytes) -> bytes:
    holder = NOBODY if reply.holder is None else reply.holder
    body = _REPLY.pack(
        REPLY_MAGIC, VERSION, holder, max(0, round(reply.remaining * 1000)), reply.nonce
    )
    return _sign(body, secret)


def decode_reply(message: bytes, secret: bytes) -> Reply:
    _, _, holder, remaining_ms, nonce = _REPLY.unpack(
        _verified(message, REPLY_SIZE, REPLY_MAGIC, secret)
    )
    return Reply(None if holder == NOBODY else holder, remaining_ms / 1000, nonce)


@dataclass
class LeaseBook:
    """The witness's one decision (pure): who holds the lease, and until when (monotonic)."""

    holder: int | None = None
    expires: float = 0.0

    def ask(self, member: int, lease: float, now: float) -> tuple[int, float]:
        """`member` asks for (or renews) the lease: the holder and its remaining seconds."""
        if self.holder is None or self.holder == member or now >= self.expires:
            if self.holder != member:
                log.warning("witness: the lease goes to member %d", member + 1)
            self.holder, self.expires = member, now + min(lease, MAX_LEASE)
        return self.holder, self.expires - now


class Witness:
    """`kissclusterd witness`: serves the lease over TCP to any number of connections."""

    def __init__(self, listen: tuple[str, int], secret: bytes) -> None:
        self.secret = secret
        self.book = LeaseBook()
        self.seen: dict[bytes, float] = {}  # nonces acted on within the window
        self.selector = selectors.DefaultSelector()
        self.server = socket.create_server(
            listen, family=socket.AF_INET6 if ":" in listen[0] else socket.AF_INET
        )
        self.server.setblocking(False)
        self.selector.register(self.server, selectors.EVENT_READ, None)
        self.buffers: dict[socket.socket, bytes] = {}

    @property
    def address(self) -> tuple[str, int]:
        host, port = self.server.getsockname()[:2]
        return host, port

    def serve(self, stop: threading.Event | None = None) -> None:
        while stop is None or not stop.is_set():
            for key, _ in self.selector.select(timeout=0.5):
                if key.data is None:
                    self._accept()
                else:
                    self._read(key.fileobj)  # type: ignore[arg-type]

    def _accept(self) -> None:
        with contextlib.suppress(BlockingIOError):
            conn, _ = self.server.accept()
            conn.setblocking(False)
            self.buffers[conn] = b""
            self.selector.register(conn, selectors.EVENT_READ, "conn")

    def _close(self, conn: socket.socket) -> None:
        self.selector.unregister(conn)
        self.buffers.pop(conn, None)
        conn.close()

    def _read(self, conn: socket.socket) -> None:
        try:
            data = conn.recv(4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            self._close(conn)
            return
        buffer = self.buffers[conn] + data
        while len(buffer) >= REQUEST_SIZE:
            message, buffer = buffer[:REQUEST_SIZE], buffer[REQUEST_SIZE:]
            reply = self.answer(message, time.monotonic(), time.time())
            if reply is None:  # a connection that speaks nonsense is dropped
                self._close(conn)
                return
            try:
                conn.sendall(reply)
            except OSError:
                self._close(conn)
                return
        self.buffers[conn] = buffer

    def answer(self, message: bytes, mono: float, wall: float) -> bytes | None:
        try:
            request = decode_request(message, self.secret)
        except BadMessage as exc:
            log.warning("witness: dropped a request: %s", exc)
            return None
        self.seen = {n: t for n, t in self.seen.items() if mono - t < 2 * WINDOW}
        if abs(request.timestamp - wall) > WINDOW or request.nonce in self.seen:
            log.warning("witness: dropped a request of member %d (replayed or off our clock)",
                        request.member + 1)  # fmt: skip
            return None
        self.seen[request.nonce] = mono
        holder, remaining = self.book.ask(request.member, request.lease, mono)
        return encode_reply(Reply(holder, remaining, request.nonce), self.secret)


class WitnessClient(threading.Thread):
    """A node's side: asks the witness once per interval over one kept-open connection and
    queues (holds the lease until this monotonic time or None, the holder or None if silent)."""

    def __init__(
        self, member: int, secret: bytes, settings: tuple[tuple[str, int] | None, float, float]
    ) -> None:
        super().__init__(name="witness", daemon=True)
        self.member = member
        self.secret = secret
        self.settings = settings  # (witness address or None, interval, lease); replaced on reload
        self.results: queue.SimpleQueue[tuple[float | None, int | None]] = queue.SimpleQueue()
        self.stop = threading.Event()
        self.wake: socket.socket | None = None
        self._conn: tuple[tuple[str, int], socket.socket] | None = None
        self._complained = False

    def run(self) -> None:
        next_round = time.monotonic()
        while not self.stop.is_set():
            address, interval, lease = self.settings
            if address is not None:
                self.results.put(self.ask(address, interval, lease))
                if self.wake is not None:
                    with contextlib.suppress(OSError):
                        self.wake.send(b"w")
            next_round = max(next_round + interval, time.monotonic())
            self.stop.wait(max(0.0, next_round - time.monotonic()))
        self._disconnect()

    def _disconnect(self) -> None:
        if self._conn is not None:
            self._conn[1].close()
            self._conn = None

    def ask(self, address: tuple[str, int], timeout: float, lease: float):
        """One request: (lease held until, holder) from the reply; (None, None) if silent."""
        sent = time.monotonic()
        nonce = secrets.token_bytes(16)
        request = encode_request(Request(self.member, lease, time.time(), nonce), self.secret)
        try:
            if self._conn is None or self._conn[0] != address:
                self._disconnect()
                self._conn = (address, socket.create_connection(address, timeout=timeout))
            conn = self._conn[1]
            conn.settimeout(max(0.05, timeout - (time.monotonic() - sent)))
            conn.sendall(request)
            raw = b""
            while len(raw) < REPLY_SIZE:
                chunk = conn.recv(REPLY_SIZE - len(raw))
                if not chunk:
                    raise ConnectionError("the witness closed the connection")
                raw += chunk
            reply = decode_reply(raw, self.secret)
            if reply.nonce != nonce:
                raise BadMessage("a reply to another request")
        except (OSError, BadMessage) as exc:
            self._disconnect()
            if not self._complained:
                log.warning("witness %s:%d silent: %s", *address, exc)
                self._complained = True
            return None, None
        if self._complained:
            log.info("witness %s:%d answers again", *address)
            self._complained = False
        if reply.holder == self.member:
            return sent + reply.remaining, reply.holder
        return None, reply.holder
