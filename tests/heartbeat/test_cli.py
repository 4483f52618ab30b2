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
