"""Fixtures for the kiss.vms / kiss.node tests: nodes of the example site applied under a root.

What this host cannot do, and the seam each fixture uses instead:

* device-mapper: LVM runs for real on a loop device, with `global/activation = 0` in an lvm.conf
  given through LVM_SYSTEM_DIR, so `lvs` and `lvcreate` read and write real VG metadata but
  activate nothing (the product's commands are unchanged; only LVM's own config differs;
  `lvs` is wrapped by a recorder that counts its calls);
* the DRBD kernel module: `drbdadm` is a recorder that hands every call on to the real
  `drbdadm-84 --dry-run` in a UTS namespace named like the node, against the files the states
  wrote, so drbdadm parses the config and the command but touches no device (`dstate`, which
  needs the kernel, is answered as two new copies);
* what the DRBD module tells (/proc/drbd, /sys/block/drbd<minor>/size): kiss.vms reads them under
  its `root`, where a test writes what DRBD would say (`Node.drbd_says`);
* systemd as PID 1: `systemctl` is a recorder.
The real run of all three is the lab's (the qemu lab issue).
"""

import json
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from kisstest import (
    CLONE_NEWUTS,
    DRBDADM_84,
    LoopVg,
    make_loop_vg,
    remove_loop_vg,
    salt_call,
    write_minion_config,
)

from kisscluster import inventory

RECORDER = '''#!{python}
"""A stand-in for {name} (see tests/states/conftest.py): records its arguments, then {then}."""
import ctypes, json, os, socket, sys
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps(sys.argv[1:]) + "\\n")
{body}
'''

# `dstate` reads the kernel's state, which --dry-run cannot: the stand-in answers as the two
# new copies of a first roll-out (kisscluster.initialsync then starts the initial sync).
DRBDADM_BODY = """if sys.argv[1:2] == ["dstate"]:
    sys.exit(print("Inconsistent/Inconsistent"))
libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare({clone}) != 0:
    sys.exit("unshare(CLONE_NEWUTS) failed: errno %d" % ctypes.get_errno())
socket.sethostname({node!r})
os.execv({drbdadm!r}, [{drbdadm!r}, "--dry-run", "-c", {config!r}, *sys.argv[1:]])
"""


@dataclass
class Node:
    """One member of the example cluster, its files under `root`."""

    name: str
    site: Path
    config: Path
    root: Path
    drbd_log: Path
    systemctl_log: Path
    lvs_log: Path
    vg: LoopVg
    lookup: dict = field(default_factory=dict)

    def apply(self, sls: str, test: bool = False) -> dict:
        """state.apply through real `salt-call --local`; every state's return by its ID."""
        args = ["state.apply", sls] + (["test=True"] if test else [])
        saved = dict(os.environ)
        os.environ.update(self.vg.env)
        try:
            result = salt_call(self.config, *args, check=False)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        if not isinstance(result, dict):
            raise AssertionError(f"salt-call {args} did not run states: {result}")
        return {ret["__id__"]: ret for ret in result.values()}

    def drbd_calls(self) -> list[list[str]]:
        return _read_log(self.drbd_log)

    def systemctl_calls(self) -> list[list[str]]:
        return _read_log(self.systemctl_log)

    def lvs_calls(self) -> list[list[str]]:
        return _read_log(self.lvs_log)

    def drbd_says(self, minors: dict[int, tuple[str, int]]) -> None:
        """/proc/drbd and /sys/block under the root as DRBD 8.4 would show `minors` (minor ->
        the `cs: ro: ds:` fields and the device size in bytes)."""
        lines = ["version: 8.4.11 (api:1/proto:86-101)"]
        for minor, (fields, size) in sorted(minors.items()):
            lines.append(f" {minor}: {fields} C r-----")
            sizes = self.root / f"sys/block/drbd{minor}"
            sizes.mkdir(parents=True, exist_ok=True)
            (sizes / "size").write_text(f"{size // 512}\n")
        (self.root / "proc").mkdir(exist_ok=True)
        (self.root / "proc/drbd").write_text("\n".join(lines) + "\n")

    def file(self, path: str) -> str:
        return (self.root / path.lstrip("/")).read_text(encoding="utf-8")


def _read_log(path: Path) -> list[list[str]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def _recorder(path: Path, name: str, log: Path, then: str, body: str) -> str:
    path.write_text(
        RECORDER.format(python=sys.executable, name=name, then=then, log=str(log), body=body),
        encoding="utf-8",
    )
    path.chmod(0o755)
    return str(path)


def make_node(base: Path, site: Path, name: str, vg: str = "vg0", vg_mib: int = 512) -> Node:
    home = base / name
    root = home / "root"
    bin_dir = home / "bin"
    bin_dir.mkdir(parents=True)
    drbd_conf = root / "etc" / "drbd.conf"
    drbd_conf.parent.mkdir(parents=True)
    drbd_conf.write_text(
        f'include "{root}/etc/drbd.d/*.conf";\ninclude "{root}/etc/drbd.d/*.res";\n',
        encoding="utf-8",
    )
    drbd_log = home / "drbdadm.log"
    systemctl_log = home / "systemctl.log"
    lvs_log = home / "lvs.log"
    drbdadm = _recorder(
        bin_dir / "drbdadm",
        "drbdadm",
        drbd_log,
        "runs the real drbdadm-84 --dry-run as host " + name,
        DRBDADM_BODY.format(
            clone=CLONE_NEWUTS, node=name, drbdadm=DRBDADM_84, config=str(drbd_conf)
        ),
    )
    systemctl = _recorder(bin_dir / "systemctl", "systemctl", systemctl_log, "succeeds", "")
    lvs = _recorder(
        bin_dir / "lvs",
        "lvs",
        lvs_log,
        "runs the real lvs",
        f"os.execv({shutil.which('lvs')!r}, ['lvs', *sys.argv[1:]])",
    )
    # kiss.node runs it (check-config) before it installs kissclusterd.conf.
    kissclusterd = str(Path(sys.executable).with_name("kissclusterd"))
    lookup = {
        "root": str(root),
        "drbdadm": drbdadm,
        "systemctl": systemctl,
        "lvs": lvs,
        "lvcreate": shutil.which("lvcreate"),
        "lvextend": shutil.which("lvextend"),
        "vgs": shutil.which("vgs"),
        "python": sys.executable,
        "kissclusterd": kissclusterd,
    }
    config = write_minion_config(home / "salt", site, name, kiss_lookup=lookup)
    loop_vg = make_loop_vg(home / "vg", vg_mib, vg)
    return Node(name, site, config, root, drbd_log, systemctl_log, lvs_log, loop_vg, lookup)


@pytest.fixture
def site(example_site: Path) -> Path:
    """The example site with its allocation cache written by the real inventory."""
    inventory.run(example_site)
    return example_site


@pytest.fixture
def nodes(tmp_path: Path, site: Path):
    """node1 and node2 of the example cluster, each with an empty VG vg0 on its own loop device."""
    made: list[Node] = []
    try:
        for name in ("node1", "node2"):
            made.append(make_node(tmp_path / "nodes", site, name))
        yield {node.name: node for node in made}
    finally:
        for node in made:
            remove_loop_vg(node.vg)


@pytest.fixture
def node1(nodes) -> Node:
    return nodes["node1"]
