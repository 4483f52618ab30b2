"""The VM inventory: `vm-config/<cluster>/*.yml` plus the allocation cache -> a new cache.

The cache (`vm-config/<cluster>.yml`) is the committed record of every VM the cluster has known and
of the DRBD minors it owns; `allocation` holds the rules that never lose a minor. Any bad input
stops the run with every problem listed (file, field, what to do) before anything is written; the
cache is written only when its bytes change, atomically, under a lock.

The package by concern: `values` (sizes, numbers, names), `schema` (the cluster and VM files),
`cache` (reading, writing, locking), `allocation` (pure), and here the entry points.
"""

from __future__ import annotations

from pathlib import Path

from kisscluster import names
from kisscluster.inventory.allocation import Result, reconcile
from kisscluster.inventory.cache import (
    Cache,
    Disk,
    VmRecord,
    cache_file,
    cache_from_data,
    cache_path,
    dump_cache,
    is_original_format,
    keep_original,
    load_cache,
    locked,
    original_copy,
    read_cache_file,
    text_to_write,
    write_cache,
)
from kisscluster.inventory.errors import InventoryError, Problem
from kisscluster.inventory.schema import (
    Cluster,
    Member,
    VmSpec,
    display_path,
    load_cluster,
    read_vm_files,
    vm_dir,
)
from kisscluster.inventory.values import (
    DRBD_PORT_BASE,
    MINORS_PER_VM,
    available_templates,
    format_size,
    normalize_size,
    parse_size,
)

__all__ = [
    "DRBD_PORT_BASE",
    "MINORS_PER_VM",
    "Cache",
    "Cluster",
    "Disk",
    "InventoryError",
    "Member",
    "Problem",
    "Result",
    "VmRecord",
    "VmSpec",
    "available_templates",
    "cache_file",
    "cache_path",
    "forget",
    "format_size",
    "load_cluster",
    "locked",
    "normalize_size",
    "original_copy",
    "parse_size",
    "read",
    "run",
    "vm_dir",
]


def run(site: Path | str, *, dry_run: bool = False) -> Result:
    """Reconcile the site's VM files with its cache and write the cache if it changed."""
    site = Path(site)
    templates = available_templates(site)
    cluster = load_cluster(site, templates)
    path = cache_path(site, cluster)
    shown = display_path(site, path)
    with locked(path.parent):
        file = read_cache_file(path, shown)
        old = cache_from_data(file.data, shown)
        specs = read_vm_files(site, cluster, templates, old.vms.keys())
        directory = vm_dir(site, cluster)
        files = {name: display_path(site, directory / f"{name}.yml") for name in specs}
        cache, result = reconcile(cluster, specs, old, files)
        text = text_to_write(file, cluster, cache)
        result.changed = text is not None
        result.cache_file = shown
        if text is not None and is_original_format(file.data):
            result.original_kept = display_path(site, original_copy(path))
        if text is not None and not dry_run:
            if result.original_kept and file.text is not None:
                keep_original(path, file.text)
            write_cache(path, text)
    return result


def read(site: Path | str) -> tuple[Cluster, Cache]:
    """The cluster and the committed cache, as they are (no allocation, nothing written)."""
    site = Path(site)
    cluster = load_cluster(site)
    path = cache_path(site, cluster)
    return cluster, load_cache(path, display_path(site, path))


def forget(site: Path | str, vm_name: str, *, dry_run: bool = False) -> bool:
    """Remove a nuked VM from the cache; its minors stay spent (the high-water mark is kept).

    Returns whether the VM was in the cache.
    """
    site = Path(site)
    vm_name = names.validate_vm_name(vm_name)
    cluster = load_cluster(site)
    path = cache_path(site, cluster)
    vm_file = vm_dir(site, cluster) / f"{vm_name}.yml"
    if vm_file.exists():
        raise InventoryError(
            [
                Problem(
                    display_path(site, vm_file),
                    "(file)",
                    f"{vm_name} still has a VM file: rename it away from *.yml (disable the VM) "
                    "and run kiss-configure before nuking it",
                )
            ]
        )
    with locked(path.parent):
        cache = load_cache(path, display_path(site, path))
        if vm_name not in cache.vms:
            return False
        del cache.vms[vm_name]
        if not dry_run:
            write_cache(path, dump_cache(cluster, cache))
    return True
