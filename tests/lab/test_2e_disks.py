"""Disks over a running VM's life, rolled out by kiss-configure: db's root disk (db runs on
node2, whose run comes second) grown from 64 MiB to 96 MiB while the VM runs, then a new disk
for web (web runs on node1, whose run comes first), each checked with what qemu reports through
QMP (`query-block`, by kiss_disks.vm_drive_sizes) and with the VM sampled running throughout."""

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

pytestmark = pytest.mark.lab_extended

MIB = 1 << 20
SYNC_TIMEOUT = 600
VM_FILES = f"{cluster.SITE_IN_GUEST}/vm-config/example"


def qemu_sizes(lab: Lab, machine, vm: str, volumes: list[int]) -> dict[int, int]:
    """What the VM's qemu on `machine` shows the guest, by volume (QMP query-block)."""
    out = lab.sh(machine, "salt-call", "--local", "--out=json", "kiss_disks.vm_drive_sizes", vm,
                 json.dumps(volumes))  # fmt: skip
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


def test_the_root_disk_of_a_running_vm_grows_and_qemu_shows_it_without_a_restart(
    rolled_out: Lab,
) -> None:
    lab = rolled_out
    wait_until("db runs on node2", lambda: vm_running(snapshot(lab.node2), "db"), 300)
    wait_until("db in sync", lambda: in_sync(snapshot(lab.node2), "db"), SYNC_TIMEOUT)
    assert qemu_sizes(lab, lab.node2, "db", [0]) == {0: drbd.usable_bytes(64 * MIB)}
    pid = qemu_pid(lab, lab.node2, "db")
    edit_vm_file(lab, "db", "root_disk_size: 64M", "root_disk_size: 96M")
    with Sampler(lab) as sampler:
        began = time.monotonic()
        out = configure(lab)
        lab.record("grow db's root disk from 64 MiB to 96 MiB live", time.monotonic() - began)
    for step in ("grow LV vg0/db_root to 96M", "resize DRBD volume db/0", "QMP block_resize"):
        assert step in out, (step, out)
    for machine in lab.nodes:
        assert lv_bytes(lab, machine, "db_root") == 96 * MIB, machine.name
    assert qemu_sizes(lab, lab.node2, "db", [0]) == {0: drbd.usable_bytes(96 * MIB)}
    assert qemu_pid(lab, lab.node2, "db") == pid  # the same qemu: no restart
    assert not sampler.both_ran(), sampler.both_ran()
    assert all(vm_running(state, "db") for _, _, state in sampler.samples["node2"] if state)
    wait_until("db in sync after the resize", lambda: in_sync(snapshot(lab.node2), "db"),
               SYNC_TIMEOUT)  # fmt: skip
    assert_changed_nothing(configure(lab))


def test_a_new_disk_of_a_running_vm_syncs_from_its_node_and_shows_after_a_restart(
    rolled_out: Lab,
) -> None:
    lab = rolled_out
    wait_until("web runs on node1", lambda: vm_running(snapshot(lab.node1), "web"), 300)
    generations = {m.name: lab.sh(m, DRBDADM, "get-gi", "web/0") for m in lab.nodes}
    pid = qemu_pid(lab, lab.node1, "web")
    edit_vm_file(lab, "web", "template: linux\n", "template: linux\nmore_disks:\n"
                 "  - name: data\n    size: 8M\n")  # fmt: skip
    with Sampler(lab) as sampler:
        began = time.monotonic()
        out = configure(lab)
        both = lambda: all(in_sync(snapshot(m), "web") for m in lab.nodes)  # noqa: E731
        wait_until("web/1 Connected and UpToDate on both nodes", both, SYNC_TIMEOUT)
        lab.record("add an 8 MiB disk to web and sync it", time.monotonic() - began)
    assert "VM web sees its new disk data (volume 1) after its next start" in out, out
    assert "create DRBD metadata web/1 (this volume only)" in out
    for machine in lab.nodes:
        assert lv_bytes(lab, machine, "web_data") == 8 * MIB, machine.name
        # the existing volume got no metadata and no forced sync
        assert lab.sh(machine, DRBDADM, "get-gi", "web/0") == generations[machine.name]
    # synced from node1, which runs web, and Primary there with the rest of the resource
    assert snapshot(lab.node1)["drbd"]["web/1"]["role"] == "Primary"
    assert snapshot(lab.node2)["drbd"]["web/1"]["role"] == "Secondary"
    assert qemu_pid(lab, lab.node1, "web") == pid
    assert not sampler.both_ran(), sampler.both_ran()
    assert all(vm_running(state, "web") for _, _, state in sampler.samples["node1"] if state)
    assert_changed_nothing(configure(lab))

    lab.sh(lab.node1, "systemctl", "restart", "vm@web.service", timeout=300)
    assert vm_running(snapshot(lab.node1), "web")
    assert qemu_sizes(lab, lab.node1, "web", [0, 1]) == {
        0: drbd.usable_bytes(64 * MIB),
        1: drbd.usable_bytes(8 * MIB),
    }
