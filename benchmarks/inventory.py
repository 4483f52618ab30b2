"""Time the inventory for 100 and 1,000 VM files: first run allocates, second changes nothing.

Run: python benchmarks/inventory.py   (goal: 1,000 VMs in <= 1 s on the 2-core machine)
"""

import shutil
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kisscluster import inventory

CHECKOUT = Path(__file__).resolve().parent.parent


def make_site(root: Path, count: int) -> Path:
    for part in ("pillar", "vm-config"):
        shutil.copytree(CHECKOUT / part, root / part)
    directory = root / "vm-config" / "example"
    for path in directory.glob("*.yml"):
        path.unlink()
    for index in range(count):
        name = f"vm{index:04d}"
        spec = {
            "name": name,
            "primary_on": "node1" if index % 2 else "node2",
            "network_bridge": "br0",
            "ram_megs": 1024,
            "cpus": 2,
            "root_disk_size": "20G",
            "more_disks": [{"name": "data", "size": "100G"}] if index % 3 == 0 else [],
        }
        (directory / f"{name}.yml").write_text(yaml.safe_dump(spec))
    return root


def timed(site: Path) -> tuple[float, inventory.Result]:
    start = time.perf_counter()
    result = inventory.run(site)
    return time.perf_counter() - start, result


def main() -> int:
    rows = []
    for count in (100, 1000):
        with tempfile.TemporaryDirectory() as tmp:
            site = make_site(Path(tmp), count)
            first, allocated = timed(site)
            second, unchanged = timed(site)
            assert len(allocated.allocated) == count and not unchanged.changed
            rows.append((count, first, second))
    print(f"{'VM files':>8}  {'first run (allocates)':>22}  {'second run (no change)':>23}")
    for count, first, second in rows:
        print(f"{count:>8}  {first * 1000:>19.0f} ms  {second * 1000:>20.0f} ms")
    worst = max(first for count, first, _ in rows if count == 1000)
    print(f"goal: 1,000 VMs <= 1000 ms -> {'met' if worst <= 1.0 else 'MISSED'}")
    return 0 if worst <= 1.0 else 1


if __name__ == "__main__":
    sys.exit(main())
