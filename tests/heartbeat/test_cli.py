"""`kissclusterd` as a command: exit statuses an operator and systemd rely on."""

import subprocess
import sys

import hb_netlab as netlab
import pytest

pytestmark = pytest.mark.fast

KISSCLUSTERD = str(netlab.CHECKOUT / "scripts" / "kissclusterd")


def test_status_without_a_daemon(tmp_path):
    done = subprocess.run(
        [sys.executable, KISSCLUSTERD, "status",
         "--run-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 1 and "no status under" in done.stderr


def test_config_error_exits_with_status_2(tmp_path):
    config = tmp_path / "kissclusterd.conf"
    config.write_text("[kissclusterd]\nstor_addrs = 10.231.9.1 10.231.9.2\n")
    done = subprocess.run(
        [sys.executable, KISSCLUSTERD, "run",
         "--config", str(config), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "prod_addrs: missing (required)" in done.stderr


def test_not_a_member_exits_with_status_2(tmp_path):
    (tmp_path / "secret").write_text(netlab.SECRET)
    (tmp_path / "secret").chmod(0o600)
    config = tmp_path / "kissclusterd.conf"
    config.write_text(
        "[kissclusterd]\nstor_addrs = 10.231.9.1 10.231.9.2\nprod_addrs = 10.231.8.1 10.231.8.2\n"
        f"ping_addr = 10.231.8.254\nsecret_file = {tmp_path / 'secret'}\n"
    )
    done = subprocess.run(
        [sys.executable, KISSCLUSTERD, "run",
         "--config", str(config), "--run-dir", str(tmp_path / "run")],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert done.returncode == 2 and "is this a cluster member" in done.stderr


def check_config(config) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, KISSCLUSTERD, "check-config", "--config", str(config)],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip


def test_check_config_is_silent_on_a_good_file(tmp_path):
    """The secret file is not read: kiss.node checks the config before kiss-init copies it."""
    config = tmp_path / "kissclusterd.conf"
    config.write_text(
        "[kissclusterd]\nstor_addrs = 10.231.9.1 10.231.9.2\nprod_addrs = 10.231.8.1 10.231.8.2\n"
        f"ping_addr = 10.231.8.254\nsecret_file = {tmp_path / 'absent'}\ndead_time = 2\n"
    )
    done = check_config(config)
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_check_config_names_the_file_and_key_of_a_bad_file(tmp_path):
    config = tmp_path / "kissclusterd.conf"
    config.write_text(
        "[kissclusterd]\nstor_addrs = 10.231.9.1 10.231.9.2\nprod_addrs = 10.231.8.1 10.231.8.2\n"
        "ping_addr = 10.231.8.254\ninterval = 2\ndead_time = 3\n"
    )
    done = check_config(config)
    assert done.returncode == 1 and done.stdout == ""
    assert f"{config}: [kissclusterd] dead_time: 3.0 s must be at least twice" in done.stderr
    missing = check_config(tmp_path / "absent.conf")
    assert missing.returncode == 1 and "absent.conf: cannot read" in missing.stderr
