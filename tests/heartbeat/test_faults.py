"""The fault matrix: two real kissclusterd daemons in network namespaces, a switch namespace.

Each scenario builds its own namespaces (unique names, deleted by the fixture whatever happens),
starts both daemons with interval 0.5 s and dead time 1.5 s, injects one fault with `ip link`,
nftables or a signal, and checks the sequence of states each node recorded. The action is the
seam (record_action.py instead of `systemctl start`, which needs a booted systemd; the qemu lab
runs the real one). After every scenario the invariant is checked over the whole run: no VM
wanted on both nodes at once, apart from a bounded transition window (see netlab.violations).
"""

import ipaddress
import json
import os
import signal
import socket
import subprocess
import sys
import time

import hb_netlab as netlab
import pytest

from kisscluster.atomic import write_atomic
from kisscluster.heartbeat import protocol
from kisscluster.heartbeat.protocol import Heartbeat

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

INTERVAL = 0.5
DEAD = 1.5
INIT_DEAD = 4 * DEAD
# A failover needs at most dead time + interval; the waits allow for a loaded 2-core CI machine.
REACT = DEAD + INTERVAL + 3.0
# The longest span in which a VM may be wanted on both nodes while both daemons make a move.
TRANSITION = INTERVAL
PRIMARY = "primary-vms"
ALL = "all-vms"
NONE = "no-vms"


@pytest.fixture
def lab(tmp_path):
    with netlab.lab(tmp_path, INTERVAL, DEAD, INIT_DEAD) as built:
        yield built
        for node, process in built.daemons.items():
            if process.poll() is None:
                assert "Traceback" not in built.log_text(node), built.log_text(node)


def both_up(lab: netlab.Lab) -> None:
    lab.start("n1")
    lab.start("n2")
    lab.wait_states(DEAD + REACT, n1=PRIMARY, n2=PRIMARY)


def hold(lab: netlab.Lab, seconds: float = DEAD + 2 * INTERVAL) -> dict[str, list[str]]:
    """Let the situation stand; returns the states each node recorded meanwhile."""
    before = {node: len(lab.actions(node)) for node in netlab.NODES}
    time.sleep(seconds)
    return {node: lab.states(node)[before[node] :] for node in netlab.NODES}


def windows(lab: netlab.Lab, dead=None) -> list[float]:
    spans = netlab.violations({n: lab.actions(n) for n in netlab.NODES}, dead)
    return [end - start for start, end in spans]


def assert_safe(lab: netlab.Lab, dead=None, bound: float = TRANSITION) -> None:
    lengths = windows(lab, dead)
    print(f"transition windows (s): {[round(x, 3) for x in lengths]}")
    assert all(length <= bound for length in lengths), (lengths, lab.describe())


def send(lab: netlab.Lab, where: str, source: str, payloads: list[bytes], gap=0.0) -> None:
    hexes = [p.hex() for p in payloads]
    lab.tool(where, "send", source, netlab.STOR["n1"], str(netlab.PORT), str(gap), *hexes)


def crafted(priority=100, sender=netlab.STOR["n2"], timestamp=None, secret=None) -> bytes:
    heartbeat = Heartbeat(
        ipaddress.ip_address(sender),
        priority,
        time.time() if timestamp is None else timestamp,
        bytes(16),
        time.monotonic_ns(),
    )
    return protocol.encode(heartbeat, secret or netlab.SECRET.strip().encode())


def expect(listener: socket.socket, prefix: bytes) -> bytes:
    """The next sd_notify message starting with `prefix` (others, e.g. STATUS=, skipped)."""
    while True:
        message = listener.recv(4096)
        if message.startswith(prefix):
            return message


# -- start-up ---------------------------------------------------------------------------
def test_both_start_together(lab, tmp_path):
    """Both take primary-vms once the grace period is over; readiness, status and reload."""
    notify_path = tmp_path / "notify"
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    listener.bind(str(notify_path))
    listener.settimeout(10)
    lab.start("n1", notify_socket=notify_path)
    lab.start("n2")
    expect(listener, b"READY=1")
    lab.wait_states(DEAD + REACT, n1=PRIMARY, n2=PRIMARY)
    first = {node: lab.actions(node)[0][0] for node in netlab.NODES}
    for node in netlab.NODES:
        assert first[node] - lab.events[0][0] >= DEAD - 0.1  # not before the grace period
    assert hold(lab) == {"n1": [], "n2": []}

    shown = subprocess.run(
        [sys.executable, str(netlab.CHECKOUT / "scripts" / "kissclusterd"), "status", "--json",
         "--run-dir", str(lab.rundir("n1"))],
        capture_output=True, text=True, timeout=30, check=True,
    )  # fmt: skip
    current = json.loads(shown.stdout)
    assert (current["state"], current["own_priority"], current["peer_priority"]) == (
        PRIMARY,
        100,
        100,
    )
    assert all(age < 2 * INTERVAL for age in current["heartbeat_age"].values())
    assert current["last_ping"]["ok"] and current["ping_age"] < 2 * INTERVAL
    text = subprocess.run(
        [sys.executable, str(netlab.CHECKOUT / "scripts" / "kissclusterd"), "status",
         "--run-dir", str(lab.rundir("n2"))],
        capture_output=True, text=True, timeout=30, check=True,
    ).stdout  # fmt: skip
    assert "state:          primary-vms" in text and "peer priority:  100" in text

    # SIGHUP: a broken config is refused and the daemon goes on; a good one is taken.
    (lab.root / "kissclusterd.conf").write_text("[kissclusterd]\ninterval = fast\n")
    lab.signal("n1", signal.SIGHUP)
    expect(listener, b"RELOADING=1")
    expect(listener, b"READY=1")
    lab.write_config(priority_penalty=9)
    lab.signal("n1", signal.SIGHUP)
    expect(listener, b"RELOADING=1")
    expect(listener, b"READY=1")
    lab.wait_for(lambda: "configuration reloaded" in lab.log_text("n1"), 5, "reload")
    assert "reload refused" in lab.log_text("n1") and "interval" in lab.log_text("n1")
    assert lab.daemons["n1"].poll() is None
    listener.close()
    assert_safe(lab)


def test_cold_start_waits_init_dead_for_the_peer(lab):
    """Both nodes booting together, n2 a few dead times later: n1 takes no VM of n2's first."""
    lab.start("n1")
    time.sleep(INIT_DEAD / 2)
    lab.start("n2")
    lab.wait_states(REACT, n1=PRIMARY, n2=PRIMARY)
    assert lab.states("n1") == [PRIMARY] and lab.states("n2") == [PRIMARY]
    assert_safe(lab)


def test_one_starts_late(lab):
    """Alone past init_dead, n1 takes every VM; when n2 comes, n1 hands n2's VMs back."""
    lab.start("n1")
    started = lab.events[-1][0]
    lab.wait_states(INIT_DEAD + REACT, n1=ALL)
    assert lab.actions("n1")[0][0] - started >= INIT_DEAD - 0.1
    lab.start("n2")
    lab.wait_states(DEAD + REACT, n1=PRIMARY, n2=PRIMARY)
    assert lab.states("n1") == [ALL, PRIMARY] and lab.states("n2") == [PRIMARY]
    assert lab.actions("n1")[1][0] < lab.actions("n2")[0][0]  # handed back before n2 starts
    assert_safe(lab)


# -- links ------------------------------------------------------------------------------
def test_storage_link_down(lab):
    """Both lose the storage heartbeat alike: equal priorities, nothing moves."""
    both_up(lab)
    lab.link("n1", "stor", up=False)
    assert hold(lab) == {"n1": [], "n2": []}
    assert lab.status("n1")["own_priority"] == lab.status("n2")["own_priority"] == 90
    lab.link("n1", "stor", up=True)
    assert hold(lab) == {"n1": [], "n2": []}
    assert_safe(lab)


def test_production_link_down(lab):
    """n1 loses the production net (heartbeats there and the switch): n2 takes everything."""
    both_up(lab)
    lab.link("n1", "prod", up=False)
    lab.wait_states(REACT, n1=NONE, n2=ALL)
    assert hold(lab) == {"n1": [], "n2": []}
    lab.link("n1", "prod", up=True)
    lab.wait_states(REACT, n1=PRIMARY, n2=PRIMARY)
    assert lab.states("n1") == [PRIMARY, NONE, PRIMARY]
    assert lab.states("n2") == [PRIMARY, ALL, PRIMARY]
    assert_safe(lab)


def test_both_links_down_switch_reachable_by_both(lab):
    """The classic split, documented in kisscluster.heartbeat.core: storage cable cut and the
    switch dropping the heartbeats between its ports while still answering pings. Each node
    sees a silent peer and a replying switch, exactly as if the peer had died, so both take
    all-vms: the one situation where the daemons want VMs on both nodes. DRBD is what stands
    between that and a second copy of a VM (it refuses a second primary while connected; with
    the cable cut, its split-brain handlers and the operator decide). When the nets come back,
    both return to primary-vms."""
    both_up(lab)
    lab.link("n1", "stor", up=False)
    lab.nft(
        "sw",
        "table bridge split {\n chain forward {\n type filter hook forward priority 0;\n"
        f" udp dport {netlab.PORT} drop\n }}\n}}\n",
    )
    lab.wait_states(REACT, n1=ALL, n2=ALL)
    assert lab.status("n1")["peer_priority"] is None and lab.status("n1")["own_priority"] == 80
    split = lab.mark("split confirmed")
    lab.nft_flush("sw")
    lab.link("n1", "stor", up=True)
    healed = lab.mark("nets back")
    lab.wait_states(REACT, n1=PRIMARY, n2=PRIMARY)
    assert lab.states("n1") == [PRIMARY, ALL, PRIMARY]
    assert lab.states("n2") == [PRIMARY, ALL, PRIMARY]
    spans = netlab.violations({n: lab.actions(n) for n in netlab.NODES})
    assert len(spans) == 1 and spans[0][0] < split and spans[0][1] > healed
    print(f"split: VMs wanted on both for {spans[0][1] - spans[0][0]:.3f} s (by design)")


def test_link_flapping(lab):
    """Both links going down and up every interval: the state does not follow."""
    both_up(lab)
    deadline = time.monotonic() + 8 * INTERVAL
    up = False
    while time.monotonic() < deadline:
        lab.link("n1", "stor", up=up)
        lab.link("n1", "prod", up=up)
        up = not up
        time.sleep(INTERVAL)
    lab.link("n1", "stor", up=True)
    lab.link("n1", "prod", up=True)
    time.sleep(DEAD)
    assert lab.states("n1") == [PRIMARY] and lab.states("n2") == [PRIMARY]
    assert_safe(lab)


# -- switch -----------------------------------------------------------------------------
def test_switch_unreachable_from_one_node(lab):
    both_up(lab)
    lab.nft(
        "n1",
        "table inet noswitch {\n chain output {\n type filter hook output priority 0;\n"
        f" ip daddr {netlab.SWITCH} drop\n }}\n}}\n",
    )
    lab.wait_states(REACT, n1=NONE, n2=ALL)
    assert hold(lab) == {"n1": [], "n2": []}
    lab.nft_flush("n1")
    lab.wait_states(REACT, n1=PRIMARY, n2=PRIMARY)
    assert lab.states("n1") == [PRIMARY, NONE, PRIMARY]
    assert lab.states("n2") == [PRIMARY, ALL, PRIMARY]
    assert_safe(lab)


def test_switch_unreachable_from_both(lab):
    """Both lose the switch alike: equal priorities, both keep their own VMs."""
    both_up(lab)
    lab.nft(
        "sw",
        "table inet mute {\n chain input {\n type filter hook input priority 0;\n"
        " icmp type echo-request drop\n }\n}\n",
    )
    assert hold(lab) == {"n1": [], "n2": []}
    assert lab.status("n1")["own_priority"] == lab.status("n2")["own_priority"] == 90
    assert not lab.status("n1")["last_ping"]["ok"]
    assert_safe(lab)


# -- the peer process -------------------------------------------------------------------
def test_peer_process_killed(lab):
    both_up(lab)
    lab.signal("n2", signal.SIGKILL)
    killed = lab.events[-1][0]
    took = lab.wait_states(REACT, n1=ALL)
    print(f"failover after kill: {took - killed:.3f} s")
    assert lab.states("n1") == [PRIMARY, ALL] and lab.states("n2") == [PRIMARY]
    assert lab.actions("n1")[-1][0] - killed <= DEAD + INTERVAL + 0.5
    assert_safe(lab, dead={"n2": [(killed, time.time())]})


def test_peer_frozen_then_resumed(lab):
    """SIGSTOP: n1 takes over after the dead time. SIGCONT: n2 was never told to stop its VMs,
    hears n1 again and both settle on primary-vms; the measured window is the time n1 needs to
    give n2's VMs back."""
    both_up(lab)
    lab.signal("n2", signal.SIGSTOP)
    frozen = lab.events[-1][0]
    lab.wait_states(REACT, n1=ALL)
    lab.signal("n2", signal.SIGCONT)
    resumed = lab.events[-1][0]
    lab.wait_states(REACT, n1=PRIMARY, n2=PRIMARY)
    assert lab.states("n1") == [PRIMARY, ALL, PRIMARY] and lab.states("n2") == [PRIMARY]
    assert_safe(lab, dead={"n2": [(frozen, resumed)]}, bound=DEAD + INTERVAL)


def test_clock_jump(lab, tmp_path):
    """n1's wall clock jumps 30 s ahead: it exits with status 3 without deciding anything;
    restarted (as systemd would) on a sound clock it rejoins, and n2 never moved. Seam: only
    n1's time.time() jumps (skewed_clock.py); stepping the real clock would hit the whole host."""
    offset = tmp_path / "clock-offset"
    offset.write_text("0\n")
    lab.start("n1", clock_offset=offset)
    lab.start("n2")
    lab.wait_states(DEAD + REACT, n1=PRIMARY, n2=PRIMARY)
    lab.mark("clock +30 s on n1")
    write_atomic(offset, "30\n")
    assert lab.daemons["n1"].wait(timeout=10) == 3
    assert "clock jump of +30" in lab.log_text("n1")
    lab.start("n1")
    lab.wait_for(lambda: len(lab.actions("n1")) == 2, DEAD + REACT, "n1 back")
    assert lab.states("n1") == [PRIMARY, PRIMARY] and lab.states("n2") == [PRIMARY]
    assert_safe(lab)


# -- hostile packets --------------------------------------------------------------------
def test_forged_packets_cannot_keep_a_dead_peer_alive(lab):
    """With n2 killed, heartbeats from n2's address signed with a wrong secret keep coming."""
    both_up(lab)
    lab.signal("n2", signal.SIGKILL)
    killed = lab.events[-1][0]
    forged = [crafted(secret=b"not the cluster secret at all") for _ in range(30)]
    send(lab, "n2", netlab.STOR["n2"], forged, gap=0.1)
    lab.wait_states(REACT, n1=ALL)
    assert lab.status("n1")["dropped"].get(protocol.UNAUTHENTICATED, 0) >= 20
    assert_safe(lab, dead={"n2": [(killed, time.time())]})


def test_replayed_packets_cannot_keep_a_dead_peer_alive(lab):
    both_up(lab)
    captured = lab.tool("n1", "sniff", "stor", netlab.STOR["n2"], str(netlab.PORT), "4", "5")
    packets = [bytes.fromhex(line) for line in captured.split()]
    assert len(packets) == 4
    lab.signal("n2", signal.SIGKILL)
    killed = lab.events[-1][0]
    send(lab, "n2", netlab.STOR["n2"], packets * 8, gap=0.1)
    lab.wait_states(REACT, n1=ALL)
    dropped = lab.status("n1")["dropped"]
    assert dropped.get(protocol.REPLAYED, 0) >= 4
    assert dropped.get(protocol.OUT_OF_WINDOW, 0) >= 1  # replayed once they are too old
    assert_safe(lab, dead={"n2": [(killed, time.time())]})


def test_malformed_and_invalid_packets_are_dropped(lab):
    """Garbage and validly signed but invalid heartbeats: counted, logged, ignored."""
    both_up(lab)
    genuine = crafted()
    payloads = [
        b"",
        b"\x00" * 3,
        genuine[:-1],
        genuine + b"\x00",
        b"XXXX" + genuine[4:],
        crafted(priority=101),
        crafted(priority=0, sender="10.231.1.3"),
        crafted(priority=0, timestamp=time.time() - 60),
    ]
    send(lab, "n2", netlab.STOR["n2"], payloads * 3, gap=0.05)
    assert hold(lab) == {"n1": [], "n2": []}
    dropped = lab.status("n1")["dropped"]
    assert dropped.get(protocol.MALFORMED, 0) == 15
    assert dropped.get(protocol.BAD_PRIORITY, 0) == 3
    assert dropped.get(protocol.WRONG_SENDER, 0) == 3
    assert dropped.get(protocol.OUT_OF_WINDOW, 0) == 3
    log = lab.log_text("n1")
    assert "dropped packet on stor from 10.231.1.2: malformed" in log
    assert log.count("dropped packet on stor") <= 6  # rate-limited: one line per reason
    assert_safe(lab)
