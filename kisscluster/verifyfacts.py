"""What kiss-verify reads on one node: the facts, as plain JSON-able data.

Nothing here decides; kisscluster.verify compares. The facts do not depend on the VM list, so
each node gathers its own whatever its working copy holds: every `*.res` file of the DRBD
directory, the unit files of the kiss states, every `vm@` link in a `.wants`/`.requires`
directory, the volume group's LVs, `drbdadm -d adjust` of each resource file (what drbdadm would
change to bring the running DRBD to the file), /proc/drbd, and git. Paths are the node's own,
without the states' `root` prefix.

The LVM and DRBD commands and /proc/drbd go through one seam, `Host`: the host where the tests
run has no device-mapper and no DRBD module, so tests replace it; the lab runs it for real. git
runs for real everywhere.
"""

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import git

from kisscluster import lvm, names, nuke, splitbrain, verifywanted
from kisscluster.configure import gitsite

LINK_DIRS = ("*.wants", "*.requires")


class Host(nuke.HostSystem):
    """The real commands and /proc/drbd of this host."""

    def proc_drbd(self) -> str | None:
        try:
            return splitbrain.PROC_DRBD.read_text(encoding="utf-8")
        except OSError:
            return None


@dataclass(frozen=True)
class Where:
    """This node: its name, its `kiss_lookup` overrides, its working copy and bare repository."""

    node: str
    overrides: Mapping[str, Any]
    site: Path
    bare: Path


def _read(path: Path) -> str | None:
    try:
        return path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None


def _files(root: Path, config: Mapping[str, Any]) -> dict[str, str | None]:
    drbd_dir = root / str(config["drbd_dir"]).lstrip("/")
    found = {
        f"{config['drbd_dir']}/{path.name}": _read(path) for path in sorted(drbd_dir.glob("*.res"))
    }
    for unit in verifywanted.unit_files(config):
        found[unit] = _read(root / unit.lstrip("/"))
    return found


def _links(root: Path, config: Mapping[str, Any]) -> dict[str, str]:
    """Every `vm@*` entry and the verify timer's link in the systemd directory's .wants and
    .requires directories: path -> where it points."""
    systemd = str(config["systemd_dir"])
    base = root / systemd.lstrip("/")
    found = {}
    for pattern in LINK_DIRS:
        for folder in sorted(base.glob(pattern)):
            for entry in sorted(folder.iterdir()):
                relative = f"{systemd}/{folder.name}/{entry.name}"
                if entry.name.startswith("vm@") or relative.endswith(verifywanted.TIMER_LINK):
                    found[relative] = os.readlink(entry) if entry.is_symlink() else "(a file)"
    return found


def _lvs(host: Host, config: Mapping[str, Any], volume_group: str) -> dict[str, Any]:
    done = host.run(lvm.lvs_command(str(config["lvs"]), volume_group))
    if done.returncode != 0:
        return {"error": f"lvs exited {done.returncode}: {' '.join(done.stderr.split())}"}
    try:
        return {"sizes": lvm.parse_lvs(done.stdout)}
    except lvm.LvmError as exc:
        return {"error": str(exc)}


def adjust_command(config: Mapping[str, Any], resource: str) -> list[str]:
    """`drbdadm -d adjust RES`: the drbdsetup calls that would bring DRBD to the files."""
    command = [str(config["drbdadm"]), "-d"]
    if config["root"]:
        command += ["-c", f"{config['root']}/etc/drbd.conf"]
    return [*command, "adjust", names.validate_vm_name(resource)]


def _adjust(host: Host, config: Mapping[str, Any], resources: Sequence[str]) -> dict[str, Any]:
    """Resource -> drbdadm's dry-run lines ([] when the running DRBD matches its file)."""
    found: dict[str, Any] = {}
    for resource in resources:
        done = host.run(adjust_command(config, resource))
        lines = done.stdout.strip().splitlines()
        if done.returncode != 0:
            lines.append(f"(drbdadm exited {done.returncode}: {' '.join(done.stderr.split())})")
        found[resource] = lines
    return found


def _git(where: Where) -> dict[str, Any]:
    try:
        repo = git.Repo(where.site)
        branch = repo.active_branch.name
        return {
            "branch": branch,
            "work_head": repo.head.commit.hexsha,
            "bare_head": gitsite.remote_head(repo, str(where.bare), branch),
            "pending": gitsite.pending_edits(repo),
        }
    except (git.GitError, TypeError, ValueError, OSError) as exc:
        return {"error": gitsite.one_line(exc)}


def gather(where: Where, kiss: Mapping[str, Any], host: Host) -> dict[str, Any]:
    """This node's facts (the `kiss` pillar gives the volume group and the settings' lookup)."""
    config = verifywanted.settings(kiss, where.overrides)
    root = Path(config["root"] or "/")
    files = _files(root, config)
    resources = sorted(
        Path(path).stem for path in files if path.endswith(".res") and files[path] is not None
    )
    resources = [r for r in resources if _valid_vm_name(r)]
    return {
        "node": names.validate_member_name(where.node),
        "overrides": dict(where.overrides),
        "files": files,
        "placement": _read(root / str(config["placement_file"]).lstrip("/")),
        "links": _links(root, config),
        "lvs": _lvs(host, config, kiss["cluster"]["volume_group"]),
        "adjust": _adjust(host, config, resources),
        "proc_drbd": host.proc_drbd(),
        "git": _git(where),
    }


def _valid_vm_name(name: str) -> bool:
    try:
        names.validate_vm_name(name)
    except ValueError:
        return False
    return True
