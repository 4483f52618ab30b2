"""Every rule of the decision core, driven by a fake clock (the core does no I/O)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kisscluster.heartbeat.core import ClockJump, Core, Rules, State

pytestmark = pytest.mark.fast

RULES = Rules(base_priority=100, priority_penalty=10, interval=1.0, dead_time=3.0)
WALL0 = 1_800_000_000.0


class Node:
    """A core plus a fake clock; `step` advances time one interval and evaluates, like the loop."""

    def __init__(self, rules: Rules = RULES) -> None:
        self.rules = rules
        self.now = 0.0
        self.core = Core(rules, started=0.0, last_wall=WALL0)

    def advance(self, seconds: float) -> None:
        self.now += seconds

    def hear(self, priority: int = 100, nets: tuple[str, ...] = ("stor", "prod")) -> None:
        for net in nets:
            self.core.heartbeat(net, priority, self.now)

    def evaluate(self):
        return self.core.evaluate(self.now, WALL0 + self.now)

    def step(self, peer: int | None = 100, ping: bool = True, nets=("stor", "prod")):
        """One interval: the peer's heartbeats (if any) and a ping result arrive, then decide."""
        self.advance(self.rules.interval)
        if peer is not None:
            self.hear(peer, nets)
        self.core.ping(ping, self.now)
        return self.evaluate()

    def settle(self, **inputs) -> State | None:
        for _ in range(6):
            decision = self.step(**inputs)
        return decision.state


# -- priorities -------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("nets", "ping", "expected"),
    [
        (("stor", "prod"), True, 100),
        (("prod",), True, 90),
        (("stor",), True, 90),
        (("stor", "prod"), False, 90),
        (("stor",), False, 80),
        ((), True, 80),
        ((), False, 70),
    ],
)
def test_own_priority_loses_the_penalty_per_missing_input(nets, ping, expected):
    node = Node()
    for _ in range(5):
        node.step(peer=100 if nets else None, ping=ping, nets=nets or ("stor",))
    assert node.core.own_priority(node.now) == expected


def test_inputs_count_only_within_the_dead_time():
    node = Node()
    node.hear(100)
    node.core.ping(True, node.now)
    node.advance(2.999)
    assert node.core.own_priority(node.now) == 100
    assert node.core.peer_priority(node.now) == 100
    node.advance(0.001)
    assert node.core.own_priority(node.now) == 70
    assert node.core.peer_priority(node.now) is None


def test_peer_priority_is_the_newest_announcement_on_any_net():
    node = Node()
    node.core.heartbeat("stor", 100, 0.0)
    node.core.heartbeat("prod", 90, 0.5)
    assert node.core.peer_priority(0.6) == 90
    node.core.heartbeat("stor", 80, 0.7)
    assert node.core.peer_priority(0.8) == 80


def test_a_failed_ping_does_not_cancel_an_earlier_reply_within_the_dead_time():
    node = Node()
    node.core.ping(True, 0.0)
    node.core.ping(False, 1.0)
    assert node.core.ping_ok(2.0)
    assert not node.core.ping_ok(3.0)


# -- wanted state -----------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "ping", "nets", "expected"),
    [
        (100, True, ("stor", "prod"), State.PRIMARY),  # all well
        (90, True, ("stor", "prod"), State.ALL),  # peer lost something, we did not
        (100, False, ("stor", "prod"), State.NONE),  # we lost the switch, the peer did not
        (90, False, ("stor", "prod"), State.PRIMARY),  # both lost the switch
        (90, True, ("prod",), State.PRIMARY),  # storage link down: equal loss
        (90, True, ("stor",), State.PRIMARY),  # production heartbeats lost: equal loss
        (None, True, (), State.ALL),  # peer silent, switch replies: take over
        (None, False, (), State.NONE),  # silent peer and no switch: isolated, run nothing
    ],
)
def test_wanted_state(peer, ping, nets, expected):
    node = Node()
    node.hear(100)  # heard once at start-up: a silent peer is then dead after one dead time
    assert node.settle(peer=peer, ping=ping, nets=nets or ("stor",)) == expected


# -- start-up grace and confirmation ----------------------------------------------------
def test_no_state_is_taken_during_the_start_up_grace_period():
    node = Node()
    seen = []
    for _ in range(2):  # t = 1, 2: within the dead time (3 s)
        decision = node.step()
        seen.append(decision.state)
        assert decision.in_grace
    assert seen == [None, None]
    decision = node.step()  # t = 3: grace over, primary-vms computed since t = 1
    assert decision.changed and decision.state == State.PRIMARY and not decision.in_grace


def test_a_peer_never_heard_is_taken_for_dead_only_after_init_dead():
    """Both nodes cold-started: the first one up waits init_dead for the other."""
    node = Node()
    while node.now < RULES.init_dead - RULES.interval:
        decision = node.step(peer=None)
        assert decision.state is None and decision.in_grace, node.now
    assert node.step(peer=None).changed  # t = init_dead: all-vms computed since t = 1
    assert node.core.state == State.ALL


def test_a_peer_heard_late_in_the_start_up_grace_gives_primary_vms_and_nothing_before():
    """The peer, just started, first announces 70 (it has heard nothing yet), then 100."""
    node = Node()
    states = [node.step(peer=None).state for _ in range(30)]  # all-vms computed since t = 1
    states += [node.step(peer=70).state, *(node.step(peer=100).state for _ in range(3))]
    assert set(states[:32]) == {None}  # t = 32: primary-vms computed for the first time
    assert states[32:] == [State.PRIMARY] * 2


def test_first_state_still_needs_two_evaluations_one_interval_apart():
    node = Node()
    node.advance(3.0)  # grace over before anything was evaluated
    node.hear(100)
    node.core.ping(True, node.now)
    first = node.evaluate()
    assert first.state is None and first.computed == State.PRIMARY
    node.advance(0.999)
    assert node.evaluate().state is None
    node.advance(0.001)
    assert node.evaluate().changed


def test_a_new_state_needs_confirmation_one_interval_later():
    node = Node()
    assert node.settle() == State.PRIMARY
    first = node.step(peer=90)
    assert first.computed == State.ALL and first.state == State.PRIMARY and not first.changed
    second = node.step(peer=90)
    assert second.changed and second.state == State.ALL


def test_a_state_computed_once_is_forgotten():
    node = Node()
    assert node.settle() == State.PRIMARY
    assert node.step(peer=90).computed == State.ALL
    assert node.step(peer=100).state == State.PRIMARY
    assert node.step(peer=90).state == State.PRIMARY  # pending restarted, not confirmed
    assert node.step(peer=90).state == State.ALL


def test_extra_evaluations_within_the_interval_do_not_confirm_early():
    node = Node()
    assert node.settle() == State.PRIMARY
    node.advance(1.0)
    node.hear(90)
    node.core.ping(True, node.now)
    first = node.now
    for tenth in range(1, 10):
        assert not node.evaluate().changed
        node.now = first + tenth / 10
    node.now = first + RULES.interval
    assert node.evaluate().changed  # exactly one interval after it was first computed


@pytest.mark.parametrize("nets", [("stor",), ("stor", "prod")])
def test_a_link_flapping_every_interval_does_not_move_the_state(nets):
    """Heartbeats on the flapping net(s) get through every other interval only."""
    node = Node()
    assert node.settle() == State.PRIMARY
    for index in range(40):
        up = index % 2 == 0
        other = tuple(n for n in ("stor", "prod") if n not in nets)
        heard = nets + other if up else other
        decision = node.step(peer=100 if heard else None, nets=heard or ("stor",))
        assert decision.state == State.PRIMARY, index


def test_a_peer_priority_flapping_every_interval_does_not_move_the_state():
    node = Node()
    assert node.settle() == State.PRIMARY
    for index in range(40):
        assert node.step(peer=90 if index % 2 else 100).state == State.PRIMARY


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.sampled_from([None, 70, 80, 90, 100]), st.booleans()), max_size=40))
def test_every_change_was_computed_for_a_full_interval(inputs):
    """Whatever the inputs, a state is only ever taken after being computed one interval long."""
    node = Node()
    computed_since: tuple[State, float] | None = None
    for peer, ping in inputs:
        decision = node.step(peer=peer, ping=ping)
        if decision.changed:
            assert computed_since is not None and computed_since[0] == decision.state
            assert node.now - computed_since[1] >= RULES.interval
            assert node.now >= RULES.dead_time
        if computed_since is None or computed_since[0] != decision.computed:
            computed_since = (decision.computed, node.now)


# -- clock ------------------------------------------------------------------------------
@pytest.mark.parametrize("jump", [-30.0, -1.5, 1.5, 3600.0])
def test_a_wall_clock_jump_raises(jump):
    node = Node()
    node.step()
    node.advance(1.0)
    with pytest.raises(ClockJump) as caught:
        node.core.evaluate(node.now, WALL0 + node.now + jump)
    assert caught.value.seconds == pytest.approx(jump)


def test_slew_and_a_long_stall_are_not_jumps():
    node = Node()
    node.step()
    node.advance(1.0)
    node.core.evaluate(node.now, WALL0 + node.now + 0.0005)  # NTP slewing
    node.advance(120.0)  # the process was frozen: both clocks moved alike
    node.core.evaluate(node.now, WALL0 + node.now + 0.0005)


# -- scheduling -------------------------------------------------------------------------
def test_next_deadline_names_the_moment_a_decision_can_change():
    node = Node()
    assert node.core.next_deadline(0.0) == 60.0  # end of the grace for a peer never heard
    node.core.heartbeat("stor", 100, 1.0)
    assert node.core.next_deadline(1.0) == 3.0  # heard: the grace is one dead time
    node.core.ping(True, 1.5)
    assert node.core.next_deadline(3.2) == 4.0  # the storage heartbeat dies
    assert node.core.next_deadline(4.0) == 4.5  # then the ping reply
    node.core.evaluate(4.6, WALL0 + 4.6)  # computes no-vms (silent peer, no switch): pending
    assert node.core.next_deadline(4.6) == pytest.approx(5.6)
    assert node.core.next_deadline(10.0) is None


def test_failover_after_a_silent_peer_takes_at_most_dead_time_plus_interval():
    """Evaluating at the deadlines the core names, like the daemon loop does."""
    for offset in (0.0, 0.25, 0.5, 0.99):
        node = Node()
        assert node.settle() == State.PRIMARY
        node.core.heartbeat("stor", 100, node.now + offset)
        node.core.heartbeat("prod", 100, node.now + offset)
        fault = node.now + offset + 0.001  # the peer dies right after its last heartbeat
        while True:
            node.now = node.core.next_deadline(node.now)
            node.core.ping(True, node.now)
            if node.evaluate().state == State.ALL:
                break
        assert node.now - fault <= RULES.dead_time + RULES.interval


# -- maintenance ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("peer", "ping", "expected"),
    [
        (100, True, State.NONE),  # a healthy peer runs every VM
        (70, True, State.NONE),  # even one that lost both links and the switch
        (None, True, State.ALL),  # the peer is gone: this node runs them all
        (100 - RULES.stale_penalty, True, State.ALL),  # back after a failure, its copies syncing
    ],
)
def test_a_node_in_maintenance_gets_vms_only_when_the_peer_is_gone(peer, ping, expected):
    node = Node()
    node.hear(100)
    node.core.maintenance = True
    assert node.settle(peer=peer, ping=ping) == expected


def test_maintenance_lifted_gives_equal_priorities_again():
    node = Node()
    node.hear(100)
    node.core.maintenance = True
    assert node.settle(peer=100) == State.NONE
    assert node.core.own_priority(node.now) == 100 - RULES.maintenance_penalty
    node.core.maintenance = False
    assert node.settle(peer=100) == State.PRIMARY
