"""The initial sync of a resource kiss.vms just created: forced from here only when the peer
holds no data. A stand-in drbdadm answers `dstate` as the peer's DRBD would and records every
call (there is no DRBD module on this host; the qemu lab rebuilds a node for real in
tests/lab/test_3c_rebuild.py)."""

import json
import sys

import pytest

from kisscluster import initialsync

pytestmark = pytest.mark.fast

STAND_IN = """#!{python}
import json, sys
with open({log!r}, "a") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
if sys.argv[1] == "dstate":
    print({answer!r})
"""


@pytest.mark.parametrize(
    ("peer_disks", "decision"),
    [
        (["Inconsistent", "Inconsistent"], "force"),
        (["Diskless"], "force"),
        (["UpToDate"], "from-peer"),
        (["Outdated", "UpToDate"], "from-peer"),
        (["Inconsistent", "UpToDate"], "from-peer"),  # any volume with data: never force
        (["DUnknown"], None),
        ([], None),
    ],
)
def test_the_decision(peer_disks, decision):
    assert initialsync.decide(peer_disks) == decision


def drbdadm(tmp_path, answer: str):
    log = tmp_path / "calls.log"
    program = tmp_path / "drbdadm"
    program.write_text(STAND_IN.format(python=sys.executable, log=str(log), answer=answer))
    program.chmod(0o755)
    return str(program), lambda: [json.loads(line) for line in log.read_text().splitlines()]


def test_a_peer_with_data_is_never_overwritten(tmp_path):
    program, calls = drbdadm(tmp_path, "Inconsistent/UpToDate")
    said = initialsync.initial_sync(program, "web", wait=5)
    assert "the peer holds its data" in said
    assert calls() == [["dstate", "web"]]


def test_two_new_copies_sync_from_the_primary_on_node(tmp_path):
    program, calls = drbdadm(tmp_path, "Inconsistent/Inconsistent")
    said = initialsync.initial_sync(program, "web", wait=5)
    assert "initial sync started from this node (the peer's copy is new too)" in said
    assert calls() == [["dstate", "web"], ["primary", "--force", "web"], ["secondary", "web"]]


def test_no_peer_copy_up_within_the_wait_means_a_first_roll_out(tmp_path):
    program, calls = drbdadm(tmp_path, "Inconsistent/DUnknown")
    said = initialsync.initial_sync(program, "web", wait=1)
    assert "(no peer copy is up)" in said
    assert calls()[-2:] == [["primary", "--force", "web"], ["secondary", "web"]]
    assert len(calls()) >= 3  # it asked more than once before giving up waiting


def test_a_new_volume_is_forced_only_when_the_peers_copy_of_it_is_new_too(tmp_path):
    program, calls = drbdadm(tmp_path, "Inconsistent/Inconsistent")
    said = initialsync.initial_sync(program, "db", wait=5, volume=3, keep_primary=True)
    assert said == "db/3: initial sync started from this node (the peer's copy is new too)"
    # the VM runs here: the volume stays Primary with the rest of its resource
    assert calls() == [["dstate", "db/3"], ["primary", "--force", "db/3"]]


def test_a_new_volume_the_peer_has_not_created_yet_syncs_into_it_later(tmp_path):
    """The VM's node runs first: the peer's copy of the volume comes with the peer's run."""
    program, calls = drbdadm(tmp_path, "Inconsistent/DUnknown")
    said = initialsync.initial_sync(program, "db", wait=0.2, volume=3)
    assert said == "db/3: initial sync started from this node (no peer copy is up)"
    assert calls()[-2:] == [["primary", "--force", "db/3"], ["secondary", "db/3"]]
