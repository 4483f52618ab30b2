"""kiss-inventory: allocate DRBD minors for new VM files and write the cache of a site."""

import argparse
import sys
from pathlib import Path

from kisscluster import inventory, paths

DEFAULT_SITE = Path(paths.SITE_DIR)


def _summary(result: inventory.Result, dry_run: bool) -> str:
    lines = []
    for label, items in (
        ("allocated", result.allocated),
        ("activated", result.activated),
        ("disabled", result.disabled),
        ("added disks", result.added_disks),
        ("retired disks", result.retired_disks),
    ):
        lines.append(f"{label}: {', '.join(items) if items else '-'}")
    verb = "would change" if dry_run else "changed"
    state = verb if result.changed else "unchanged"
    lines.append(f"cache {result.cache_file}: {state}")
    if result.original_kept:
        lines.append(
            f"cache {result.cache_file} was the original KISScluster's: converted to this format, "
            f"which the original's inventory reads as empty; its copy is kept in "
            f"{result.original_kept}"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiss-inventory", description=__doc__)
    parser.add_argument(
        "--site",
        type=Path,
        default=DEFAULT_SITE,
        help=f"the site repository working copy (default {DEFAULT_SITE})",
    )
    parser.add_argument("--json", action="store_true", help="print the result as JSON")
    parser.add_argument(
        "--dry-run", action="store_true", help="say what would change; write nothing"
    )
    args = parser.parse_args(argv)
    try:
        result = inventory.run(args.site, dry_run=args.dry_run)
    except inventory.InventoryError as exc:
        print(f"kiss-inventory: {exc}", file=sys.stderr)
        return 1
    if args.json:
        import json  # only --json needs it: kiss-inventory starts faster without

        print(json.dumps(result.as_dict(), indent=2, sort_keys=True))
    else:
        print(_summary(result, args.dry_run))
    return 0
