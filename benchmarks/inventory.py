"""Time kiss-inventory as an operator runs it (a whole process) on 60 and 1,000 VM files.

    python3 benchmarks/inventory.py [--sizes 60 1000] [--repeat 11]
    python3 benchmarks/inventory.py --sizes 60 --original PATH/kisscluster-vm-inventory

Per size: the median wall time of an allocating run (the cache deleted first) and of a run that
changes nothing, taken in turn. With --original, also the original KISScluster's Perl inventory
(`node/roles/kisscluster-vms/helpers/kisscluster-vm-inventory` of the public repository
cmock/kisscluster; needs Debian's libyaml-perl) on a copy of the same VM files: it has no run
that changes nothing (it writes its cache every time), and it runs only up to 63 VMs. Its runs
alternate with our no-change runs, and the ratio printed is the median of the pairs' ratios, so
that a machine whose speed drifts still compares like with like.

Goals (issue 14): a no-change run at most 0.7 times the original's at 60 VMs, and faster than an
allocating run at 1,000 VMs. Run it with the package's bytecode compiled (as on a node after the
first run): PYTHONDONTWRITEBYTECODE makes every run compile the package again.
"""

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CHECKOUT = Path(__file__).resolve().parent.parent
#: The original stops at DRBD minor 252: 63 VMs, run after run.
ORIGINAL_MAX_VMS = 63
KISS_INVENTORY = [sys.executable, str(CHECKOUT / "scripts" / "kiss-inventory")]


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


def wall(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def measure(site: Path, repeat: int, original: str | None) -> dict[str, list[float]]:
    """Wall times of each kind of run, taken in turn after one warm-up round."""
    cache = site / "vm-config" / "example.yml"
    ours = [*KISS_INVENTORY, "--site", str(site)]
    theirs = site / "original" / "example"
    if original:
        shutil.copytree(site / "vm-config" / "example", theirs)
    times: dict[str, list[float]] = {"allocating": [], "no change": [], "original": []}
    for round_ in range(repeat + 1):
        cache.unlink(missing_ok=True)
        runs = {"allocating": wall(ours), "no change": wall(ours)}
        if original:
            runs["original"] = wall(["perl", original, str(theirs)])
        for kind, seconds in runs.items():
            if round_:
                times[kind].append(seconds)
    return times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 1000])
    parser.add_argument("--repeat", type=int, default=11)
    parser.add_argument("--original", help="the original's kisscluster-vm-inventory (Perl)")
    args = parser.parse_args()
    print(f"{'VM files':>8}  {'allocating':>10}  {'no change':>10}  {'original':>10}  ratio")
    met = True
    for count in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            original = args.original if count <= ORIGINAL_MAX_VMS else None
            times = measure(make_site(Path(tmp), count), args.repeat, original)
        median = {kind: statistics.median(t) for kind, t in times.items() if t}
        ratio = ""
        if times["original"]:
            pairs = zip(times["no change"], times["original"], strict=True)
            ratio = f"{statistics.median(ours / theirs for ours, theirs in pairs):.2f}x"
            met = met and float(ratio[:-1]) <= 0.7
        if count >= 1000:
            met = met and median["no change"] < median["allocating"]
        cells = "  ".join(
            f"{median[kind] * 1000:>7.0f} ms" if kind in median else f"{'-':>10}" for kind in times
        )
        print(f"{count:>8}  {cells}  {ratio}")
    verdict = "met" if met else "MISSED"
    print(f"goals (no change <= 0.7x the original; < allocating at 1,000): {verdict}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
