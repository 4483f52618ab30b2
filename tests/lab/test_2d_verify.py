"""kiss-verify on the lab pair: clean after the roll-out from either node, then each difference of
issue 12 made by hand on the real nodes, named with its fix, undone, and clean again.

Checks, in order (every step restored in `finally`, so later scenarios start from a clean pair):
1. both nodes settled and in sync; `kiss-verify --json` exits 0 on node1 and on node2, clean,
   both nodes compared (the peer's facts over ssh on the storage link); its run time recorded;
2. a comment appended to node2's /etc/drbd.d/web.res: exit 1, (node2, res-file, that path),
   fix kiss-configure;
3. node1's LV vg0/db_logs renamed away (db runs on node2; DRBD keeps its open device):
   (node1, lv-missing, vg0/db_logs);
4. `systemctl enable vm@ghost.service` on node2 (a VM the cache does not hold; all-vms.target is
   not active, so nothing starts): (node2, unit-wanted, its all-vms.target.wants link) with fix
   `systemctl disable vm@ghost.service`, which the test then runs;
5. node2's bare repository moved to a commit made there by hand (`commit-tree`, working copy
   untouched): the pair's git-bare difference naming both commits;
6. all undone: exit 0 again.
"""

import json
import time
from typing import Any

import pytest
from labtest import Lab, kiss_pillar, settled_clean, wait_until

from kisscluster.lab.layout import VOLUME_GROUP
from kisscluster.lab.machine import Machine

pytestmark = pytest.mark.lab_extended

SITE = "/srv/kiss-configure"
BARE = "/srv/kiss-configure.git"
RES = "/etc/drbd.d/web.res"
SAVED_RES = "/root/web.res.before-test"
GHOST_LINK = "/etc/systemd/system/all-vms.target.wants/vm@ghost.service"
IDENTITY = ("-c", "user.name=lab", "-c", "user.email=lab@example.org")
VERIFY_TIMEOUT = 300


def kiss_verify(lab: Lab, machine: Machine) -> tuple[int, dict[str, Any]]:
    done = machine.ssh(["kiss-verify", "--json"], timeout=VERIFY_TIMEOUT, check=False)
    assert done.stdout.strip(), done.stderr
    return done.returncode, json.loads(done.stdout.strip().splitlines()[-1])


def named(report: dict[str, Any]) -> set[tuple[str, str, str]]:
    return {(d["node"], d["kind"], d["subject"]) for d in report["differences"]}


def test_kiss_verify_is_clean_after_rollout_and_names_each_hand_made_difference(
    rolled_out: Lab,
) -> None:
    lab = rolled_out
    vms = kiss_pillar(lab)["vms"]
    wait_until("both nodes settled, every volume in sync", lambda: settled_clean(lab, vms), 600)
    for machine in lab.nodes:
        began = time.monotonic()
        code, report = kiss_verify(lab, machine)
        lab.record(f"kiss-verify on the example site from {machine.name}", time.monotonic() - began)
        assert (code, report["clean"], report["nodes"]) == (0, True, ["node1", "node2"]), report

    branch = lab.sh(lab.node2, "git", "-C", SITE, "rev-parse", "--abbrev-ref", "HEAD").strip()
    head = lab.sh(
        lab.node2, "git", f"--git-dir={BARE}", "rev-parse", f"refs/heads/{branch}"
    ).strip()
    try:
        lab.sh(lab.node2, "cp", RES, SAVED_RES)
        lab.sh(lab.node2, "sh", "-c", f"echo '# edited by hand' >> {RES}")
        code, report = kiss_verify(lab, lab.node1)
        assert code == 1 and ("node2", "res-file", RES) in named(report), report
        fixes = {d["fix"] for d in report["differences"] if d["subject"] == RES}
        assert fixes == {"kiss-configure"}
        lab.sh(lab.node2, "cp", SAVED_RES, RES)

        lab.sh(lab.node1, "lvrename", VOLUME_GROUP, "db_logs", "db_logs_away")
        code, report = kiss_verify(lab, lab.node1)
        assert code == 1 and ("node1", "lv-missing", f"{VOLUME_GROUP}/db_logs") in named(report)
        lab.sh(lab.node1, "lvrename", VOLUME_GROUP, "db_logs_away", "db_logs")

        lab.sh(lab.node2, "systemctl", "enable", "vm@ghost.service")
        code, report = kiss_verify(lab, lab.node1)
        assert code == 1 and ("node2", "unit-wanted", GHOST_LINK) in named(report), report
        fixes = {d["fix"] for d in report["differences"] if d["subject"] == GHOST_LINK}
        assert fixes == {"systemctl disable vm@ghost.service"}
        lab.sh(lab.node2, "systemctl", "disable", "vm@ghost.service")

        tree = f"refs/heads/{branch}^{{tree}}"
        other = lab.sh(lab.node2, "git", *IDENTITY, f"--git-dir={BARE}", "commit-tree", tree,
                       "-p", head, "-m", "made-by-hand-on-node2").strip()  # fmt: skip
        # (one word: ssh joins the words into one line for the guest's shell)
        lab.sh(lab.node2, "git", f"--git-dir={BARE}", "update-ref", f"refs/heads/{branch}", other)
        code, report = kiss_verify(lab, lab.node1)
        assert code == 1 and ("", "git-bare", "site") in named(report), report
        detail = next(d["detail"] for d in report["differences"] if d["kind"] == "git-bare")
        assert f"node1 {head}" in detail and f"node2 {other}" in detail
    finally:
        lab.sh(lab.node2, "sh", "-c", f"test ! -e {SAVED_RES} || mv {SAVED_RES} {RES}")
        lab.node1.ssh(["lvrename", VOLUME_GROUP, "db_logs_away", "db_logs"], check=False)
        lab.sh(lab.node2, "systemctl", "disable", "vm@ghost.service")
        lab.sh(lab.node2, "git", f"--git-dir={BARE}", "update-ref", f"refs/heads/{branch}", head)
    code, report = kiss_verify(lab, lab.node1)
    assert (code, report["clean"]) == (0, True), report
