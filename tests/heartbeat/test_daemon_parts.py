"""Parts of the daemon that need no namespace: identity, actions, log throttling, notify."""

import logging
import socket
import sys
import time
from pathlib import Path

import pytest

from kisscluster.heartbeat.config import ConfigError, parse
from kisscluster.heartbeat.core import State
from kisscluster.heartbeat.identity import identify
from kisscluster.heartbeat.journal import log, notify
from kisscluster.heartbeat.workers import ActionRunner, Throttle

pytestmark = pytest.mark.fast


def config(stor: str, prod: str):
    text = f"[kissclusterd]\nstor_addrs = {stor}\nprod_addrs = {prod}\nping_addr = 10.231.9.254\n"
    return parse(text, Path("/etc/kisscluster/kissclusterd.conf"))


def test_identity_is_the_member_whose_address_is_local():
    second = identify(config("10.231.9.1 127.0.0.1", "10.231.8.1 10.231.8.2"))
    assert second.index == 1
    assert str(second.own["stor"]) == "127.0.0.1" and str(second.peer["stor"]) == "10.231.9.1"
    assert str(second.own["prod"]) == "10.231.8.2" and str(second.peer["prod"]) == "10.231.8.1"
    by_prod = identify(config("10.231.9.1 10.231.9.2", "127.0.0.1 10.231.8.2"))
    assert by_prod.index == 0


def test_identity_refuses_none_or_both_local():
    with pytest.raises(ConfigError, match="is this a cluster member"):
        identify(config("10.231.9.1 10.231.9.2", "10.231.8.1 10.231.8.2"))
    with pytest.raises(ConfigError, match="both stor_addrs"):
        identify(config("127.0.0.1 127.0.0.2", "10.231.8.1 10.231.8.2"))


def test_a_newer_state_supersedes_the_running_action_and_the_latest_wins(tmp_path):
    """A start job held up (a promotion waiting for a hung peer) must not hold back the next
    state: the running action is ended and only the latest wanted state's action runs."""
    log = tmp_path / "log"

    def argv(state: str, pause: float) -> list[str]:
        code = (
            f"import time; time.sleep({pause}); open({str(log)!r}, 'a').write({state!r} + chr(10))"
        )
        return [sys.executable, "-c", code]

    runner = ActionRunner()
    runner.request(State.NONE, argv("no-vms", 5))
    runner.request(State.PRIMARY, argv("primary-vms", 0))  # queued, then superseded
    runner.request(State.ALL, argv("all-vms", 0))
    deadline = time.monotonic() + 10
    while not runner.idle() and time.monotonic() < deadline:
        runner.poll()
        time.sleep(0.02)
    assert log.read_text().split() == ["all-vms"]
    assert time.monotonic() < deadline - 4  # no-vms was ended, not waited for


def test_an_action_that_cannot_start_is_logged_not_raised(monkeypatch):
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append
    monkeypatch.setattr(log, "propagate", False)
    monkeypatch.setattr(log, "handlers", [handler])
    runner = ActionRunner()
    runner.request(State.ALL, ["/nonexistent/systemctl", "start", "all-vms.target"])
    assert runner.running is None
    assert any("cannot run action" in r.getMessage() for r in records)


def test_throttle_allows_one_line_per_period_and_counts_the_rest():
    throttle = Throttle(10.0)
    key = ("stor", "malformed")
    assert throttle.allow(key, 100.0) == 0
    assert throttle.allow(key, 101.0) is None
    assert throttle.allow(key, 105.0) is None
    assert throttle.allow(("prod", "malformed"), 105.0) == 0
    assert throttle.allow(key, 110.0) == 2


def test_notify_sends_one_datagram_to_notify_socket(tmp_path, monkeypatch):
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))
        monkeypatch.setenv("NOTIFY_SOCKET", str(path))
        notify("READY=1\nSTATUS=start-up grace period")
        assert listener.recv(4096) == b"READY=1\nSTATUS=start-up grace period"
    monkeypatch.delenv("NOTIFY_SOCKET")
    notify("READY=1")  # without systemd: nothing to do, no error
