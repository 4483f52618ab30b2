"""kiss-migrate and kiss-maintenance on the rolled-out pair, both nodes sampled throughout.

web (home node1) is migrated to node2 and back (`--home`, run on node2): its qemu and its
DRBD primary move, a value planted in its guest RAM survives, it stays away until migrated
back, and no VM or volume is ever active on both nodes outside the migration's window. A
migration whose target qemu dies mid-way leaves web running on node1, untouched, with two
primaries no longer allowed; so does a cut of node1's storage link in the window, after which
the copies resync. A crash of node1 in the window boots web on node2 (lab_extended).
Maintenance of node1, then a crash of node2.
"""

import contextlib
import json
import shlex
import threading
import time
from collections.abc import Iterator

import pytest
from faults import DURING, begin, check, links_cut, read_marker, settle
from labtest import (
    Lab,
    Sampler,
    kiss_pillar,
    settled,
    snapshot,
    target_active,
    vm_running,
    wait_until,
)

from kisscluster.lab import cluster
from kisscluster.lab.machine import STORAGE_NIC

PYTHON = "/opt/kisscluster/bin/python3"
DRBDSETUP = "/usr/lib/drbd/drbdsetup-84"
STORAGE_DEVICE = "ens4"  # the storage NIC in the lab's guests (kisscluster/lab/machine.py)
SETTLE_TIMEOUT = 900
FAILOVER_TIMEOUT = 180
ADDRESS = 0x2000000  # 32 MiB into the 64 MiB guest: SeaBIOS leaves it alone
PLANTED = "a1b2c3d4e5f60718"  # bytes, as gdb's M packet writes them
# The guest's RAM through its qemu: `plant` writes through qemu's gdb stub (QMP starts it), and
# `read` prints two words through the monitor's `xp` (QMP human-monitor-command).
GUEST_RAM = """
import socket, sys
from pathlib import Path
from kisscluster.vmmonitor import Qmp
vm, action = sys.argv[1], sys.argv[2]
qmp = Qmp(Path(f"/run/kvm/{vm}.qmp"))
hmp = lambda line: qmp.execute("human-monitor-command", **{"command-line": line})
if action == "read":
    print(hmp(f"xp /2wx {int(sys.argv[3], 16)}").split(":", 1)[1].strip())
    sys.exit(0)
hmp("gdbserver tcp:127.0.0.1:1234")
gdb = socket.create_connection(("127.0.0.1", 1234), timeout=30)
def packet(data):
    gdb.sendall(f"${data}#{sum(data.encode()) % 256:02x}".encode())
    while True:  # skip the stop replies qemu sends as the stub halts the guest
        reply = b""
        while b"#" not in reply or len(reply.split(b"#")[-1]) < 2:
            reply += gdb.recv(1)
        gdb.sendall(b"+")
        answer = reply.decode().split("$", 1)[1].split("#")[0]
        if answer[:1] not in ("T", "S"):
            return answer
written = packet(f"M{int(sys.argv[3], 16):x},{len(sys.argv[4]) // 2}:{sys.argv[4]}")
assert written == "OK", written
assert packet("D") == "OK"
gdb.close()
hmp("gdbserver none")
if qmp.execute("query-status")["status"] != "running":
    qmp.execute("cont")
"""


def guest_ram(lab: Lab, machine, action: str, *words: str) -> str:
    script = shlex.quote(GUEST_RAM)
    return lab.sh(machine, PYTHON, "-c", script, "web", action, hex(ADDRESS), *words).strip()


def main_pid(lab: Lab, machine) -> int:
    return int(lab.sh(machine, "systemctl", "show", "-p", "MainPID", "--value", "vm@web.service"))


def two_primaries_allowed(lab: Lab, machine) -> bool:
    """What the running DRBD says (drbdsetup show prints the options that are set)."""
    return "allow-two-primaries" in lab.sh(machine, DRBDSETUP, "show", "web")


def placement(lab: Lab, machine) -> dict:
    done = machine.ssh(["cat", "/var/lib/kisscluster/placement.json"], check=False)
    return json.loads(done.stdout) if done.returncode == 0 else {"away": {}, "maintenance": []}


def overview(lab: Lab, machine) -> dict:
    # Under TCG the peer takes more than the 3 s a real node has to answer.
    done = machine.ssh(["kiss-overview", "--json", "--timeout", "30"], check=False, timeout=90)
    return json.loads(done.stdout)


def vm_in(report: dict, name: str) -> dict:
    return next(vm for vm in report["vms"] if vm["name"] == name)


def figures(out: str) -> str:
    return next(line for line in out.splitlines() if " in all, qemu's migration " in line)


@pytest.mark.lab
def test_web_migrates_to_node2_stays_there_and_comes_home(rolled_out: Lab) -> None:
    lab = rolled_out
    vms = kiss_pillar(lab)["vms"]
    wait_until("primary-vms settled", lambda: settled(lab, vms), SETTLE_TIMEOUT)
    guest_ram(lab, lab.node1, "plant", PLANTED)
    before = guest_ram(lab, lab.node1, "read")
    planted = bytes.fromhex(PLANTED)
    words = [int.from_bytes(planted[i : i + 4], "little") for i in (0, 4)]
    assert before == " ".join(f"0x{word:08x}" for word in words), before
    with Sampler(lab) as sampler:
        began = time.monotonic()
        out = lab.sh(lab.node1, "kiss-migrate", "web", timeout=900)
        lab.record("migrate web node1 -> node2", time.monotonic() - began)
        print(out)
        assert vm_running(snapshot(lab.node2), "web") and not vm_running(snapshot(lab.node1), "web")
        assert guest_ram(lab, lab.node2, "read") == before
        for machine in lab.nodes:
            assert placement(lab, machine)["away"] == {"web": "node2"}
            assert not two_primaries_allowed(lab, machine)
            assert lab.sh(machine, "ls", "/run/kvm").count(".migration") == 0
        roles = {m.name: snapshot(m)["drbd"]["web/0"]["role"] for m in lab.nodes}
        assert roles == {"node1": "Secondary", "node2": "Primary"}
        report = overview(lab, lab.node1)
        assert "away from home (node1)" in vm_in(report, "web")["notes"], report
        # The heartbeat leaves it where the operator put it.
        time.sleep(20)
        assert vm_running(snapshot(lab.node2), "web")
        refused = lab.node1.ssh(["kiss-migrate", "web", "--to", "node2"], check=False)
        assert refused.returncode == 2 and "already runs on node2" in refused.stderr
        began = time.monotonic()
        back = lab.sh(lab.node2, "kiss-migrate", "--home", timeout=900)
        lab.record("migrate web home", time.monotonic() - began)
        print(back)
        assert vm_running(snapshot(lab.node1), "web")
        assert guest_ram(lab, lab.node1, "read") == before
        for machine in lab.nodes:
            assert placement(lab, machine)["away"] == {}
        assert vm_in(overview(lab, lab.node2), "web")["notes"] == []
    print(figures(out))
    print(figures(back))
    assert sampler.both_ran() == []


@contextlib.contextmanager
def migration_stream_slowed(lab: Lab, vms: dict) -> Iterator[None]:
    """web's migration stream (and only it: DRBD and the heartbeats pass as before) slowed down
    on node1's storage link to take about a minute (web's RAM is mostly zero pages: about
    1.5 MB on the wire)."""
    port = str(49152 + vms["web"]["drbd_minor"])
    for command in (
        ["qdisc", "add", "dev", STORAGE_DEVICE, "root", "handle", "1:", "prio"],
        ["qdisc", "add", "dev", STORAGE_DEVICE, "parent", "1:3", "handle", "30:", "tbf",
         "rate", "256kbit", "burst", "16kb", "latency", "500ms"],
        ["filter", "add", "dev", STORAGE_DEVICE, "parent", "1:0", "protocol", "ip", "u32",
         "match", "ip", "dport", port, "0xffff", "flowid", "1:3"],
    ):  # fmt: skip
        lab.sh(lab.node1, "tc", *command)
    try:
        yield
    finally:  # gone already if node1 crashed and booted again meanwhile
        lab.ok(lab.node1, "tc", "qdisc", "del", "dev", STORAGE_DEVICE, "root")


def migrating_in_background(lab: Lab, result: dict) -> threading.Thread:
    """`kiss-migrate web` on node1, its outcome into result["done"]; once node2's qemu waits
    for the guest (the migration's window is open)."""

    def migrate() -> None:
        result["done"] = lab.node1.ssh(["kiss-migrate", "web"], check=False, timeout=900)

    def target_waits() -> bool:
        shown = lab.node2.ssh(["kiss-vm-monitor", "web", "info", "--here"], check=False)
        return "inmigrate" in shown.stdout

    thread = threading.Thread(target=migrate)
    thread.start()
    wait_until("node2's qemu waits for web", target_waits, timeout=300, every=0.5)
    return thread


def journals(lab: Lab) -> None:
    """What happened on each node, should an assertion fail."""
    for machine in lab.nodes:
        print(lab.sh(machine, "journalctl", "-n", "60", "--no-pager", "-u", "vm@web",
                     "-u", "drbd-resource@web", "-u", "kissclusterd", "-u", "kiss-go-on-web",
                     "-u", "kiss-stand-down-web"))  # fmt: skip


@pytest.mark.lab
def test_a_migration_whose_target_dies_leaves_web_on_node1(rolled_out: Lab) -> None:
    lab = rolled_out
    vms = kiss_pillar(lab)["vms"]
    wait_until("primary-vms settled", lambda: settled(lab, vms), SETTLE_TIMEOUT)
    pid = main_pid(lab, lab.node1)
    result: dict = {}
    with migration_stream_slowed(lab, vms), Sampler(lab) as sampler:
        thread = migrating_in_background(lab, result)
        time.sleep(10)
        lab.sh(lab.node2, "kill", "-KILL", str(main_pid(lab, lab.node2)))
        thread.join(timeout=900)
    done = result["done"]
    print(done.stdout, done.stderr)
    journals(lab)
    assert done.returncode == 1 and "undone, the VM runs where it ran" in done.stderr
    assert "qemu sending the guest" in done.stdout or "MiB sent" in done.stdout
    assert main_pid(lab, lab.node1) == pid
    assert '"status": "running"' in lab.sh(lab.node1, "kiss-vm-monitor", "web", "info")
    assert not vm_running(snapshot(lab.node2), "web")
    for machine in lab.nodes:
        assert not two_primaries_allowed(lab, machine)
        assert placement(lab, machine)["away"] == {}
        assert lab.sh(machine, "ls", "/run/kvm").count(".migration") == 0
    assert snapshot(lab.node2)["drbd"]["web/0"]["role"] == "Secondary"
    assert sampler.both_ran() == []


@pytest.mark.lab
def test_a_storage_link_cut_in_the_window_leaves_web_on_node1(rolled_out: Lab) -> None:
    """node1's storage link goes down for 60 s while qemu sends web to node2, both nodes
    Primary. node2, whose qemu holds no guest, gives way and undoes its own part; node1 goes on
    with web and ends the window; kiss-migrate gives up on the stalled stream and undoes what it
    can reach. Once the link is back the copies resync: no two primaries allowed, no mark, web
    placed at home on both nodes, and a write acknowledged on node1 during the cut is on
    node2's copy too."""
    lab = rolled_out
    vms, markers = begin(lab, "storage cut in a migration", "settled before the migration")
    pid = main_pid(lab, lab.node1)
    result: dict = {}
    with migration_stream_slowed(lab, vms), Sampler(lab) as sampler:
        thread = migrating_in_background(lab, result)
        time.sleep(5)
        with links_cut(lab.node1, (STORAGE_NIC,), 60):
            began = time.monotonic()
            took = wait_until("node1 runs web on, node2's copy Outdated, I/O resumed",
                              lambda: node2_gave_way(lab), timeout=300, every=1)  # fmt: skip
            lab.record("storage cut in a migration: node1 writes web's disk again", took)
            markers.write("web", DURING, lab.node1)  # acknowledged while node2 cannot see it
            thread.join(timeout=600)
            lab.record("storage cut in a migration: kiss-migrate ended", time.monotonic() - began)
        took = settle(lab, vms, "settled after the storage link is back")
    lab.record("storage cut in a migration: healed -> settled", took)
    done = result["done"]
    print(done.stdout, done.stderr)
    journals(lab)
    assert done.returncode == 1 and "migration stalled" in done.stdout + done.stderr
    assert main_pid(lab, lab.node1) == pid
    assert '"status": "running"' in lab.sh(lab.node1, "kiss-vm-monitor", "web", "info")
    for machine in lab.nodes:
        assert not two_primaries_allowed(lab, machine)
        assert placement(lab, machine)["away"] == {}
        assert lab.sh(machine, "ls", "/run/kvm").count(".migration") == 0
    assert snapshot(lab.node2)["drbd"]["web/0"]["role"] == "Secondary"
    written = markers.written[("web", DURING)]
    assert read_marker(lab, lab.node2, "web", DURING, backing=True) == written
    check(sampler, markers)


def web_boots_on_node2(lab: Lab, waiting_pid: int) -> bool:
    """node2's qemu for web, no longer the one that waited for the guest, runs it."""
    shown = lab.node2.ssh(["kiss-vm-monitor", "web", "info", "--here"], check=False)
    return '"status": "running"' in shown.stdout and main_pid(lab, lab.node2) != waiting_pid


@pytest.mark.lab_extended
def test_a_crash_of_the_source_in_the_window_boots_web_on_node2(rolled_out: Lab) -> None:
    """node1 crashes while qemu sends web to node2, whose qemu waits for the guest, both nodes
    Primary. node2 powers node1 off (its fence-peer handler), ends the window and restarts its
    qemu, which held no guest: web boots from its disk on node2 (a VM runs somewhere whenever
    one node can). The migration did not complete, so web stays placed at home: node1 back,
    web fails back to it, and the pair settles with no mark and two primaries allowed nowhere."""
    lab = rolled_out
    vms, markers = begin(lab, "source crash in a migration", "settled before the migration")
    result: dict = {}
    with migration_stream_slowed(lab, vms), Sampler(lab) as sampler:
        thread = migrating_in_background(lab, result)
        waiting = main_pid(lab, lab.node2)
        time.sleep(5)
        lab.node1.kill()
        took = wait_until("web boots on node2", lambda: web_boots_on_node2(lab, waiting),
                          FAILOVER_TIMEOUT, every=1)  # fmt: skip
        lab.record("source crash in a migration: node1 killed -> web runs on node2", took)
        markers.write("web", DURING, lab.node2)
        thread.join(timeout=300)
        cluster.boot(lab.layout, lab.progress, ("node1",))
        took = settle(lab, vms, "settled after node1 is back")
    lab.record("source crash in a migration: node1 boot -> settled", took)
    journals(lab)
    assert vm_running(snapshot(lab.node1), "web")
    for machine in lab.nodes:
        assert not two_primaries_allowed(lab, machine)
        assert placement(lab, machine)["away"] == {}
        assert lab.sh(machine, "ls", "/run/kvm").count(".migration") == 0
    check(sampler, markers)


def node2_gave_way(lab: Lab) -> bool:
    """node1 sees node2's copy of web Outdated and writes again (no longer frozen)."""
    web = snapshot(lab.node1)["drbd"]["web/0"]
    return web["role"] == "Primary" and web["peer_disk"] == "Outdated" and web["io"] == "r"


def runs_all(lab: Lab, machine, vms: dict, target: str) -> bool:
    state = snapshot(machine)
    return target_active(state, target) and all(vm_running(state, vm) for vm in vms)


def runs_none(lab: Lab, machine, vms: dict) -> bool:
    state = snapshot(machine)
    return target_active(state, "no-vms") and not any(vm_running(state, vm) for vm in vms)


# 787 s in the lab (a node's crash, boot and resync): more than CI's time allows.
@pytest.mark.lab_extended
def test_maintenance_of_node1_survives_a_crash_of_node2(rolled_out: Lab) -> None:
    """node1 in maintenance (emptied live from node2's prompt), then node2 crashes: node1, the
    only node that can, runs every VM; node2 back takes them again once its copies are
    UpToDate, since node1 is still in maintenance; maintenance off --home brings node1's VMs
    back live."""
    lab = rolled_out
    vms = kiss_pillar(lab)["vms"]
    wait_until("primary-vms settled", lambda: settled(lab, vms), SETTLE_TIMEOUT)
    with Sampler(lab) as sampler:
        began = time.monotonic()
        out = lab.sh(lab.node2, "kiss-maintenance", "node1", "on", timeout=1800)
        lab.record("kiss-maintenance node1 on", time.monotonic() - began)
        print(out)
        wait_until(
            "node1 on no-vms, node2 on all-vms running every VM",
            lambda: runs_none(lab, lab.node1, vms) and runs_all(lab, lab.node2, vms, "all-vms"),
            FAILOVER_TIMEOUT,
        )  # fmt: skip
        for machine in lab.nodes:
            node1_row = overview(lab, machine)["nodes"][0]
            assert node1_row["maintenance"] == ["node1"], node1_row
        lab.node2.kill()
        took = wait_until(
            "node1, in maintenance, runs every VM",
            lambda: runs_all(lab, lab.node1, vms, "all-vms"), FAILOVER_TIMEOUT, every=0.5,
        )  # fmt: skip
        lab.record("maintenance: node2 killed -> node1 runs every VM", took)
        cluster.boot(lab.layout, lab.progress, ("node2",))
        took = wait_until(
            "node2 back runs every VM again, node1 (in maintenance) none",
            lambda: runs_none(lab, lab.node1, vms) and runs_all(lab, lab.node2, vms, "all-vms"),
            SETTLE_TIMEOUT,
        )  # fmt: skip
        lab.record("maintenance: node2 restarted -> runs every VM again (after boot)", took)
        began = time.monotonic()
        print(lab.sh(lab.node1, "kiss-maintenance", "node1", "off", "--home", timeout=1800))
        lab.record("kiss-maintenance node1 off --home", time.monotonic() - began)
        wait_until("primary-vms settled again", lambda: settled(lab, vms), SETTLE_TIMEOUT)
    assert sampler.both_ran() == []
