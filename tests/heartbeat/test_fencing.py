"""DRBD's fence-peer handler against a real kissclusterd over real namespaces.

The handler (`kissclusterd fence-peer`, as DRBD runs it with $DRBD_RESOURCE) runs in node n1's
namespace and asks the daemon in n2's; what n2's DRBD says and does is the seam
(fake_drbdadm.py: there is no DRBD module on this host; the qemu lab runs the real one).
"""

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import hb_netlab as netlab
import pytest

pytestmark = [
    pytest.mark.netns,
    pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root"),
]

FAKE = Path(__file__).with_name("fake_drbdadm.py")
ALONE = {"role": "Secondary", "cstate": "WFConnection", "dstate": "UpToDate"}


@pytest.fixture
def lab(tmp_path):
    drbdadm = tmp_path / "drbdadm"
    drbdadm.write_text(f"#!{sys.executable}\n" + FAKE.read_text())
    drbdadm.chmod(0o755)
    with netlab.lab(tmp_path, 0.5, 1.5, 6.0) as built:
        built.write_config(drbdadm=drbdadm, fence_timeout=3)
        for node in netlab.NODES:
            set_drbd(built, node, web=ALONE)
        built.start("n1")
        built.start("n2")
        built.wait_states(15, n1="primary-vms", n2="primary-vms")
        yield built


def set_drbd(lab: netlab.Lab, node: str, **resources: dict[str, str]) -> None:
    lab.drbd_state(node).write_text(json.dumps(resources))


def drbd(lab: netlab.Lab, node: str) -> dict[str, dict[str, str]]:
    states: dict[str, dict[str, str]] = json.loads(lab.drbd_state(node).read_text())
    return states


def fence_peer(
    lab: netlab.Lab,
    clock_offset: Path | None = None,
    run_dir: Path | None = None,
    node: str = "n1",
) -> tuple[int, float, str]:
    """Run the handler on `node` as DRBD does: its exit code, duration and journal lines. Its
    run dir (where it reads what that node's daemon hears) is the node's unless given."""
    env = {**lab.env(node), "DRBD_RESOURCE": "web"}
    program = [str(netlab.CHECKOUT / "scripts" / "kissclusterd")]
    if clock_offset is not None:
        program = [str(netlab.HERE / "skewed_clock.py"), str(clock_offset)]
    began = time.monotonic()
    done = subprocess.run(
        ["ip", "netns", "exec", lab.ns(node), sys.executable, *program, "fence-peer",
         "--config", str(lab.root / "kissclusterd.conf"),
         "--run-dir", str(run_dir or lab.rundir(node))],
        env=env, capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    return done.returncode, time.monotonic() - began, done.stderr


def test_a_secondary_peer_outdates_its_copy_and_the_handler_exits_4(lab):
    code, took, log = fence_peer(lab)
    assert code == 4, log
    assert drbd(lab, "n2")["web"]["dstate"] == "Outdated"
    assert took < 3, "the answer should come at once, not at the timeout"


def test_the_request_reaches_the_peer_over_production_when_storage_is_cut(lab):
    lab.link("n1", "stor", up=False)
    code, _, log = fence_peer(lab)
    assert code == 4, log
    assert drbd(lab, "n2")["web"]["dstate"] == "Outdated"


def test_a_primary_peer_is_reported_and_keeps_its_copy(lab):
    set_drbd(lab, "n2", web={**ALONE, "role": "Primary"})
    code, _, log = fence_peer(lab)
    assert code == 6, log
    assert drbd(lab, "n2")["web"]["dstate"] == "UpToDate"


def test_a_peer_whose_drbd_still_sees_us_is_asked_again_until_it_notices(lab):
    # The peer's DRBD notices a lost link only after its ping interval: until then it answers
    # "retry", and the handler keeps asking instead of giving up at fence_timeout.
    set_drbd(lab, "n2", web={**ALONE, "cstate": "Connected"})
    notices = threading.Timer(5, set_drbd, (lab, "n2"), {"web": ALONE})
    notices.start()
    try:
        code, took, log = fence_peer(lab)
    finally:
        notices.cancel()
    assert code == 4, log
    assert took >= 5
    assert drbd(lab, "n2")["web"]["dstate"] == "Outdated"


def test_a_peer_that_never_notices_is_still_never_claimed_dead(lab):
    lab.write_config(drbdadm=lab.root / "drbdadm", fence_timeout=2, fence_patience=4)
    set_drbd(lab, "n2", web={**ALONE, "cstate": "Connected"})
    code, took, log = fence_peer(lab)
    assert code == 1, log  # I/O stays frozen, promotion refused: the peer lives
    assert took >= 4
    assert drbd(lab, "n2")["web"]["dstate"] == "UpToDate"


def test_an_unknown_resource_on_the_peer_is_outdated_through_its_metadata(lab):
    # Not up on the peer (e.g. it is booting): `drbdadm outdate` writes the metadata there.
    set_drbd(lab, "n2", web={"role": "Unconfigured", "cstate": "Unconfigured",
                             "dstate": "Unconfigured"})  # fmt: skip
    code, _, log = fence_peer(lab)
    assert code == 4, log


@pytest.mark.parametrize(("policy", "code"), [("takeover", 5), ("freeze", 1)])
def test_a_silent_peer_is_handled_as_peer_silent_says(lab, policy, code):
    lab.write_config(drbdadm=lab.root / "drbdadm", fence_timeout=2, peer_silent=policy)
    lab.signal("n2", signal.SIGSTOP)  # a hung node: alive, but it answers nothing
    try:
        lab.wait_for(lambda: not heard_lately(lab), 10, "n1's daemon to miss n2's heartbeats")
        got, took, log = fence_peer(lab)
    finally:
        lab.signal("n2", signal.SIGCONT)
    assert got == code, log
    assert 2 <= took < 6
    assert drbd(lab, "n2")["web"]["dstate"] == "UpToDate"


def test_a_node_cut_off_from_peer_and_switch_never_takes_over_and_the_peer_does(lab):
    # n1's cables are out: no heartbeat on either net and no reply from the switch (which sits
    # on the production net). n1 must leave its I/O frozen and refuse to promote; n2, which
    # still has the switch, takes the peer for dead under the default peer_silent = takeover.
    lab.write_config(drbdadm=lab.root / "drbdadm", fence_timeout=2)
    lab.link("n1", "stor", up=False)
    lab.link("n1", "prod", up=False)
    lab.wait_for(lambda: lab.status("n1")["switch_silent_for"] > 2, 10, "n1 to lose the switch")
    lab.wait_for(lambda: not heard_lately(lab, "n2"), 10, "n2 to miss n1's heartbeats")
    got, took, log = fence_peer(lab)
    assert got == 1, log
    assert "this node is cut off" in log
    assert 2 <= took < 6
    got, _, log = fence_peer(lab, node="n2")
    assert got == 5, log


def heard_lately(lab: netlab.Lab, node: str = "n1") -> bool:
    ages = lab.status(node)["heartbeat_age"].values()
    return any(age is not None and age < 1.5 for age in ages)


def test_a_peer_our_daemon_hears_is_never_claimed_dead(lab):
    # The requests go unanswered (they leave on ports the peer drops), yet n1's daemon still
    # hears n2's heartbeats: n2 lives, and DRBD must keep waiting.
    lab.write_config(drbdadm=lab.root / "drbdadm", fence_timeout=2, fence_patience=5)
    lab.nft(
        "n2",
        "table inet deaf {\n chain input {\n type filter hook input priority 0;\n"
        f" udp dport {netlab.PORT} udp sport != {netlab.PORT} drop\n }}\n}}\n",
    )
    code, took, log = fence_peer(lab)
    assert code == 1, log
    assert took >= 5  # asked for fence_patience, not given up at fence_timeout
    assert drbd(lab, "n2")["web"]["dstate"] == "UpToDate"


def test_a_requester_whose_clock_lags_after_a_hang_hears_retry_not_silence(lab, tmp_path):
    offset = tmp_path / "offset"
    offset.write_text("-30")  # the guest clock of a node resumed from a 30 s stop
    lab.write_config(drbdadm=lab.root / "drbdadm", fence_timeout=2, fence_patience=4)
    code, _, log = fence_peer(lab, clock_offset=offset, run_dir=tmp_path / "no-daemon")
    assert code == 1, log  # not 5: the peer answered, it just will not act on a stale request
    assert drbd(lab, "n2")["web"]["dstate"] == "UpToDate"
    assert "answered retry" in lab.log_text("n2")


def test_a_request_under_another_secret_outdates_nothing(lab):
    other = lab.root / "other-secret"
    other.write_text("an entirely different secret of the attacker\n")
    other.chmod(0o600)
    lab.write_config(drbdadm=lab.root / "drbdadm", fence_timeout=1, secret_file=other)
    code, _, _ = fence_peer(lab, run_dir=lab.root / "no-daemon")
    assert code == 5  # nothing it accepts answers: silence, taken for dead by default
    assert drbd(lab, "n2")["web"]["dstate"] == "UpToDate"
    assert "dropped outdate request" in lab.log_text("n2")


def ask_to_connect(lab: netlab.Lab) -> str:
    """What the stand-down does last, run on n1: ask n2 to reconnect to web. Its log lines."""
    script = (
        "import logging, sys; from pathlib import Path; "
        "from kisscluster.heartbeat import fence; logging.basicConfig(level=logging.INFO); "
        f"fence.ask_peer_to_connect(Path({str(lab.root / 'kissclusterd.conf')!r}), 'web')"
    )
    done = subprocess.run(
        ["ip", "netns", "exec", lab.ns("n1"), sys.executable, "-c", script],
        env=lab.env("n1"), capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    return done.stderr


def test_a_peer_left_standalone_reconnects_when_the_stood_down_node_asks(lab):
    # The resumed Primary came back before it stood down, and n2's DRBD dropped the connection
    # for good: after the stand-down, n1 asks n2 to connect to its fresh copy.
    set_drbd(lab, "n2", web={"role": "Primary", "cstate": "StandAlone", "dstate": "UpToDate"})
    said = ask_to_connect(lab)
    assert "asked the peer to connect: connecting" in said
    assert drbd(lab, "n2")["web"]["cstate"] == "WFConnection"
    assert "connect web" in Path(f"{lab.drbd_state('n2')}.log").read_text()


def test_a_connect_request_leaves_a_connected_peer_alone(lab):
    set_drbd(lab, "n2", web={"role": "Primary", "cstate": "Connected", "dstate": "UpToDate"})
    said = ask_to_connect(lab)
    assert "asked the peer to connect: connecting" in said
    assert drbd(lab, "n2")["web"]["cstate"] == "Connected"
