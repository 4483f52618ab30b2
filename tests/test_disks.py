"""The plan for the disks of a VM that exists on a node (kisscluster.disks): a new extra disk,
a grown one, a refused shrink, nothing; which node resizes, syncs and tells qemu. Pure logic on
the example site's pillar; the commands run through Salt in tests/states/test_kiss_vms.py."""

import pytest

from kisscluster import disks, drbd, inventory, pillar
from kisscluster.steps import Programs

pytestmark = pytest.mark.fast

MIB = 1 << 20
EXTENT = 4 * MIB
PROGRAMS = Programs("lvcreate", "lvextend", "drbdadm")
LVS = {"db_root": 64 * MIB, "db_data": 32 * MIB, "db_logs": 16 * MIB}


def minor(lv_bytes, cs="Connected", ro="Secondary/Primary", ds="UpToDate/UpToDate"):
    role, peer_role = ro.split("/")
    disk, peer_disk = ds.split("/")
    return disks.Minor(cs, role, peer_role, disk, peer_disk, drbd.usable_bytes(lv_bytes))


def up(lvs=LVS):
    """DRBD up with every volume of db sized from `lvs`, connected, the VM on the peer."""
    return {0: minor(lvs["db_root"]), 1: minor(lvs["db_data"]), 2: minor(lvs["db_logs"])}


@pytest.fixture
def db(example_site):
    inventory.run(example_site)
    return pillar.build(example_site)["vms"]["db"]


def with_size(vm, volume, size):
    changed = [dict(d, size_bytes=size) if d["volume"] == volume else d for d in vm["disks"]]
    return dict(vm, disks=changed)


def plan(vm, node="node2", lvs=LVS, minors=None, drives=None):
    observed = disks.Observed(EXTENT, up() if minors is None else minors, drives, "/run/kvm")
    return disks.plan(vm, node, "vg0", lvs, PROGRAMS, observed)


def whats(steps):
    return [step.what for step in steps]


def test_usable_size_is_drbd_84s_internal_metadata_arithmetic():
    # 64 MiB: 131072 sectors, 4 bitmap sectors rounded to 8, superblock 8, activity log 64
    assert drbd.usable_bytes(64 * MIB) == (131072 - 80) * 512
    assert drbd.usable_bytes(96 * MIB) == (196608 - 80) * 512
    # 1 TiB: 65536 bitmap sectors
    assert drbd.usable_bytes(1 << 40) == ((1 << 31) - 65536 - 72) * 512


@pytest.mark.parametrize(
    ("wanted", "lv", "state", "action"),
    [
        (64 * MIB, None, None, disks.CREATE),
        (64 * MIB, 96 * MIB, minor(96 * MIB), disks.REFUSE),
        (10 * MIB, 12 * MIB, minor(12 * MIB), disks.NOTHING),  # LVM rounded 10M up to 12M
        (96 * MIB, 64 * MIB, minor(64 * MIB), disks.GROW),
        (96 * MIB, 96 * MIB, minor(64 * MIB), disks.RESIZE),  # LV grown, DRBD not yet
        (96 * MIB, 96 * MIB, minor(96 * MIB), disks.NOTHING),
        (96 * MIB, 96 * MIB, None, disks.NOTHING),  # DRBD not up: nothing to compare
    ],
)
def test_the_decision_per_volume(wanted, lv, state, action):
    assert disks.decide(wanted, lv, EXTENT, state) == action


def test_a_new_disk_gets_lv_metadata_of_its_volume_only_adjust_and_its_sync(db):
    grown = dict(db, disks=[*db["disks"], {"name": "scratch", "volume": 3, "minor": 3,
                                           "size_bytes": 8 * MIB, "lv": "db_scratch"}])  # fmt: skip
    steps, notes = plan(grown, minors=up() | {0: minor(64 * MIB, ro="Primary/Secondary")})
    assert whats(steps) == [
        "create LV vg0/db_scratch (8M)",
        "create DRBD metadata db/3 (this volume only)",
        "add the new volumes to DRBD resource db",
        "start the initial sync of db/3 from here unless the peer's copy has data",
    ]
    assert [list(s.argv) for s in steps[1:3]] == [
        ["drbdadm", "--force", "create-md", "db/3"],
        ["drbdadm", "adjust", "db"],
    ]
    assert steps[3].kwargs == {"drbdadm": "drbdadm", "resource": "db", "volume": 3,
                               "keep_primary": True}  # fmt: skip
    assert steps[3].argv[-4:] == ("db", "--volume", "3", "--keep-primary")
    assert notes == [
        "VM db sees its new disk scratch (volume 3) after its next start: a running qemu is not "
        "given new disks"
    ]
    # the VM runs on the peer: its run forces the volume there (DRBD 8.4 refuses to promote a
    # volume while the peer is Primary on another)
    assert whats(plan(grown)[0])[-1] == "add the new volumes to DRBD resource db"
    # the VM runs nowhere: its primary_on node forces the volume and puts it back to Secondary
    nowhere = {m: minor(LVS[lv], ro="Secondary/Secondary") for m, lv in
               ((0, "db_root"), (1, "db_data"), (2, "db_logs"))}  # fmt: skip
    steps, _ = plan(grown, node="node2", minors=nowhere)
    assert steps[3].kwargs["keep_primary"] is False
    assert whats(plan(grown, node="node1", minors=nowhere)[0])[-1].startswith("add the new")


def test_a_sync_that_never_started_is_started_again_existing_volumes_never(db):
    here = {0: minor(64 * MIB, ro="Primary/Secondary")}
    never = {2: minor(16 * MIB, ro="Primary/Secondary", ds="Inconsistent/Inconsistent")}
    steps, _ = plan(db, minors=up() | here | never)
    assert whats(steps) == [
        "start the initial sync of db/2 from here unless the peer's copy has data"
    ]
    syncing = {2: minor(16 * MIB, cs="SyncSource", ds="UpToDate/Inconsistent")}
    assert plan(db, minors=up() | here | syncing) == ([], [])
    on_peer = {2: minor(16 * MIB, ds="Inconsistent/Inconsistent")}
    assert plan(db, minors=up() | on_peer) == ([], [])  # the peer runs the VM: its run does it


def test_a_larger_size_grows_the_lv_resizes_drbd_and_tells_the_running_qemu(db):
    primary = {0: minor(64 * MIB, ro="Primary/Secondary")}
    drives = {0: drbd.usable_bytes(64 * MIB), 1: drbd.usable_bytes(32 * MIB)}
    steps, notes = plan(with_size(db, 0, 96 * MIB), minors=up() | primary, drives=drives)
    assert whats(steps) == [
        "grow LV vg0/db_root to 96M",
        "resize DRBD volume db/0",
        "tell the running VM db the size of volume 0 (QMP block_resize)",
    ]
    assert [list(s.argv) for s in steps] == [
        ["lvextend", "--size", f"{96 * MIB}b", "vg0/db_root"],
        ["drbdadm", "resize", "db/0"],
        ["block_resize", "/run/kvm/db.qmp", "/dev/drbd/by-res/db/0"],
    ]
    assert any("grows once the LVs of both nodes are grown" in note for note in notes)


def test_the_first_node_resizes_in_vain_and_the_second_node_resizes_for_real(db):
    """Node by node: the first node's resize keeps DRBD's size (the peer's LV is small), so its
    next look finds the resize pending; once the second node's run grew DRBD, nothing is left."""
    wanted = with_size(db, 0, 96 * MIB)
    first, _ = plan(wanted, node="node1")
    assert whats(first) == ["grow LV vg0/db_root to 96M", "resize DRBD volume db/0"]
    grown = dict(LVS, db_root=96 * MIB)
    again, _ = plan(wanted, node="node1", lvs=grown)  # DRBD still at 64M
    assert whats(again) == ["resize DRBD volume db/0"]
    done = up(grown)
    assert plan(wanted, node="node1", lvs=grown, minors=done) == ([], [])


def test_qemu_behind_drbd_is_told_even_without_a_resize_here(db):
    """The VM runs on the node whose run came first: its next run tells qemu."""
    grown = dict(LVS, db_root=96 * MIB)
    drives = {0: drbd.usable_bytes(64 * MIB), 1: drbd.usable_bytes(32 * MIB)}
    steps, _ = plan(with_size(db, 0, 96 * MIB), lvs=grown, minors=up(grown), drives=drives)
    assert whats(steps) == ["tell the running VM db the size of volume 0 (QMP block_resize)"]
    drives[0] = drbd.usable_bytes(96 * MIB)
    assert plan(with_size(db, 0, 96 * MIB), lvs=grown, minors=up(grown), drives=drives) == ([], [])


@pytest.mark.parametrize(
    ("state", "why"),
    [
        (None, "its DRBD device is not up here"),
        (minor(32 * MIB, cs="WFConnection"), "DRBD is WFConnection, not Connected"),
        (minor(32 * MIB, cs="SyncSource"), "DRBD is SyncSource, not Connected"),
        (minor(32 * MIB, ro="Secondary/Secondary"), "the VM runs on neither node"),
    ],
)
def test_a_resize_drbd_would_refuse_waits_and_says_why(db, state, why):
    minors = {k: v for k, v in (up() | {1: state}).items() if v is not None}
    steps, notes = plan(with_size(db, 1, 48 * MIB), minors=minors)
    assert whats(steps) == ["grow LV vg0/db_data to 48M"]
    assert any(why in note and "next run of kiss-configure" in note for note in notes), notes


def test_a_smaller_size_is_refused_before_anything_runs(db):
    bigger = with_size(with_size(db, 0, 96 * MIB), 1, 16 * MIB)
    with pytest.raises(disks.Refused, match="asks for 16M, LV vg0/db_data holds 32M: kisscluster "
                       "never shrinks a disk; put its size back to 32M or more"):  # fmt: skip
        plan(bigger)


def test_nothing_to_do_is_nothing(db):
    assert plan(db, drives={0: drbd.usable_bytes(64 * MIB)}) == ([], [])


def test_what_drbd_says_is_read_from_proc_and_sys(tmp_path):
    (tmp_path / "proc").mkdir()
    (tmp_path / "proc/drbd").write_text(
        "version: 8.4.11 (api:1/proto:86-101)\n"
        " 0: cs:Connected ro:Primary/Secondary ds:UpToDate/UpToDate C r-----\n"
        "    ns:0 nr:0 dw:0 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
        " 1: cs:Unconfigured\n"
        " 3: cs:WFConnection ro:Secondary/Unknown ds:Inconsistent/DUnknown C r----s\n"
    )
    for number, sectors in ((0, 130992), (3, 16304)):
        (tmp_path / f"sys/block/drbd{number}").mkdir(parents=True)
        (tmp_path / f"sys/block/drbd{number}/size").write_text(f"{sectors}\n")
    assert disks.read_minors([0, 1, 2, 3], tmp_path) == {
        0: disks.Minor("Connected", "Primary", "Secondary", "UpToDate", "UpToDate", 130992 * 512),
        3: disks.Minor("WFConnection", "Secondary", "Unknown", "Inconsistent", "DUnknown",
                       16304 * 512),
    }  # fmt: skip
    assert disks.read_minors([0], tmp_path / "nowhere") == {}
