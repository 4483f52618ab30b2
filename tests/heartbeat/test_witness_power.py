"""The witness's lease (protocol, the witness's rule, a node's client over real TCP on
loopback), the core's decision with a witness, power fencing with a real agent program, and the
fence-peer handler's exit codes with either."""

import os
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from kisscluster.heartbeat import power, witness
from kisscluster.heartbeat.config import ConfigError, parse
from kisscluster.heartbeat.core import Core, Rules, State
from kisscluster.heartbeat.fence import exit_code

pytestmark = pytest.mark.fast

SECRET = b"a shared secret of enough bytes"
CONFIG = """[kissclusterd]
stor_addrs = 10.99.0.1 10.99.0.2
prod_addrs = 192.0.2.11 192.0.2.12
ping_addr = 192.0.2.1
"""


def test_requests_and_replies_round_trip_and_are_authenticated():
    request = witness.Request(1, 3.0, 1.7e9, b"n" * 16)
    message = witness.encode_request(request, SECRET)
    assert witness.decode_request(message, SECRET) == request
    reply = witness.Reply(None, 2.5, b"n" * 16)
    assert witness.decode_reply(witness.encode_reply(reply, SECRET), SECRET) == reply
    with pytest.raises(witness.BadMessage, match="HMAC"):
        witness.decode_request(message, b"another secret of enough bytes")
    with pytest.raises(witness.BadMessage, match="KCWA"):
        witness.decode_reply(message, SECRET)


def test_the_lease_stays_with_its_holder_until_it_is_silent_for_the_whole_lease():
    book = witness.LeaseBook()
    assert book.ask(0, 3.0, now=100.0) == (0, 3.0)  # the first to ask gets it
    assert book.ask(1, 3.0, now=101.0) == (0, 2.0)  # the other is told who holds it
    assert book.ask(0, 3.0, now=102.0) == (0, 3.0)  # renewed
    assert book.ask(1, 3.0, now=104.9)[0] == 0  # still within the renewed lease
    assert book.ask(1, 3.0, now=105.0) == (1, 3.0)  # the holder fell silent: it passes
    assert book.ask(0, 3.0, now=105.5) == (1, 2.5)
    assert book.ask(1, 1000.0, now=106.0) == (1, witness.MAX_LEASE)  # capped


def test_the_witness_drops_replays_and_requests_off_its_clock():
    server = witness.Witness(("127.0.0.1", 0), SECRET)
    try:
        message = witness.encode_request(witness.Request(0, 3.0, 1000.0, b"a" * 16), SECRET)
        assert server.answer(message, mono=10.0, wall=1000.0) is not None
        assert server.answer(message, mono=11.0, wall=1001.0) is None  # replayed
        late = witness.encode_request(witness.Request(0, 3.0, 1000.0, b"b" * 16), SECRET)
        assert server.answer(late, mono=12.0, wall=1000.0 + witness.WINDOW + 1) is None
        forged = witness.encode_request(witness.Request(1, 3.0, 1000.0, b"c" * 16), b"x" * 20)
        assert server.answer(forged, mono=12.0, wall=1000.0) is None
    finally:
        server.server.close()


@pytest.fixture
def running_witness():
    server = witness.Witness(("127.0.0.1", 0), SECRET)
    stop = threading.Event()
    thread = threading.Thread(target=server.serve, args=(stop,), daemon=True)
    thread.start()
    yield server
    stop.set()
    thread.join(5)
    server.server.close()


def test_two_members_over_tcp_one_holds_the_lease_and_it_passes_when_the_holder_stops(
    running_witness,
):
    address = running_witness.address
    first = witness.WitnessClient(0, SECRET, (address, 0.2, 1.0))
    second = witness.WitnessClient(1, SECRET, (address, 0.2, 1.0))
    began = time.monotonic()
    until, holder = first.ask(address, 1.0, 1.0)
    assert holder == 0 and until is not None and began < until <= time.monotonic() + 1.0
    assert second.ask(address, 1.0, 1.0) == (None, 0)
    assert first.ask(address, 1.0, 1.0)[1] == 0  # renewed over the same connection
    time.sleep(1.1)  # the holder falls silent for a whole lease
    until, holder = second.ask(address, 1.0, 1.0)
    assert holder == 1 and until is not None
    assert first.ask(address, 1.0, 1.0) == (None, 1)


def test_a_client_with_the_wrong_secret_or_no_witness_hears_nothing(running_witness):
    wrong = witness.WitnessClient(0, b"another secret of enough bytes", (None, 0.2, 1.0))
    assert wrong.ask(running_witness.address, 1.0, 1.0) == (None, None)
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        closed_port = unused.getsockname()
    nobody = witness.WitnessClient(0, SECRET, (None, 0.2, 1.0))
    assert nobody.ask(closed_port, 0.5, 1.0) == (None, None)


def test_with_a_witness_only_the_lease_holder_takes_the_vms_of_a_silent_peer():
    core = Core(Rules(), started=0.0, last_wall=0.0, witness=True)
    core.ping(True, 100.0)
    assert core.wanted(100.5) == State.NONE  # the switch answers, but no lease: give up
    core.lease(103.0)
    assert core.wanted(100.5) == State.ALL
    assert core.wanted(103.0) == State.NONE  # the lease ran out
    assert core.next_deadline(102.0) == 103.0
    no_witness = Core(Rules(), started=0.0, last_wall=0.0)
    no_witness.ping(True, 100.0)
    assert no_witness.wanted(100.5) == State.ALL  # without a witness the switch decides


@pytest.mark.parametrize(
    ("lease", "fenced", "primary_here", "code"),
    [
        (False, None, True, 1),  # the peer holds the lease: stand down
        (False, True, False, 1),  # no lease outweighs a power-off
        (True, None, False, 5),  # the lease, no power fencing: peer_silent (takeover)
        (True, True, False, 7),  # the lease and the peer confirmed off
        (None, True, False, 7),  # power fencing without a witness
        (None, False, True, 1),  # the power-off failed: I/O stays frozen
    ],
)
def test_the_handler_exit_code_with_a_witness_or_power_fencing(lease, fenced, primary_here, code):
    assert exit_code(None, False, "takeover", primary_here, False, lease, fenced)[0] == code


def test_an_answer_or_a_lost_switch_outweighs_the_witness_and_power_fencing():
    assert exit_code(None, True, "takeover", True, False, True, True)[0] == 1  # heard
    assert exit_code(None, False, "takeover", True, True, True, True)[0] == 1  # cut off


@pytest.mark.parametrize(
    ("text", "argv", "options"),
    [
        ("fence_ipmilan ip=10.0.0.2 lanplus=1", ("fence_ipmilan",), ("ip=10.0.0.2", "lanplus=1")),
        ("/usr/bin/python3 -m agent ip=x", ("/usr/bin/python3", "-m", "agent"), ("ip=x",)),
        ("fence_redfish", ("fence_redfish",), ()),
    ],
)
def test_a_fence_device_is_an_agent_then_its_options(text, argv, options):
    assert power.parse_device(text) == power.Device(argv, options)
    assert power.parse_device("") is None


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ("ip=10.0.0.2", "names no agent"),
        ("fence_ipmilan ip=1 lonely", "name=value"),
        ("fence_ipmilan action=reboot", "action"),
        ("fence_ipmilan 'unclosed", "cannot split"),
    ],
)
def test_a_bad_fence_device_is_refused(text, error):
    with pytest.raises(power.FenceConfigError, match=error):
        power.parse_device(text)


def test_the_config_names_the_witness_and_each_members_fence_device():
    config = parse(
        CONFIG + "witness_addr = 192.0.2.5\nfence2 = fence_ipmilan ip=10.0.0.12\n", Path("c")
    )
    assert config.witness == ("192.0.2.5", 694)
    assert config.fence == (None, power.Device(("fence_ipmilan",), ("ip=10.0.0.12",)))
    assert parse(CONFIG, Path("c")).witness is None
    with pytest.raises(ConfigError, match="fence1"):
        parse(CONFIG + "fence1 = ip=1\n", Path("c"))
    with pytest.raises(ConfigError, match="witness_addr"):
        parse(CONFIG + "witness_addr = the-witness\n", Path("c"))


@pytest.fixture
def agent(tmp_path):
    """A fence agent as the fence-agents are: options on stdin, exit 0 once off. It records
    what it read, and fails while the file `broken` exists."""
    program = tmp_path / "fence_test"
    program.write_text(
        f"#!{sys.executable}\n"
        "import sys, pathlib\n"
        "here = pathlib.Path(sys.argv[0]).parent\n"
        "with open(here / 'calls', 'a') as calls:\n"
        "    calls.write(sys.stdin.read() + '--\\n')\n"
        "sys.exit(1 if (here / 'broken').exists() else 0)\n"
    )
    program.chmod(0o755)
    secret = tmp_path / "fence.secret"
    secret.write_text("password=s3cret\n")
    secret.chmod(0o600)
    return power.Device((str(program),), ("ip=10.0.0.2",)), secret


def test_the_agent_gets_its_options_and_the_secret_on_stdin_never_in_its_arguments(agent, tmp_path):
    device, secret = agent
    assert power.fence(device, secret, tmp_path / "run", silent_since=time.time() - 5)
    assert (tmp_path / "calls").read_text() == "action=off\nip=10.0.0.2\npassword=s3cret\n--\n"


def test_a_confirmed_power_off_is_not_repeated_for_the_same_silence(agent, tmp_path):
    device, secret = agent
    silent_since = time.time() - 5
    assert power.fence(device, secret, tmp_path / "run", silent_since)
    assert power.fence(device, secret, tmp_path / "run", silent_since)  # the handler, later
    assert (tmp_path / "calls").read_text().count("action=off") == 1
    assert power.fence(device, secret, tmp_path / "run", silent_since=time.time() + 1)
    assert (tmp_path / "calls").read_text().count("action=off") == 2  # a newer silence


def test_a_failed_power_off_is_retried_while_the_peer_stays_silent(agent, tmp_path):
    device, secret = agent
    (tmp_path / "broken").touch()
    looks = iter([True, True, False])
    assert not power.fence_until_done(
        lambda: power.fence(device, secret, tmp_path / "run", 0.0), lambda: next(looks), 0.01
    )
    assert (tmp_path / "calls").read_text().count("action=off") == 2
    assert power.fenced_since(tmp_path / "run") is None


def test_a_secret_file_others_can_read_is_refused(agent, tmp_path):
    device, secret = agent
    os.chmod(secret, 0o644)
    assert not power.run_agent(device, secret)[0]
    with pytest.raises(power.FenceConfigError, match="0600"):
        power.secret_options(secret)
    assert power.secret_options(tmp_path / "absent") == []
