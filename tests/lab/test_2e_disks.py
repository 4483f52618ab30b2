"""Disks over a running VM's life, rolled out by one kiss-configure: db's root disk (db runs on
node2, whose run comes second) grown from 64 MiB to 96 MiB while the VM runs, and a new disk for
web (web runs on node1, whose run comes first). Checked with what qemu reports through QMP
(`query-block`, by kiss_disks.vm_drive_sizes), with both nodes sampled throughout, and with a
second kiss-configure that changes nothing on either node (the site's idempotence after a
change)."""

import json
import time

import pytest
from labtest import (
    DRBDADM,
    Lab,
    Sampler,
    assert_changed_nothing,
    in_sync,
    snapshot,
    vm_running,
    wait_until,
)

from kisscluster import drbd
from kisscluster.lab import cluster
from kisscluster.lab.layout import VOLUME_GROUP

# About 15 minutes under TCG (912 s measured): more than CI's time holds (README, "Tests").
pytestmark = pytest.mark.lab_extended

MIB = 1 << 20
SYNC_TIMEOUT = 600
VM_FILES = f"{cluster.SITE_IN_GUEST}/vm-config/example"


def qemu_sizes(lab: Lab, machine, vm: str, volumes: list[int]) -> dict[int, int]:
    """What the VM's qemu on `machine` shows the guest, by volume (QMP query-block)."""
    # one word: ssh joins the words into one line for the guest's shell
    out = lab.sh(machine, "salt-call", "--local", "--out=json", "kiss_disks.vm_drive_sizes", vm,
                 json.dumps(volumes, separators=(",", ":")))  # fmt: skip
    return {int(volume): size for volume, size in json.loads(out)["local"].items()}


def qemu_pid(lab: Lab, machine, vm: str) -> str:
    return lab.sh(machine, "systemctl", "show", "-p", "MainPID", "--value", f"vm@{vm}.service")


def lv_bytes(lab: Lab, machine, lv: str) -> int:
    out = lab.sh(machine, "lvs", "--noheadings", "--units", "b", "--nosuffix", "-o", "lv_size",
                 f"{VOLUME_GROUP}/{lv}")  # fmt: skip
    return int(out.strip())


def edit_vm_file(lab: Lab, vm: str, old: str, new: str) -> None:
    path = f"{VM_FILES}/{vm}.yml"
    text = lab.sh(lab.node1, "cat", path)
    assert old in text, text
    cluster.write_guest_file(lab.node1, path, text.replace(old, new))


def configure(lab: Lab) -> str:
    out = lab.sh(lab.node1, "kiss-configure", timeout=cluster.SALT_TIMEOUT)
    assert "kiss-configure: applied cleanly on every node" in out, out
    return out


def test_a_running_vms_disk_grows_and_another_gets_a_new_disk_without_a_restart(
    rolled_out: Lab,
) -> None:
    lab = rolled_out
    wait_until("db runs on node2", lambda: vm_running(snapshot(lab.node2), "db"), 300)
    wait_until("web runs on node1", lambda: vm_running(snapshot(lab.node1), "web"), 300)
    synced = lambda: all(in_sync(snapshot(lab.node1), vm) for vm in ("db", "web"))  # noqa: E731
    wait_until("db and web in sync", synced, SYNC_TIMEOUT)
    assert qemu_sizes(lab, lab.node2, "db", [0]) == {0: drbd.usable_bytes(64 * MIB)}
    pids = {"db": qemu_pid(lab, lab.node2, "db"), "web": qemu_pid(lab, lab.node1, "web")}
    generations = {m.name: lab.sh(m, DRBDADM, "get-gi", "web/0") for m in lab.nodes}
    edit_vm_file(lab, "db", "root_disk_size: 64M", "root_disk_size: 96M")
    edit_vm_file(lab, "web", "template: linux\n", "template: linux\nmore_disks:\n"
                 "  - name: data\n    size: 8M\n")  # fmt: skip

    with Sampler(lab) as sampler:
        began = time.monotonic()
        out = configure(lab)
        lab.record("kiss-configure: db's root disk 64 -> 96 MiB live, web's new 8 MiB disk",
                   time.monotonic() - began)  # fmt: skip
        both = lambda: all(in_sync(snapshot(m), "web") for m in lab.nodes)  # noqa: E731
        wait_until("web/1 Connected and UpToDate on both nodes", both, SYNC_TIMEOUT)
        lab.record("web's new disk synced, from kiss-configure's start", time.monotonic() - began)
        wait_until("db in sync after the resize", lambda: in_sync(snapshot(lab.node2), "db"),
                   SYNC_TIMEOUT)  # fmt: skip

    for step in ("grow LV vg0/db_root to 96M", "resize DRBD volume db/0", "QMP block_resize",
                 "create DRBD metadata web/1 (this volume only)",
                 "VM web sees its new disk data (volume 1) after its next start"):  # fmt: skip
        assert step in out, (step, out)
    assert qemu_sizes(lab, lab.node2, "db", [0]) == {0: drbd.usable_bytes(96 * MIB)}
    for machine in lab.nodes:
        assert lv_bytes(lab, machine, "db_root") == 96 * MIB, machine.name
        assert lv_bytes(lab, machine, "web_data") == 8 * MIB, machine.name
        # web's existing volume got no metadata and no forced sync
        assert lab.sh(machine, DRBDADM, "get-gi", "web/0") == generations[machine.name]
    # synced from node1, which runs web, and Primary there with the rest of the resource
    assert snapshot(lab.node1)["drbd"]["web/1"]["role"] == "Primary"
    assert snapshot(lab.node2)["drbd"]["web/1"]["role"] == "Secondary"
    # the same qemu processes: neither VM restarted, moved or stopped for a moment
    assert {"db": qemu_pid(lab, lab.node2, "db"), "web": qemu_pid(lab, lab.node1, "web")} == pids
    assert not sampler.both_ran(), sampler.both_ran()
    for machine, vm in ((lab.node2, "db"), (lab.node1, "web")):
        gaps = [began for began, _, state in sampler.samples[machine.name]
                if state and not vm_running(state, vm)]  # fmt: skip
        assert not gaps, (vm, gaps)
    began = time.monotonic()
    assert_changed_nothing(configure(lab))
    lab.record("kiss-configure unchanged, after the disk changes", time.monotonic() - began)

    lab.sh(lab.node1, "systemctl", "restart", "vm@web.service", timeout=300)
    assert vm_running(snapshot(lab.node1), "web")
    assert qemu_sizes(lab, lab.node1, "web", [0, 1]) == {
        0: drbd.usable_bytes(64 * MIB),
        1: drbd.usable_bytes(8 * MIB),
    }
