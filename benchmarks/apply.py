"""Wall time of a no-op `salt-call --local state.apply kiss.vms` for 10, 50 and 100 VMs.

Each size gets a site with that many VMs (allocated by the real inventory) and a node whose files
live under a temporary root. The file states run for real; LVM is the seam: `lvs` is a stand-in
printing, in lvs's JSON format, every LV the site needs (this host has no device-mapper), so the
run is the no-op of a node where everything exists. systemctl is /bin/true (it is never called in
a no-op run). `salt-call --local test.ping` is measured in the same run. Prints the median of
--repeat runs, the ratio to test.ping and the marginal milliseconds per VM.

    python3 benchmarks/apply.py [--sizes 10 50 100] [--repeat 3]
"""

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT / "tests"))

from kisstest import copy_example_site, write_minion_config  # noqa: E402

from kisscluster import inventory, pillar  # noqa: E402


def make_site(base: Path, count: int) -> Path:
    site = copy_example_site(base / "site")
    vm_dir = site / "vm-config" / "example"
    for path in vm_dir.glob("*.yml"):
        path.unlink()
    for index in range(count):
        spec = {
            "name": f"vm{index:03d}",
            "primary_on": "node1" if index % 2 else "node2",
            "network_bridge": "br0",
            "ram_megs": 64,
            "cpus": 1,
            "root_disk_size": "64M",
            "template": ("linux", "virtio-blk", "windows")[index % 3],
        }
        if index % 4 == 0:
            spec["more_disks"] = [{"name": "data", "size": "32M"}]
        (vm_dir / f"{spec['name']}.yml").write_text(yaml.safe_dump(spec))
    inventory.run(site)
    return site


def fake_lvs(base: Path, site: Path) -> str:
    rows = [
        {"lv_name": disk["lv"], "lv_size": str(disk["size_bytes"])}
        for vm in pillar.build(site)["vms"].values()
        for disk in vm["disks"]
    ]
    report = base / "lvs.json"
    report.write_text(json.dumps({"report": [{"lv": rows}]}))
    script = base / "lvs"
    script.write_text(f"#!/bin/sh\n# stand-in for lvs (no device-mapper here)\nexec cat {report}\n")
    script.chmod(0o755)
    return str(script)


def salt_call(config: Path, *args: str, expect_noop: bool = False) -> float:
    command = ["salt-call", "--local", "-c", str(config), "--out", "json", "--log-level", "quiet"]
    started = time.perf_counter()
    completed = subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=600, check=False
    )
    elapsed = time.perf_counter() - started
    if completed.returncode != 0:
        raise SystemExit(f"{args} failed:\n{completed.stdout[-2000:]}\n{completed.stderr[-2000:]}")
    if expect_noop:
        results = json.loads(completed.stdout)["local"]
        changed = [r["__id__"] for r in results.values() if r["changes"] or not r["result"]]
        if changed:
            raise SystemExit(f"not a no-op: {changed[:5]}")
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 50, 100])
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kiss-bench-") as tmp:
        base = Path(tmp)
        timings: dict[int, float] = {}
        ping = []
        for count in args.sizes:
            run_dir = base / str(count)
            site = make_site(run_dir, count)
            lookup = {"root": str(run_dir / "root"), "lvs": fake_lvs(run_dir, site)}
            lookup["systemctl"] = "/bin/true"
            config = write_minion_config(run_dir / "salt", site, "node1", kiss_lookup=lookup)
            salt_call(config, "state.apply", "kiss.vms")  # writes the files
            runs = []
            for _ in range(args.repeat):
                ping.append(salt_call(config, "test.ping"))
                runs.append(salt_call(config, "state.apply", "kiss.vms", expect_noop=True))
            timings[count] = statistics.median(runs)
        ping_time = statistics.median(ping)
        print(f"salt-call --local test.ping: {ping_time:.2f} s (median of {len(ping)})")
        for count, seconds in timings.items():
            per_vm = 1000 * (seconds - ping_time) / count
            print(
                f"{count:4d} VMs: no-op state.apply kiss.vms {seconds:.2f} s = "
                f"{seconds / ping_time:.2f} x test.ping, {per_vm:.1f} ms/VM beyond test.ping"
            )
        sizes = sorted(timings)
        if len(sizes) > 1:
            low, high = sizes[0], sizes[-1]
            marginal = 1000 * (timings[high] - timings[low]) / (high - low)
            print(f"marginal cost per VM ({low} -> {high} VMs): {marginal:.1f} ms")


if __name__ == "__main__":
    main()
