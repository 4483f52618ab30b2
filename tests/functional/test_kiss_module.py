"""`kiss.*` through the real Salt loader, and the `kiss` pillar through real `salt-call --local`."""

import pytest
import salt.config
from kisstest import run_salt_call, salt_call, write_minion_config
from salt.exceptions import CommandExecutionError
from saltfactories.utils.functional import Loaders

pytestmark = pytest.mark.fast


@pytest.fixture
def loaders(example_site, tmp_path):
    config = write_minion_config(tmp_path / "salt", example_site)
    opts = salt.config.minion_config(str(config / "minion"))
    loaders = Loaders(opts, loaded_base_name="kisstest.loaded")
    yield loaders
    loaders.reset_state()


def test_inventory_and_vm_through_the_loader(loaders, example_site):
    kiss = loaders.modules.kiss

    result = kiss.inventory()
    web = kiss.vm("web")

    assert result["allocated"] == ["db", "mail", "web"]
    assert result["changed"] is True
    assert (example_site / "vm-config" / "example.yml").exists()
    assert web["drbd_minor"] == 8
    assert web["mac"] == "52:54:00:4b:00:08"
    assert web["disabled"] is False
    assert [d["lv"] for d in kiss.vm("db")["disks"]] == ["db_root", "db_data", "db_logs"]


def test_inventory_test_mode_writes_nothing(loaders, example_site):
    result = loaders.modules.kiss.inventory(test=True)

    assert result["allocated"] == ["db", "mail", "web"]
    assert not (example_site / "vm-config" / "example.yml").exists()


def test_bad_input_is_a_command_error(loaders, example_site):
    (example_site / "vm-config" / "example" / "web.yml").write_text("name: web\ncpus: many\n")

    with pytest.raises(CommandExecutionError, match=r"web\.yml: cpus: must be a whole number"):
        loaders.modules.kiss.inventory()

    assert not (example_site / "vm-config" / "example.yml").exists()


def test_salt_call_pillar_returns_the_example_vms(example_site, tmp_path):
    config = write_minion_config(tmp_path / "salt", example_site, minion_id="node2")
    salt_call(config, "kiss.inventory")

    kiss = salt_call(config, "pillar.get", "kiss")

    assert kiss["cluster"]["name"] == "example"
    assert kiss["cluster"]["primary"] == "node1"
    assert [m["name"] for m in kiss["cluster"]["members"]] == ["node1", "node2"]
    assert sorted(kiss["vms"]) == ["db", "mail", "web"]
    assert kiss["vms"]["db"]["primary_on"] == "node2"
    assert [d["minor"] for d in kiss["vms"]["db"]["disks"]] == [0, 1, 2]
    assert kiss["disabled_vms"] == {}


def test_salt_call_reports_inventory_errors(example_site, tmp_path):
    config = write_minion_config(tmp_path / "salt", example_site)
    (example_site / "vm-config" / "example" / "web.yml").write_text("name: [")

    done = run_salt_call(config, "kiss.inventory")

    assert done.returncode != 0
    assert "vm-config/example/web.yml: (file): is not valid YAML" in done.stderr


def test_a_failed_action_is_a_command_error_naming_the_command(loaders):
    """The real drbdadm-84 on a resource no config defines: it fails before touching DRBD."""
    with pytest.raises(CommandExecutionError, match=r"drbdadm-84 adjust nosuchvm exited \d+: .+"):
        loaders.modules.kiss.drbd_adjust("nosuchvm", drbdadm="/usr/lib/drbd/drbdadm-84")


def test_overview_through_the_loader_shows_a_silent_peer_as_unreachable(example_site, tmp_path):
    # The remote command `false` prints nothing: the peer is unreachable, said as data.
    config = write_minion_config(
        tmp_path / "salt", example_site, kiss_lookup={"remote_command": ["false"]}
    )
    loaders = Loaders(salt.config.minion_config(str(config / "minion")), loaded_base_name="kt.o")
    try:
        found = loaders.modules.kiss.overview()
        with pytest.raises(CommandExecutionError, match="not between 0 and 600"):
            loaders.modules.kiss.overview(timeout=0)
    finally:
        loaders.reset_state()
    assert found["here"] == "node1" and found["status"] == 1
    assert found["nodes"][1] == {
        "name": "node2",
        "reachable": False,
        "error": "exit status 1: no facts on stdout",
        "problems": ["node2: unreachable (exit status 1: no facts on stdout)"],
    }
