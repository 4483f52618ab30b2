"""The decision core of kissclusterd: pure rules, no I/O, every input carries its own time.

Inputs are the heartbeats received from the peer on each network (with the priority the peer
announced), the results of the switch pings, and the clock (monotonic for every duration, wall
time only to notice a clock jump). The rules:

* Own priority: `base_priority`, minus `priority_penalty` for each of: no peer heartbeat on the
  storage net, none on the production net, no ping reply from the switch -- each "within the
  dead time" (a heartbeat or reply counts while it is younger than `dead_time`).
  A node with a VM copy that cannot run (not UpToDate: kisscluster.heartbeat.copies) loses
  `stale_penalty` (3 * priority_penalty + 2) on top: it ranks below a peer whose copies are
  all good whatever else each has lost, so that peer keeps or takes the VMs until every copy
  here is UpToDate again (failback never goes to a copy that cannot run the VM). A node in
  maintenance (kisscluster.placement) loses `maintenance_penalty` (3 * priority_penalty + 1):
  it gets no VM while the peer can run them, keeps them while the peer's copies cannot (after
  the peer failed and came back), and takes them all when the peer is gone.
* Peer priority: the one announced in the newest heartbeat still within the dead time.
* Wanted state: equal priorities -> `primary-vms`; peer higher -> `no-vms`; own higher ->
  `all-vms`. A peer silent on both nets is treated as gone. Without a witness the switch
  decides: a node that still gets ping replies takes `all-vms`, one that does not takes
  `no-vms` (a node without the switch has no network to serve). Consequence, by design: if both
  nets fail between two live nodes that both still reach the switch, neither can tell that from
  a dead peer and both take `all-vms`; power fencing (kisscluster.heartbeat.power) or DRBD's
  fencing and the operator are the last line there. With a witness
  (kisscluster.heartbeat.witness) its lease decides instead: the node that holds it takes
  `all-vms`, the other `no-vms`, so both links failing costs no split brain.
* A new state is taken only once it has been computed at every evaluation for one full interval
  (at least twice in a row, one interval apart), and never during the start-up grace period: one
  dead time, or `init_dead` while the peer has not been heard since start-up. The longer wait
  is for the cold start of both nodes: the node that boots first must not start every VM only
  to give half of them back moments later when its peer appears. The first state after start-up
  is taken the same way.
* A clock jump (wall time and monotonic time disagreeing about the time since the previous
  evaluation by more than one interval; also a suspend, since the monotonic clock stops) raises
  ClockJump: the daemon exits rather than decide on bad timing.
"""

import enum
from dataclasses import dataclass, field

NETS = ("stor", "prod")


class State(enum.StrEnum):
    ALL = "all-vms"
    PRIMARY = "primary-vms"
    NONE = "no-vms"


class ClockJump(Exception):
    """Wall and monotonic clocks disagree: the daemon must not go on deciding."""

    def __init__(self, seconds: float) -> None:
        super().__init__(f"clock jump of {seconds:+.3f} s between two evaluations")
        self.seconds = seconds


@dataclass(frozen=True)
class Rules:
    base_priority: int = 100
    priority_penalty: int = 10
    interval: float = 1.0
    dead_time: float = 3.0
    init_dead: float = 60.0

    @property
    def stale_penalty(self) -> int:
        return 3 * self.priority_penalty + 2

    @property
    def maintenance_penalty(self) -> int:
        return 3 * self.priority_penalty + 1


@dataclass(frozen=True)
class Decision:
    """The outcome of one evaluation."""

    own_priority: int
    peer_priority: int | None  # None: the peer is silent on both nets
    ping_ok: bool
    alive_nets: tuple[str, ...]
    computed: State
    state: State | None  # None until the first state is taken
    changed: bool
    in_grace: bool

    def line(self) -> str:
        """One readable line for the journal."""
        peer = "silent" if self.peer_priority is None else str(self.peer_priority)
        nets = ",".join(self.alive_nets) or "none"
        facts = (
            f"own priority {self.own_priority}, peer {peer}, heartbeats on {nets}, "
            f"switch {'replies' if self.ping_ok else 'silent'}"
        )
        if self.changed:
            return f"state -> {self.state}: {facts}"
        if self.computed == self.state:
            return f"no change, staying {self.state}: {facts}"
        held = "start-up grace" if self.in_grace else "waiting for confirmation"
        return f"would take {self.computed}, holding {self.state or 'no state'} ({held}): {facts}"


@dataclass
class Core:
    rules: Rules
    started: float  # monotonic
    last_wall: float  # wall time of the previous evaluation (or of the start)
    last_mono: float = field(init=False)
    heartbeats: dict[str, tuple[float, int]] = field(default_factory=dict)  # net -> (mono, prio)
    last_ping_ok: float | None = None
    state: State | None = None
    pending: tuple[State, float] | None = None
    copies_ready: bool = True
    maintenance: bool = False
    witness: bool = False  # a witness is configured: its lease, not the switch, decides
    lease_until: float | None = None  # monotonic: this node holds the witness's lease until

    def __post_init__(self) -> None:
        self.last_mono = self.started

    def heartbeat(self, net: str, priority: int, mono: float) -> None:
        """An authenticated, in-window, fresh heartbeat from the peer arrived on `net`."""
        if net not in NETS:
            raise ValueError(f"unknown net {net!r}")
        if not self.heartbeats:
            # The peer's first word ends the long grace; what was computed without it confirms
            # nothing now.
            self.pending = None
        self.heartbeats[net] = (mono, priority)

    def ping(self, ok: bool, mono: float) -> None:
        if ok:
            self.last_ping_ok = mono

    def lease(self, until: float | None) -> None:
        """The witness's latest answer: this node holds its lease until `until`, or not."""
        self.lease_until = until

    def holds_lease(self, mono: float) -> bool:
        return self.lease_until is not None and mono < self.lease_until

    def _alive(self, since: float | None, mono: float) -> bool:
        return since is not None and mono - since < self.rules.dead_time

    def alive_nets(self, mono: float) -> tuple[str, ...]:
        return tuple(
            n for n in NETS if n in self.heartbeats and self._alive(self.heartbeats[n][0], mono)
        )

    def ping_ok(self, mono: float) -> bool:
        return self._alive(self.last_ping_ok, mono)

    def own_priority(self, mono: float) -> int:
        lost = len(NETS) - len(self.alive_nets(mono)) + (0 if self.ping_ok(mono) else 1)
        stale = 0 if self.copies_ready else self.rules.stale_penalty
        held = self.rules.maintenance_penalty if self.maintenance else 0
        return self.rules.base_priority - lost * self.rules.priority_penalty - stale - held

    def peer_priority(self, mono: float) -> int | None:
        alive = [self.heartbeats[n] for n in self.alive_nets(mono)]
        return max(alive)[1] if alive else None

    def wanted(self, mono: float) -> State:
        peer = self.peer_priority(mono)
        if peer is None:
            alone_ok = self.holds_lease(mono) if self.witness else self.ping_ok(mono)
            return State.ALL if alone_ok else State.NONE
        own = self.own_priority(mono)
        if own == peer:
            return State.PRIMARY
        return State.ALL if own > peer else State.NONE

    def grace_end(self) -> float:
        wait = self.rules.dead_time if self.heartbeats else self.rules.init_dead
        return self.started + wait

    def in_grace(self, mono: float) -> bool:
        return mono < self.grace_end()

    def check_clock(self, mono: float, wall: float) -> None:
        """Raise ClockJump if wall time moved differently from monotonic time since last call."""
        jump = (wall - self.last_wall) - (mono - self.last_mono)
        if abs(jump) > self.rules.interval:
            raise ClockJump(jump)
        self.last_mono, self.last_wall = mono, wall

    def evaluate(self, mono: float, wall: float) -> Decision:
        self.check_clock(mono, wall)
        computed = self.wanted(mono)
        changed = False
        if computed == self.state:
            self.pending = None
        elif self.pending is None or self.pending[0] != computed:
            self.pending = (computed, mono)
        elif mono - self.pending[1] >= self.rules.interval and not self.in_grace(mono):
            self.state, self.pending, changed = computed, None, True
        return Decision(
            own_priority=self.own_priority(mono),
            peer_priority=self.peer_priority(mono),
            ping_ok=self.ping_ok(mono),
            alive_nets=self.alive_nets(mono),
            computed=computed,
            state=self.state,
            changed=changed,
            in_grace=self.in_grace(mono),
        )

    def next_deadline(self, mono: float) -> float | None:
        """The next moment an evaluation could come out differently without any new input:
        a heartbeat or ping reply reaching the dead time, the grace period ending, or a pending
        state becoming confirmable."""
        dead = self.rules.dead_time
        moments = [t + dead for t, _ in self.heartbeats.values()]
        if self.last_ping_ok is not None:
            moments.append(self.last_ping_ok + dead)
        if self.lease_until is not None:
            moments.append(self.lease_until)
        moments.append(self.grace_end())
        if self.pending is not None:
            moments.append(self.pending[1] + self.rules.interval)
        future = [m for m in moments if m > mono]
        return min(future) if future else None
