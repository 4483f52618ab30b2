"""Outdate requests and replies, the peer's answer to each DRBD state, the handler's exit codes,
and which copies keep a node from taking its VMs back."""

import ipaddress
from pathlib import Path

import pytest

from kisscluster.heartbeat import copies, outdate
from kisscluster.heartbeat.core import Core, Rules, State
from kisscluster.heartbeat.fence import exit_code, jobs_after
from kisscluster.heartbeat.outdate import Answer, LocalCopy

pytestmark = pytest.mark.fast

SECRET = b"a shared secret of enough bytes"
N1 = ipaddress.ip_address("10.99.0.1")


def request(resource: str = "web") -> outdate.Request:
    return outdate.Request(N1, 1.7e9, b"n" * 16, resource)


def test_requests_and_replies_round_trip_and_are_authenticated():
    datagram = outdate.encode_request(request(), SECRET)
    assert outdate.decode_request(datagram, SECRET) == request()
    reply = outdate.Reply(N1, 1.7e9, b"n" * 16, Answer.PRIMARY)
    assert outdate.decode_reply(outdate.encode_reply(reply, SECRET), SECRET) == reply
    with pytest.raises(outdate.BadMessage, match="HMAC"):
        outdate.decode_request(datagram, b"another secret of enough bytes")
    tampered = bytearray(datagram)
    tampered[40] ^= 1
    with pytest.raises(outdate.BadMessage, match="HMAC"):
        outdate.decode_request(bytes(tampered), SECRET)
    with pytest.raises(outdate.BadMessage, match="KCOA"):  # a request is no reply
        outdate.decode_reply(datagram, SECRET)


@pytest.mark.parametrize("name", ["web.old", "../etc", "web;reboot", "a" * 40])
def test_a_request_names_only_a_safe_resource(name):
    with pytest.raises(ValueError, match="VM name"):
        outdate.encode_request(request(name), SECRET)


@pytest.mark.parametrize(
    ("roles", "connections", "disks", "answer"),
    [
        (("Primary",), ("WFConnection",), ("UpToDate",), Answer.PRIMARY),
        (("Secondary",), ("Connected",), ("UpToDate",), Answer.RETRY),
        (("Secondary",), ("SyncSource",), ("UpToDate",), Answer.RETRY),
        (("Secondary", "Secondary"), ("StandAlone",) * 2, ("Outdated",) * 2, Answer.OUTDATED),
        (("Secondary",), ("WFConnection",), ("Inconsistent",), Answer.INCONSISTENT),
        (("Secondary",), ("WFConnection",), ("Diskless",), Answer.INCONSISTENT),
        (("Secondary",), ("WFConnection",), ("UpToDate",), None),  # run drbdadm outdate
        (("Secondary", "Secondary"), ("WFConnection",) * 2, ("Outdated", "UpToDate"), None),
        ((), (), (), None),  # not up: drbdadm outdate writes the metadata
    ],
)
def test_the_peer_answers_from_what_its_drbd_says(roles, connections, disks, answer):
    assert outdate.decide(LocalCopy(roles, connections, disks)) == answer


@pytest.mark.parametrize(
    ("connections", "disks", "answer"),
    [
        # It ran the VM while the asker hung, and gave it back: the asker's copy is older.
        (("StandAlone",), ("UpToDate",), Answer.PRIMARY),
        (("WFConnection", "WFConnection"), ("UpToDate", "UpToDate"), Answer.PRIMARY),
        (("Connected",), ("UpToDate",), Answer.RETRY),
        (("StandAlone",), ("Outdated",), Answer.OUTDATED),
    ],
)
def test_a_copy_with_writes_the_asker_lacks_is_never_outdated(connections, disks, answer):
    copy = LocalCopy(("Secondary",) * len(disks), connections, disks, ahead=True)
    assert outdate.decide(copy) == answer


@pytest.mark.parametrize(
    ("get_gi", "ahead"),
    [
        # drbdadm get-gi on the lab's DRBD 8.4: node2 after it ran web through node1's hang
        ("C70493F08EC2D100:9F3CEEC2F9F91042:DF31129B35A29C7E:DF30129B35A29C7E:1:0:0:0:0:1:0\n",
         True),
        ("2A5026C1201457FB:0000000000000000:9927A4ACA38829C5:9926A4ACA38829C5:1:1:1:1:0:0:0\n",
         False),
        ("2A5026C1201457FB:0000000000000000:99:99:1:1:1:1:0:0:0\n"
         "C70493F08EC2D100:9F3CEEC2F9F91042:DF:DF:1:0:0:0:0:1:0\n", True),
        ("", False),
    ],
)  # fmt: skip
def test_the_bitmap_uuid_tells_a_copy_ahead_of_its_peer(get_gi, ahead):
    assert outdate.bitmap_uuid_set(tuple(get_gi.split())) is ahead


@pytest.mark.parametrize(
    ("answer", "heard", "policy", "primary_here", "switch_lost", "code"),
    [
        (Answer.OUTDATED, True, "takeover", True, False, 4),
        (Answer.INCONSISTENT, True, "freeze", False, False, 3),
        (Answer.PRIMARY, True, "takeover", False, False, 6),
        (Answer.PRIMARY, True, "takeover", True, False, 6),
        (None, True, "takeover", True, False, 1),  # it answers, but cannot outdate: never "dead"
        (None, False, "takeover", True, False, 5),
        (None, False, "freeze", True, False, 1),
        (None, False, "takeover", True, True, 1),  # cut off from peer and switch: stand down
        (None, False, "takeover", False, True, 1),  # ... and never promote
        (Answer.OUTDATED, True, "takeover", False, True, 4),  # an answer outweighs the switch
    ],
)
def test_the_handler_exit_code(answer, heard, policy, primary_here, switch_lost, code):
    assert exit_code(answer, heard, policy, primary_here, switch_lost)[0] == code


PROC_DRBD = """version: 8.4.11 (api:1/proto:86-101)
srcversion: 0
 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0
 4: cs:SyncTarget ro:Secondary/Primary ds:Inconsistent/UpToDate C r-----
 5: cs:WFConnection ro:Secondary/Unknown ds:Outdated/DUnknown C r-----
 8: cs:Unconfigured
 12: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----
 13: cs:WFReportParams ro:Secondary/Unknown ds:Inconsistent/DUnknown C r----s
 16: cs:Connected ro:Secondary/Primary ds:UpToDate/UpToDate C r-----
 17: cs:Connected ro:Secondary/Primary ds:Inconsistent/Inconsistent C r-----
"""


def node_files(tmp_path: Path, home: list[str], resources: dict[str, list[int]]) -> tuple:
    systemd, drbd_dir, proc = tmp_path / "systemd", tmp_path / "drbd.d", tmp_path / "drbd"
    (systemd / "primary-vms.target.d").mkdir(parents=True)
    (systemd / "all-vms.target.wants").mkdir()
    for vm in resources:
        (systemd / "all-vms.target.wants" / f"vm@{vm}.service").symlink_to("../vm@.service")
    wants = "".join(f"Wants=vm@{vm}.service\n" for vm in home)
    conflicts = "Conflicts=vm@other.service\n"
    (systemd / copies.HOME_DROP_IN).write_text(f"[Unit]\n{wants}{conflicts}")
    drbd_dir.mkdir()
    for vm, minors in resources.items():
        volumes = "".join(f"device /dev/drbd{m} minor {m};\n" for m in minors)
        (drbd_dir / f"{vm}.res").write_text(f"resource {vm} {{\n{volumes}}}\n")
    proc.write_text(PROC_DRBD)
    return systemd, drbd_dir, proc


def test_the_copies_that_cannot_run_their_vm_here(tmp_path):
    systemd, drbd_dir, proc = node_files(tmp_path, ["web"], {"web": [0], "db": [4, 5], "x": [8]})
    assert copies.enabled_vms(systemd) == ["db", "web", "x"]
    assert copies.home_vms(systemd) == ["web"]
    assert copies.stale(["web"], drbd_dir, proc) == []
    assert copies.stale(["web", "db", "x", "gone"], drbd_dir, proc) == [
        "db/4 Inconsistent",
        "db/5 Outdated",
        "x/8 not up",
        "gone no resource file",
    ]


def test_a_disk_added_to_a_vm_running_here_leaves_its_copy_good_to_run(tmp_path):
    """Its new volume is not up (the resource file names it before `drbdadm adjust` runs), then
    Inconsistent beside volumes Primary here until its initial sync starts (lab, DRBD 8.4).
    Counted stale, it moved every VM of this node to the peer. Where the VM runs on the peer,
    the same new volume here is a copy that cannot run it."""
    resources = {"web": [12, 13, 14], "mail": [16, 17]}  # 14: named, not up yet
    _, drbd_dir, proc = node_files(tmp_path, ["web", "mail"], resources)
    assert copies.stale(["web", "mail"], drbd_dir, proc) == ["mail/17 Inconsistent"]


def test_a_failed_disk_of_a_vm_running_here_makes_its_copy_stale(tmp_path):
    """Primary and Diskless: DRBD serves the VM's disk from the peer, which should run it."""
    _, drbd_dir, proc = node_files(tmp_path, ["web"], {"web": [12, 20]})
    proc.write_text(
        PROC_DRBD + " 20: cs:Connected ro:Primary/Secondary ds:Diskless/UpToDate C r-----\n"
    )
    assert copies.stale(["web"], drbd_dir, proc) == ["web/20 Diskless"]


def test_a_node_with_a_stale_copy_ranks_below_a_peer_that_lost_everything_else():
    core = Core(Rules(interval=1, dead_time=3, init_dead=3), started=0.0, last_wall=0.0)
    core.copies_ready = False
    for t in (4.0, 5.0, 6.0):
        core.heartbeat("stor", 70, t)  # the peer lost production and the switch
        core.heartbeat("prod", 70, t)
        core.ping(True, t)
        decision = core.evaluate(t, t)
    assert decision.own_priority == 100 - 32
    assert decision.state == State.NONE
    core.copies_ready = True
    for t in (7.0, 8.0):
        core.heartbeat("stor", 70, t)
        core.ping(True, t)
        decision = core.evaluate(t, t)
    assert decision.state == State.ALL


def test_a_connect_request_is_its_own_kind():
    datagram = outdate.encode_request(request("web"), SECRET, outdate.CONNECT_MAGIC)
    assert outdate.decode_request(datagram, SECRET, outdate.CONNECT_MAGIC).resource == "web"
    with pytest.raises(outdate.BadMessage, match="KCOQ"):  # never taken for an outdate request
        outdate.decode_request(datagram, SECRET)


@pytest.mark.parametrize(
    ("marked", "status", "yields"),
    [
        (True, "inmigrate", True),  # the target before the switch-over: no guest yet
        (True, "postmigrate", True),  # the source after it: its guest runs on the peer
        (True, None, True),  # no qemu here any more
        (True, "running", False),  # the guest runs here: the peer's side gives way
        (True, "paused", False),  # paused by the operator, but here
        (True, "finish-migrate", False),  # paused for the last phase: the target lacks it yet
        (True, "io-error", False),  # paused on an I/O error, still here
        (False, "postmigrate", False),  # no migration of ours: DRBD's usual answers
        (False, None, False),
    ],
)
def test_in_a_live_migration_the_side_without_the_guest_gives_way(marked, status, yields):
    assert outdate.yields_in_migration(marked, status) is yields


NOT_MARKED, GUEST_HERE, NO_GUEST_HERE = (False, False), (True, False), (True, True)


@pytest.mark.parametrize(
    ("code", "answer", "primary_here", "cut_off", "window", "jobs"),
    [
        # No migration: a Primary told the peer is Primary stands down, as before.
        (6, Answer.PRIMARY, True, False, NOT_MARKED, ["stand-down"]),
        (4, Answer.OUTDATED, True, False, NOT_MARKED, []),
        # The link lost in a migration's window. The side without the guest hears PRIMARY: it
        # wrote nothing, so it gives way when the peer asks (no stand-down, no full resync).
        (6, Answer.PRIMARY, True, False, NO_GUEST_HERE, []),
        # The side with the guest hears OUTDATED (the peer gave way): it ends the window here.
        (4, Answer.OUTDATED, True, False, GUEST_HERE, ["go-on"]),
        # The peer died in the window: whichever side is left goes on (restarting a qemu that
        # holds no guest), as after a takeover or a power-off.
        (5, None, True, False, NO_GUEST_HERE, ["go-on"]),
        (7, None, True, False, GUEST_HERE, ["go-on"]),
        # Cut off from peer and switch in the window: this side stands down, the peer goes on.
        (1, None, True, True, NO_GUEST_HERE, ["stand-down"]),
        # Frozen, waiting: nothing ends yet.
        (1, Answer.RETRY, True, False, GUEST_HERE, []),
    ],
)
def test_after_the_handler_a_migration_window_ends_on_the_side_that_goes_on(
    code, answer, primary_here, cut_off, window, jobs
):
    assert jobs_after(code, answer, primary_here, cut_off, None, window) == jobs
