"""kiss-verify's comparison: the facts of both nodes (kisscluster.verifyfacts) against what the
committed cache and the pillar say (kisscluster.verifywanted), as a list of differences.

Pure functions: facts in, differences out. Each difference names the node it concerns ("" for
the pair), what differs and the command that fixes it, run on that node.
"""

import difflib
import posixpath
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from kisscluster import names, placement, splitbrain, verifywanted

FIX_CONFIGURE = "kiss-configure"
SITE_PARTS = "vm-config pillar"


@dataclass(frozen=True, order=True)
class Difference:
    node: str
    kind: str
    subject: str
    detail: str
    fix: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


Facts = Mapping[str, Any]


def _first_change(wanted: str, actual: str) -> str:
    """The first changed lines of `actual` against `wanted`, as `-`/`+` lines on one line."""
    changed = [
        line.rstrip("\n")
        for line in difflib.unified_diff(wanted.splitlines(), actual.splitlines(), n=0)
        if line[:1] in "-+" and line[:3] not in ("---", "+++")
    ]
    shown = " | ".join(changed[:4])
    return shown + (f" | ... ({len(changed) - 4} more)" if len(changed) > 4 else "")


def compare_files(node: str, wanted: Sequence[verifywanted.WantedFile], facts: Facts) -> list:
    """Each file the states write: present, and equal to what they render."""
    found = []
    for want in wanted:
        kind = "res-file" if want.path.endswith(".res") else "unit-file"
        actual = facts["files"].get(want.path)
        if actual is None:
            found.append(Difference(node, kind, want.path, "missing", want.fix))
        elif actual != want.text:
            detail = "differs from what the pillar renders: " + _first_change(want.text, actual)
            found.append(Difference(node, kind, want.path, detail, want.fix))
    return found


def _instance(entry: str) -> str | None:
    """The VM of a `vm@<name>.service` link, or None when the name is not a VM name."""
    if not (entry.startswith("vm@") and entry.endswith(".service")):
        return None
    try:
        return names.validate_vm_name(entry[3:-8])
    except ValueError:
        return None


def compare_links(node: str, kiss: Facts, facts: Facts, config: Facts) -> list:
    """Active VMs wanted by all-vms.target; no other vm@ link anywhere; the verify timer on."""
    systemd = config["systemd_dir"]
    links = facts["links"]
    wants_dir = f"{systemd}/all-vms.target.wants"
    found = []
    expected = {f"{wants_dir}/vm@{name}.service": "vm@.service" for name in kiss["vms"]}
    expected[f"{systemd}/{verifywanted.TIMER_LINK}"] = posixpath.basename(verifywanted.TIMER_LINK)
    for path, unit in sorted(expected.items()):
        if posixpath.basename(links.get(path, "")) != unit:
            shown = links.get(path, "missing")
            detail = f"should link to {unit}, is {shown}"
            found.append(Difference(node, "unit-not-wanted", path, detail, FIX_CONFIGURE))
    for path, target in sorted(links.items()):
        if path in expected:
            continue
        vm = _instance(posixpath.basename(path))
        if vm is None:
            kind, detail = "unit-wanted", f"links to {target}"
            fix = f"rm {path} && systemctl daemon-reload"
        elif vm in kiss["vms"]:
            kind, detail = "unit-wanted", f"active VM {vm} wanted outside all-vms.target"
            fix = f"rm {path} && systemctl daemon-reload"
        elif vm in kiss["disabled_vms"]:
            kind, detail = "disabled-vm-wanted", f"disabled VM {vm} is enabled"
            fix = f"systemctl disable vm@{vm}.service"
        else:
            kind, detail = "unit-wanted", f"VM {vm} is not in the cache, yet enabled"
            fix = f"systemctl disable vm@{vm}.service"
        found.append(Difference(node, kind, path, detail, fix))
    return found


def compare_lvs(node: str, kiss: Facts, facts: Facts) -> list:
    """Every disk of every active VM has its LV, at least as large as the VM file asks."""
    vg = kiss["cluster"]["volume_group"]
    lvs = facts["lvs"]
    if "error" in lvs:
        return [Difference(node, "lvs-failed", vg, lvs["error"], f"vgs {vg}")]
    sizes = lvs["sizes"]
    found = []
    for name, vm in sorted(kiss["vms"].items()):
        for disk in vm["disks"]:
            subject, wanted = f"{vg}/{disk['lv']}", int(disk["size_bytes"])
            if disk["lv"] not in sizes:
                detail = f"missing (disk {disk['name']} of VM {name})"
                found.append(Difference(node, "lv-missing", subject, detail, FIX_CONFIGURE))
            elif sizes[disk["lv"]] < wanted:
                detail = f"{sizes[disk['lv']]} bytes, the VM file asks for {wanted}"
                fix = (
                    f"lvextend -L {wanted}b {subject}, then once both nodes' LVs are grown "
                    f"`drbdadm resize {name}/{int(disk['volume'])}` on one node"
                )
                found.append(Difference(node, "lv-too-small", subject, detail, fix))
    return found


def compare_running(node: str, kiss: Facts, facts: Facts) -> list:
    """DRBD runs each active VM's resource as its file says: `drbdadm -d adjust` is silent."""
    found = []
    for name in sorted(kiss["vms"]):
        lines = facts["adjust"].get(name)
        if lines:
            shown = "; ".join(lines[:3]) + (f"; ... ({len(lines) - 3} more)" if lines[3:] else "")
            detail = f"DRBD runs another configuration: drbdadm adjust would run {shown}"
            fix = f"drbdadm adjust {name}"
            found.append(Difference(node, "drbd-running", name, detail, fix))
    return found


def compare_sync(kiss: Facts, facts: Mapping[str, Facts]) -> list:
    """Blocks DRBD found out of sync (online verify; /proc/drbd `oos:` while Connected): the
    copy of the node not running the VM (not Primary; if neither is, not `primary_on`) is the
    stale one, resynced from the other by reconnecting it."""
    members = [m["name"] for m in kiss["cluster"]["members"]]
    proc = {
        node: splitbrain.parse_proc_drbd(data["proc_drbd"] or "") for node, data in facts.items()
    }
    found = []
    for name, vm in sorted(kiss["vms"].items()):
        kib, primary = 0, None
        for node, minors in proc.items():
            for disk in vm["disks"]:
                fields = minors.get(int(disk["minor"]), {})
                if fields.get("cs") == "Connected":
                    kib = max(kib, int(fields.get("oos", "0")))
                if fields.get("ro", "").startswith("Primary"):
                    primary = node
        if not kib:
            continue
        good = primary or vm["primary_on"]
        stale = next(m for m in members if m != good)
        detail = f"online verify found {kib} KiB out of sync; {good}'s copy is the one in use"
        fix = f"drbdadm disconnect {name} && drbdadm connect {name}"
        found.append(Difference(stale, "out-of-sync", name, detail, fix))
    return found


def compare_git(kiss: Facts, facts: Mapping[str, Facts]) -> list:
    """Both bare repositories at one commit; each working copy at its bare's and clean."""
    primary = kiss["cluster"]["members"][0]["name"]
    found = []
    heads = {}
    for node, data in sorted(facts.items()):
        state = data["git"]
        if "error" in state:
            found.append(Difference(node, "git", "site", state["error"], "kiss-init"))
            continue
        heads[node] = state["bare_head"]
        if state["work_head"] != state["bare_head"]:
            detail = f"working copy at {state['work_head']}, its bare one at {state['bare_head']}"
            found.append(Difference(node, "git-working-copy", "site", detail, FIX_CONFIGURE))
        if state["pending"]:
            detail = "uncommitted edits: " + ", ".join(state["pending"][:5])
            fix = FIX_CONFIGURE
            if node != primary:
                fix = (
                    f"move them to the primary {primary}, then `git checkout -- {SITE_PARTS}` here"
                )
            found.append(Difference(node, "git-pending", "site", detail, fix))
    if len(set(heads.values())) > 1:
        detail = "bare repositories at different commits: " + ", ".join(
            f"{node} {head or '(no branch)'}" for node, head in sorted(heads.items())
        )
        fix = (
            f"on {primary}: find the right one (`git log` in both), `git fetch <its URL> && git "
            "merge --ff-only FETCH_HEAD && git push origin`, then kiss-configure"
        )
        found.append(Difference("", "git-bare", "site", detail, fix))
    return found


def compare(kiss: Facts, facts: Mapping[str, Facts]) -> list[Difference]:
    """Every difference of the nodes in `facts` (one with kiss-verify --local, else both)."""
    found = []
    for node, data in sorted(facts.items()):
        config = verifywanted.settings(kiss, data["overrides"])
        placed = placement.parse(data.get("placement"))
        found += compare_files(node, verifywanted.wanted_files(kiss, node, config, placed), data)
        found += compare_links(node, kiss, data, config)
        found += compare_lvs(node, kiss, data)
        found += compare_running(node, kiss, data)
    found += compare_sync(kiss, facts)
    found += compare_git(kiss, facts)
    return sorted(found)
