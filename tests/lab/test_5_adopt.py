"""Issue 13's proof on the lab's nodes: an original KISScluster site, adopted with kiss-adopt and
checked with `kiss-configure --dry-run`, proposes no change to a DRBD resource, an LV or a VM.

On both nodes, beside the example site's VMs (none of the same name, minors from 64): a VG
`vmvg` on a loop device, the original's files as its Ansible role writes them
(tests/original_site.py: /etc/drbd.d/<vm>.res, /etc/vm/<vm>.conf, /etc/vm/vms.yml, the
all-vms/primary-vms links; not its vm@.service, which would replace kisscluster's), its LVs, and
its DRBD resources as the role brings them up: create-md, up, connected, the initial sync from
each VM's primary_on node. No VM starts: the links are never seen by systemd (no daemon-reload
while they exist). Then on node1: kiss-adopt of the original site, the adopted site copied into
the working copy (uncommitted, as an operator's edit), `kiss-configure --dry-run`. Counted as
changes: any LV or DRBD step, any VM enabled or disabled, LVs that differ afterwards, and what
`drbdadm -d adjust` would do to the running resources with kisscluster's resource files (it
compares them with the kernel's state; with the original's files it must do nothing too).
Resource and qemu parameter files rewritten in kisscluster's form are listed, not counted
(tests/states/test_adopt_nodes.py compares their effect). Everything is removed afterwards.
"""

import re
import shlex
from pathlib import Path

import pytest
from labtest import DRBDADM, Lab, kiss_pillar, wait_until
from original_site import example

from kisscluster.lab import cluster
from kisscluster.lab.image import VENV
from kisscluster.lab.machine import Machine

pytestmark = pytest.mark.lab_extended

SITE = cluster.SITE_IN_GUEST
WORK = "/var/tmp/kiss-adopt"
WOULD_CHANGE = re.compile(r"^(node[12]):   would change: (\S+)", re.MULTILINE)
# Files kiss.vms rewrites in its own form (their effect is the host test's to compare), and
# kisscluster's DRBD online-verify units, which the adopted VMs join.
REWRITTEN = re.compile(
    r"kiss-vms-(disks-.+-drbd-resource|config-.+-qemu-parameters|units-primary-vms-target"
    r"|units-drbd-verify-(service|timer)|reload-systemd-daemon-reload)$"
)
# kisscluster's resource files for the adopted site, as kiss.vms renders them.
RENDER = """\
import sys
from pathlib import Path
from kisscluster import drbd, pillar
kiss = pillar.build(sys.argv[1])
for name, vm in kiss["vms"].items():
    text = drbd.render_resource(vm, kiss["cluster"]["members"], kiss["cluster"]["volume_group"])
    (Path(sys.argv[2]) / f"{name}.res").write_text(text)
"""


def sh(lab: Lab, machine: Machine, script: str, timeout: float = 300) -> str:
    return lab.sh(machine, "sh", "-c", shlex.quote(script), timeout=timeout)


def install_original(lab: Lab, machine: Machine, original, local: Path) -> None:
    """The original's node: VG vmvg on a loop device, its files and links, its LVs."""
    sh(
        lab,
        machine,
        f"mkdir -p {WORK} && truncate -s 1G {WORK}/pv.img && "
        f"dev=$(losetup --find --show {WORK}/pv.img) && echo $dev > {WORK}/loop && "
        "pvcreate -q $dev && vgcreate -q vmvg $dev",
    )
    original.install(local / machine.name, machine.name)
    for path, (text, mode) in original.node_files().items():
        if not path.endswith("/vm@.service"):
            cluster.write_guest_file(machine, path, text)
            lab.sh(machine, "chmod", f"{mode:o}", path)
    for link, target in original.node_links(machine.name).items():
        lab.sh(machine, "mkdir", "-p", str(Path(link).parent))
        lab.sh(machine, "ln", "-sfn", target, link)
    for lv, size in original.lvs().items():
        size = size if size[-1].isalpha() else size + "m"  # Ansible's lvol: a bare number is MiB
        lab.sh(machine, "lvcreate", "-q", "-n", lv, "-L", size, "vmvg")


def connected(lab: Lab, resource: str) -> bool:
    states = [lab.sh(m, DRBDADM, "cstate", resource).split() for m in lab.nodes]
    return all(s and all(c == "Connected" for c in s) for s in states)


def adjust_dry_run(lab: Lab, machine: Machine, res_dir: str, resources: list[str]) -> str:
    """What `drbdadm adjust` would run for `resources` with the files in `res_dir`."""
    conf = f"{WORK}/{Path(res_dir).name}.conf"
    text = f'include "/etc/drbd.d/global_common.conf";\ninclude "{res_dir}/*.res";\n'
    cluster.write_guest_file(machine, conf, text)
    return "".join(lab.sh(machine, DRBDADM, "-c", conf, "-d", "adjust", r) for r in resources)


def rendered_resources(lab: Lab) -> dict[str, str]:
    """kisscluster's resource file of each VM of the adopted site, rendered on node1, whose
    working copy holds it (uncommitted): the same file goes to both nodes."""
    cluster.write_guest_file(lab.node1, f"{WORK}/render.py", RENDER)
    out = f"{WORK}/rendered"
    lab.sh(lab.node1, "mkdir", "-p", out)
    lab.sh(lab.node1, f"{VENV}/bin/python3", f"{WORK}/render.py", SITE, out)
    names = lab.sh(lab.node1, "ls", out).split()
    return {
        Path(name).stem: lab.sh(lab.node1, "cat", f"{out}/{name}")
        for name in names
        if name.endswith(".res")
    }


def remove_original(lab: Lab, machine: Machine, original) -> None:
    for vm in original.on_node():
        lab.ok(machine, DRBDADM, "down", vm.name)
    paths = [
        *original.node_links(machine.name),
        *(p for p in original.node_files() if not p.endswith("/vm@.service")),
    ]
    lab.ok(machine, "rm", "-f", *paths)
    for kind in ("wants", "conflicts"):
        lab.ok(
            machine,
            "rmdir",
            "--ignore-fail-on-non-empty",
            f"/etc/systemd/system/primary-vms.target.{kind}",
        )
    sh(
        lab,
        machine,
        f"vgremove -q -f vmvg; test -f {WORK}/loop && pvremove -q $(cat {WORK}/loop);"
        f" test -f {WORK}/loop && losetup -d $(cat {WORK}/loop); rm -rf {WORK}; sync",
    )


def test_an_adopted_original_site_proposes_no_drbd_lv_or_vm_change(rolled_out: Lab, tmp_path):
    lab = rolled_out
    kiss = kiss_pillar(lab)["cluster"]
    members = [{k: m[k] for k in ("name", "prod_addr", "stor_addr")} for m in kiss["members"]]
    original = example(members, kiss["ping_addr"], sizes="small", first_minor=64)
    resources = [vm.name for vm in original.on_node()]
    active = [vm.name for vm in original.vms if vm.active]
    owners = {vm.name: vm.primary_on for vm in original.on_node()}
    try:
        for machine in lab.nodes:
            install_original(lab, machine, original, tmp_path / "as-original")
        for machine in lab.nodes:  # as the role: create-md on new LVs, then adjust (up)
            for name in resources:
                lab.sh(machine, DRBDADM, "--force", "create-md", name)
                lab.sh(machine, DRBDADM, "up", name)
        for name in resources:
            wait_until(f"{name} connected", lambda n=name: connected(lab, n), 120)
            owner = lab.node1 if owners[name] == "node1" else lab.node2
            lab.sh(owner, DRBDADM, "primary", "--force", name)  # the initial sync
            lab.sh(owner, DRBDADM, "secondary", name)
        # The original's files are what kernel and nodes hold: adjust has nothing to do.
        for machine in lab.nodes:
            baseline = adjust_dry_run(lab, machine, "/etc/drbd.d", resources)
            assert baseline == "", f"{machine.name}: not even the original's files: {baseline}"

        source = tmp_path / "original"
        original.write(source)
        for path in sorted(p for p in source.rglob("*") if p.is_file()):
            where = f"{WORK}/original/{path.relative_to(source)}"
            cluster.write_guest_file(lab.node1, where, path.read_text())
        adopted = lab.sh(lab.node1, "kiss-adopt", f"{WORK}/original", "--site", f"{WORK}/site")
        assert "parked" in adopted, adopted  # `disabled: no` stays disabled, as it was
        sh(lab, lab.node1, f"cp -r {WORK}/site/. {SITE}/")
        lvs_before = {
            m.name: lab.sh(m, "lvs", "--noheadings", "-o", "lv_name,lv_size", "vmvg")
            for m in lab.nodes
        }
        done = lab.node1.ssh(
            ["kiss-configure", "--dry-run"], timeout=cluster.SALT_TIMEOUT, check=False
        )
        assert done.returncode == 0, done.stdout + done.stderr
        proposed = WOULD_CHANGE.findall(done.stdout)
        counted = [f"{n}: {sid}" for n, sid in proposed if not REWRITTEN.search(sid)]
        rendered = rendered_resources(lab)
        for machine in lab.nodes:
            if (
                lab.sh(machine, "lvs", "--noheadings", "-o", "lv_name,lv_size", "vmvg")
                != (lvs_before[machine.name])
            ):
                counted.append(f"{machine.name}: the LVs changed")
            for name, text in rendered.items():
                cluster.write_guest_file(machine, f"{WORK}/kisscluster/{name}.res", text)
            adjust = adjust_dry_run(lab, machine, f"{WORK}/kisscluster", active)
            counted += [f"{machine.name}: {line}" for line in adjust.splitlines()]
        rewritten = sorted(f"{n}: {sid}" for n, sid in proposed if REWRITTEN.search(sid))
        print(
            f"\nissue 13 in the lab: {len(counted)} DRBD/LV/VM changes; rewritten:",
            *rewritten,
            sep="\n  ",
        )
        assert counted == [], done.stdout
        assert any(f"kiss-vms-disks-{active[0]}-drbd-resource" in s for _, s in proposed)
    finally:
        lab.ok(lab.node1, "git", "-C", SITE, "checkout", "--", "pillar/cluster.yml")
        lab.ok(
            lab.node1,
            "git",
            "-C",
            SITE,
            "clean",
            "-fdq",
            "--",
            "vm-config/legacy",
            "vm-config/legacy.yml",
            "vm-templates",
        )
        for machine in lab.nodes:
            remove_original(lab, machine, original)
