"""`kiss-configure --dry-run` on the nodes' own Python (Debian 12's 3.11.2): a changed VM file
and a new one are checked on both nodes, and nothing is committed, pushed or written."""

import re
import shlex
import time

import pytest
from labtest import Lab

from kisscluster.lab import cluster
from kisscluster.lab.layout import VOLUME_GROUP

pytestmark = pytest.mark.lab_extended

SITE = cluster.SITE_IN_GUEST
NEW_VM_FILE = (
    "name: dryrun\nprimary_on: node1\nnetwork_bridge: br0\nram_megs: 64\ncpus: 1\n"
    "root_disk_size: 16M\n"
)
SUMMARY = re.compile(
    r"^(node[12]): test=True .*?(\d+) states, (\d+) would change, (\d+) failed", re.MULTILINE
)
# What a dry run must leave as it was on each node: git, the files kiss.vms writes, the LVs.
FOOTPRINT = (
    f"git -C {SITE} rev-parse HEAD; git --git-dir=/srv/kiss-configure.git rev-parse HEAD; "
    f"git -C {SITE} status --porcelain --untracked-files=no; "
    "sha256sum /etc/drbd.d/* /etc/vm/* | sort; "
    f"ls /etc/systemd/system/all-vms.target.wants; lvs --noheadings -o lv_name {VOLUME_GROUP}"
)


def footprint(lab: Lab) -> dict[str, str]:
    return {m.name: lab.sh(m, "sh", "-c", shlex.quote(FOOTPRINT)) for m in lab.nodes}


def test_a_dry_run_reports_both_nodes_and_changes_nothing(rolled_out: Lab) -> None:
    lab = rolled_out
    web = f"{SITE}/vm-config/example/web.yml"
    new = f"{SITE}/vm-config/example/dryrun.yml"
    original = lab.sh(lab.node1, "cat", web)
    assert "ram_megs:" in original
    changed = re.sub(r"ram_megs: *\d+", "ram_megs: 96", original)
    cluster.write_guest_file(lab.node1, web, changed)
    cluster.write_guest_file(lab.node1, new, NEW_VM_FILE)
    try:
        before = footprint(lab)
        began = time.monotonic()
        done = lab.node1.ssh(["kiss-configure", "--dry-run"], timeout=cluster.SALT_TIMEOUT,
                             check=False)  # fmt: skip
        lab.record("kiss-configure --dry-run with a changed and a new VM", time.monotonic() - began)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "kiss-configure: checked cleanly on every node" in done.stdout, done.stdout
        reports = {
            node: (int(n), int(failed)) for node, _, n, failed in SUMMARY.findall(done.stdout)
        }
        assert set(reports) == {"node1", "node2"}, done.stdout
        assert all(n > 0 and failed == 0 for n, failed in reports.values()), done.stdout
        for node in reports:  # each node reports the new VM and the changed one
            assert f"{node}:   would change: kiss-vms-config-web-qemu-parameters" in done.stdout
            assert f"{node}:   would change: kiss-vms-disks-dryrun-drbd-resource" in done.stdout
        assert footprint(lab) == before
        assert lab.sh(lab.node1, "cat", web) == changed  # the operator's edit is still there
    finally:
        # Back to the committed file, and on disk before the next test crashes node1: a file
        # rewritten moments before a power cut can come back empty (ext4 delayed allocation).
        lab.sh(lab.node1, "git", "-C", SITE, "checkout", "--", "vm-config/example/web.yml")
        lab.sh(lab.node1, "rm", "-f", new)
        lab.sh(lab.node1, "sync")
