"""The config file: defaults, and a clear message naming file and key for every bad value."""

import os
from pathlib import Path

import pytest

from kisscluster.heartbeat.config import ConfigError, load, parse, read_secret

pytestmark = pytest.mark.fast

SOURCE = Path("/etc/kisscluster/kissclusterd.conf")
MINIMAL = """[kissclusterd]
stor_addrs = 10.99.0.1 10.99.0.2
prod_addrs = 192.0.2.11 192.0.2.12
ping_addr = 192.0.2.1
"""


def test_contract_example_parses_with_its_values():
    config = parse(
        MINIMAL
        + "port = 694\nsecret_file = /etc/kisscluster/kissclusterd.secret\nbase_priority = 100\n"
        "priority_penalty = 10\ninterval = 1\ndead_time = 3\n"
        "action = systemctl start {state}.target\n",
        SOURCE,
    )
    assert [str(a) for a in config.stor_addrs] == ["10.99.0.1", "10.99.0.2"]
    assert config.port == 694 and config.rules.dead_time == 3.0
    assert config.action_argv("all-vms") == ["systemctl", "start", "all-vms.target"]


def test_defaults_and_sub_second_intervals():
    config = parse(MINIMAL, SOURCE)
    assert (config.port, config.rules.interval, config.rules.dead_time) == (694, 1.0, 3.0)
    assert (config.rules.base_priority, config.rules.priority_penalty) == (100, 10)
    assert config.rules.init_dead == 60.0
    assert str(config.secret_file) == "/etc/kisscluster/kissclusterd.secret"
    fast = parse(MINIMAL + "interval = 0.2\ndead_time = 0.5\n", SOURCE)
    assert (fast.rules.interval, fast.rules.dead_time) == (0.2, 0.5)


def test_ipv6_addresses():
    text = MINIMAL.replace("10.99.0.1 10.99.0.2", "fd00::1 fd00::2")
    assert parse(text, SOURCE).stor_addrs[1].version == 6


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[other]\nx = 1\n", "unknown section"),
        ("", "missing section [kissclusterd]"),
        (MINIMAL + "intervall = 2\n", "unknown key(s) ['intervall']"),
        (MINIMAL.replace("ping_addr = 192.0.2.1\n", ""), "ping_addr: missing"),
        (MINIMAL.replace("10.99.0.1 10.99.0.2", "10.99.0.1"), "stor_addrs: give both"),
        (MINIMAL.replace("10.99.0.1 10.99.0.2", "10.99.0.1 10.99.0.1"), "must differ"),
        (MINIMAL.replace("10.99.0.2", "node2"), "'node2' is not an IP address"),
        (MINIMAL.replace("10.99.0.2", "fd00::2"), "mixes IPv4 and IPv6"),
        (MINIMAL.replace("192.0.2.12", "10.99.0.2"), "differ from the storage addresses"),
        (MINIMAL.replace("ping_addr = 192.0.2.1", "ping_addr = 192.0.2.11"), "the switch"),
        (MINIMAL + "port = 0\n", "port: 0 is outside 1..65535"),
        (MINIMAL + "port = http\n", "port: 'http' is not a whole number"),
        (MINIMAL + "secret_file = kissclusterd.secret\n", "absolute path"),
        (MINIMAL + "priority_penalty = 11\n", "base_priority - 9 * priority_penalty - 3"),
        (MINIMAL + "interval = soon\n", "interval: 'soon' is not a number"),
        (MINIMAL + "interval = 0\n", "interval: 0.0 s is outside"),
        (MINIMAL + "interval = 61\ndead_time = 200\n", "more than 60.0 s"),
        (MINIMAL + "interval = 2\ndead_time = 3\n", "at least twice the interval"),
        (MINIMAL + "dead_time = 3\ninit_dead = 2\n", "init_dead: 2.0 s must be at least"),
        (MINIMAL + "action = systemctl start all-vms.target\n", "must contain {state}"),
        (MINIMAL + "action = echo 'unclosed {state}\n", "cannot split"),
        (MINIMAL + "port = 694\nport = 695\n", "option 'port'"),
    ],
)
def test_bad_values_are_refused_naming_file_and_key(text, message):
    with pytest.raises(ConfigError) as caught:
        parse(text, SOURCE)
    assert str(SOURCE) in str(caught.value)
    assert message in str(caught.value)


def test_load_reports_an_unreadable_file(tmp_path):
    with pytest.raises(ConfigError, match="cannot read"):
        load(tmp_path / "missing.conf")


def test_secret_file_mode_and_length_enforced(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("  0123456789abcdef0123  \n")
    secret.chmod(0o600)
    assert read_secret(secret) == b"0123456789abcdef0123"
    secret.chmod(0o640)
    with pytest.raises(ConfigError, match=r"mode 0640 lets others read it; run: chmod 0600"):
        read_secret(secret)
    secret.chmod(0o400)
    assert read_secret(secret)
    short = tmp_path / "short"
    short.write_text("tooshort")
    short.chmod(0o600)
    with pytest.raises(ConfigError, match="shorter than 16 bytes"):
        read_secret(short)
    link = tmp_path / "link"
    link.symlink_to(secret)
    with pytest.raises(ConfigError, match="cannot open"):
        read_secret(link)
    with pytest.raises(ConfigError, match="cannot open"):
        read_secret(tmp_path / "absent")


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to give a file away")
def test_secret_owned_by_someone_else_is_refused(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("0123456789abcdef0123")
    secret.chmod(0o600)
    os.chown(secret, 65534, 65534)
    with pytest.raises(ConfigError, match="owned by uid 65534"):
        read_secret(secret)
