"""kiss-adopt: a site of the original KISScluster (Perl inventory, Ansible role) as a kisscluster
site, without rebuilding a VM.

The original keeps, in its working copy (`/srv/kiss-configure` on its nodes), the cluster's
variables in `group_vars/<cluster>.yml` and the VMs in `vm-config/<cluster>/*.yml` beside its
allocation cache `vm-config/<cluster>.yml`. kiss-adopt writes `pillar/cluster.yml` from the
variables, keeping what the nodes already have: the volume group `vmvg` the original's role
hard-codes, DRBD ports 7788 + minor (`drbd_port_base`) and devices /dev/drbd_<vm>_<disk>
(`drbd_device_names`), the MAC prefix and keyboard. It copies the
VM files and the cache as they are: the inventory keeps every minor, reads names YAML would take
for booleans as names, lets cached VMs keep names with capitals or `_`, and on its first run
converts the cache, keeping the original beside it. The site gets the original's VM templates in
kisscluster's form (`vm-templates/`, winning over shipped ones of the same name), so a guest
restarted under kisscluster finds the machine it had. Everything is checked (an inventory dry
run) in a scratch copy before anything is written into the new site.
"""

import argparse
import collections
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from kisscluster import inventory, names, paths
from kisscluster.inventory import values
from kisscluster.inventory.schema import TextLoader
from kisscluster.inventory.values import TEMPLATE_SUFFIX

#: What the original's Ansible role hard-codes (roles/kisscluster-vms/tasks/main.yml, .res.j2).
ORIGINAL_VOLUME_GROUP = "vmvg"
ORIGINAL_DRBD_PORT_BASE = 7788
ORIGINAL_DEFAULT_TEMPLATE = "linux"


#: A VM file's top-level `disabled:` line.
_DISABLED_LINE = re.compile(r"^disabled:.*$", re.MULTILINE)


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
            "drbd_device_names": "vm_disk",
            "heartbeat": {},
            "lookup": {},
        }
    except (KeyError, TypeError) as exc:
        raise AdoptError(f"{source}/group_vars: the cluster variables lack {exc}") from None
    header = (
        f"# The cluster definition, adopted from the original KISScluster site {source} by\n"
        "# kiss-adopt: volume group, DRBD ports (7788 + minor) and device names, MAC prefix and\n"
        "# keyboard are the original's, so that nothing changes on the nodes. kisscluster's\n"
        "# example pillar/cluster.yml explains every key.\n"
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


class Adopted(NamedTuple):
    """The inventory's verdict on the new site (a dry run: the first real run, kiss-configure's,
    converts the cache), and the VMs whose `disabled:` key now says true."""

    result: inventory.Result
    kept_disabled: list[str]


def adopt(source: Path, site: Path, cluster: str | None = None) -> Adopted:
    """Write the kisscluster site `site` from the original site `source`."""
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
        kept_disabled = _keep_disabled(staged / "vm-config" / name)
        result = inventory.run(staged, dry_run=True)  # InventoryError: nothing written to `site`
        parts = ["pillar/cluster.yml", f"vm-config/{name}", inventory.cache_file(name)]
        for part in parts + [f"vm-templates/{template}" for template in added]:
            _move(staged / part, site / part)
    return Adopted(result, kept_disabled)


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


def _keep_disabled(vm_dir: Path) -> list[str]:
    """The original disabled every VM whose file has a `disabled:` key, whatever its value
    (kisscluster-vm-inventory: `exists ...->{disabled}`); kisscluster reads the value. A file
    whose key says otherwise says `disabled: true` in the new site; the VMs so kept disabled."""
    kept = []
    for path in sorted(vm_dir.glob("*.yml")):
        text = path.read_text(encoding="utf-8")
        data = yaml.load(text, Loader=TextLoader)  # noqa: S506
        if isinstance(data, dict) and "disabled" in data and not _says_true(data["disabled"]):
            note = f"disabled: true  # kiss-adopt: was {data['disabled']!r}, the original's rule"
            path.write_text(_DISABLED_LINE.sub(note, text, count=1), encoding="utf-8")
            kept.append(path.stem)
    return kept


def _says_true(value: object) -> bool:
    try:
        return values.boolean(value)
    except ValueError:
        return False


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
        result, kept_disabled = adopt(args.source, args.site, args.cluster)
    except (AdoptError, inventory.InventoryError, ValueError, OSError) as exc:
        print(f"kiss-adopt: {exc}", file=sys.stderr)
        return 1
    print(f"kiss-adopt: {args.site}: pillar/cluster.yml written, VM files and cache copied")
    new = ", ".join(result.allocated) or "none (every VM keeps its minors)"
    print(f"kiss-adopt: VMs the original's cache did not have, which get new minors: {new}")
    if kept_disabled:
        print(f"kiss-adopt: disabled as the original had them (their files have disabled:, now "
              f"true): {', '.join(kept_disabled)}")  # fmt: skip
    if result.original_kept:
        print(f"kiss-adopt: the first kiss-configure converts the cache; the original stays in "
              f"{result.original_kept}")  # fmt: skip
    print("kiss-adopt: next, on the primary: kiss-configure --dry-run must propose no DRBD or LV "
          "change")  # fmt: skip
    return 0
