"""kiss-adopt: a site of the original KISScluster (Perl inventory, Ansible role) as a kisscluster
site, without rebuilding a VM.

The original keeps, in its working copy (`/srv/kiss-configure` on its nodes), the cluster's
variables in `group_vars/<cluster>.yml` and the VMs in `vm-config/<cluster>/*.yml` beside its
allocation cache `vm-config/<cluster>.yml`. kiss-adopt writes `pillar/cluster.yml` from the
variables, keeping what the nodes already have: the volume group `vmvg` the original's role
hard-codes, DRBD ports 7788 + minor (`drbd_port_base`), the MAC prefix and keyboard. It copies the
VM files and the cache as they are: the inventory keeps every minor, reads names YAML would take
for booleans as names, lets cached VMs keep names with capitals or `_`, and on its first run
converts the cache, keeping the original beside it. The site gets the original's VM templates in
kisscluster's form (`vm-templates/`, winning over shipped ones of the same name), so a guest
restarted under kisscluster finds the machine it had. Everything is checked (an inventory dry
run) in a scratch copy before anything is written into the new site.
"""

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

from kisscluster import inventory, names, paths
from kisscluster.inventory.schema import TextLoader
from kisscluster.inventory.values import TEMPLATE_SUFFIX

#: What the original's Ansible role hard-codes (roles/kisscluster-vms/tasks/main.yml, .res.j2).
ORIGINAL_VOLUME_GROUP = "vmvg"
ORIGINAL_DRBD_PORT_BASE = 7788
ORIGINAL_DEFAULT_TEMPLATE = "linux"


class AdoptError(Exception):
    """The source is not an original site kiss-adopt can read, or the target is not empty."""


def original_cluster(source: Path, name: str | None) -> dict[str, Any]:
    """The variables of `group_vars/<cluster>.yml`: the one there, or the one named."""
    files = sorted((source / "group_vars").glob("*.yml"))
    if name is not None:
        files = [f for f in files if f.stem == name]
    if len(files) != 1:
        found = ", ".join(f.stem for f in files) or "none"
        raise AdoptError(
            f"{source}/group_vars: need exactly one cluster file{' named ' + name if name else ''}"
            f" (found: {found}); name it with --cluster"
        )
    data = yaml.safe_load(files[0].read_text(encoding="utf-8"))
    if not isinstance(data, dict) or "cluster_members" not in data:
        raise AdoptError(f"{files[0]}: not the original's cluster variables (no cluster_members)")
    return data


def cluster_file(variables: dict[str, Any], bridges: list[str], source: Path) -> str:
    """The text of `pillar/cluster.yml` for the original's variables."""
    common = collections.Counter(bridges).most_common(1)
    try:
        members = [
            {"name": m["name"], "prod_addr": m["prod_addr"], "stor_addr": m["stor_addr"]}
            for m in variables["cluster_members"]
        ]
        cluster = {
            "name": variables["cluster_name"],
            "members": members,
            "ping_addr": variables["ping_addr"],
            "volume_group": ORIGINAL_VOLUME_GROUP,
            "mac_prefix": str(variables["mac_addr_base"]),
            "keyboard": str(variables["vnc_keyboard_lang"]),
            "default_template": ORIGINAL_DEFAULT_TEMPLATE,
            "default_bridge": common[0][0] if common else "br0",
            "drbd_port_base": ORIGINAL_DRBD_PORT_BASE,
            "heartbeat": {},
            "lookup": {},
        }
    except (KeyError, TypeError) as exc:
        raise AdoptError(f"{source}/group_vars: the cluster variables lack {exc}") from None
    header = (
        f"# The cluster definition, adopted from the original KISScluster site {source} by\n"
        "# kiss-adopt: volume group, DRBD ports (7788 + minor), MAC prefix and keyboard are the\n"
        "# original's, so that nothing changes on the nodes. kisscluster's example\n"
        "# pillar/cluster.yml explains every key.\n"
    )
    return header + yaml.safe_dump({"cluster": cluster}, sort_keys=False)


def _vm_values(vm_files: list[Path], key: str) -> list[str]:
    """The values of `key` in the VM files that have it as text."""
    found = []
    for path in vm_files:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=TextLoader)  # noqa: S506
        if isinstance(data, dict) and isinstance(data.get(key), str):
            found.append(data[key])
    return found


def adopt(source: Path, site: Path, cluster: str | None = None) -> inventory.Result:
    """Write the kisscluster site `site` from the original site `source`; the inventory's
    verdict on it (a dry run: the first real run, kiss-configure's, converts the cache)."""
    variables = original_cluster(source, cluster)
    name = names.validate_cluster_name(variables.get("cluster_name"))
    vm_source = source / "vm-config" / name
    if not vm_source.is_dir():
        raise AdoptError(f"{vm_source}: no VM directory of cluster {name}")
    targets = [site / "pillar" / "cluster.yml", site / "vm-config" / name]
    taken = [str(t) for t in targets if t.exists()]
    if taken:
        raise AdoptError(f"{', '.join(taken)} exist already: adopt into a new site")
    vm_files = sorted(vm_source.glob("*.yml"))
    text = cluster_file(variables, _vm_values(vm_files, "network_bridge"), source)
    templates = {ORIGINAL_DEFAULT_TEMPLATE, *_vm_values(vm_files, "template")}
    with tempfile.TemporaryDirectory(prefix="kiss-adopt-") as scratch:
        staged = Path(scratch) / "site"
        _stage(staged, source, name, text, site)
        added = _original_templates(staged / "vm-templates", templates)
        result = inventory.run(staged, dry_run=True)  # InventoryError: nothing written to `site`
        parts = ["pillar/cluster.yml", f"vm-config/{name}", inventory.cache_file(name)]
        for part in parts + [f"vm-templates/{template}" for template in added]:
            _move(staged / part, site / part)
    return result


def _original_templates(directory: Path, used: set[str]) -> list[str]:
    """The original's templates in kisscluster's form for the names the VMs use, unless the
    site has its own of that name; the file names added."""
    added = []
    for source in sorted(paths.original_templates_dir().glob(f"*{TEMPLATE_SUFFIX}")):
        name = source.name[: -len(TEMPLATE_SUFFIX)]
        target = directory / source.name
        if name in used and not target.exists():
            directory.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
            added.append(source.name)
    return added


def _stage(staged: Path, source: Path, name: str, text: str, site: Path) -> None:
    """The new site in a scratch directory: the cluster file, the VM files, the cache, and
    whatever the target site already has that the inventory reads (its own templates)."""
    (staged / "pillar").mkdir(parents=True)
    (staged / "pillar" / "cluster.yml").write_text(text, encoding="utf-8")
    shutil.copytree(source / "vm-config" / name, staged / "vm-config" / name)
    cache = source / inventory.cache_file(name)
    if cache.is_file():
        shutil.copy2(cache, staged / "vm-config" / f"{name}.yml")
    if (site / "vm-templates").is_dir():
        shutil.copytree(site / "vm-templates", staged / "vm-templates")


def _move(staged: Path, target: Path) -> None:
    if not staged.exists():
        return
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(staged, target)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiss-adopt", description=__doc__.split("\n\n")[0])
    parser.add_argument("source", type=Path, help="the original site (its /srv/kiss-configure)")
    parser.add_argument("--site", type=Path, default=Path("."), help="the new site (default .)")
    parser.add_argument("--cluster", help="the cluster to adopt, if the source has several")
    args = parser.parse_args(argv)
    try:
        result = adopt(args.source, args.site, args.cluster)
    except (AdoptError, inventory.InventoryError, ValueError, OSError) as exc:
        print(f"kiss-adopt: {exc}", file=sys.stderr)
        return 1
    print(f"kiss-adopt: {args.site}: pillar/cluster.yml written, VM files and cache copied")
    new = ", ".join(result.allocated) or "none (every VM keeps its minors)"
    print(f"kiss-adopt: VMs the original's cache did not have, which get new minors: {new}")
    if result.original_kept:
        print(f"kiss-adopt: the first kiss-configure converts the cache; the original stays in "
              f"{result.original_kept}")  # fmt: skip
    print("kiss-adopt: next, on the primary: kiss-configure --dry-run must propose no DRBD or LV "
          "change")  # fmt: skip
    return 0
