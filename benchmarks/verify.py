"""Time kiss-verify as an operator runs it (a whole process, both nodes) without a lab, on the
example site and on a generated site of 100 VMs.

    python3 benchmarks/verify.py [--sizes 0 100] [--repeat 5]

Size 0 is the example site itself (3 VMs). Each node is a directory on this machine: a minion
config, a working copy and bare repository (real git), and a root holding exactly the files
kiss.node and kiss.vms write (rendered by kisscluster.verifywanted), so the run is clean. What a
node without a lab cannot answer is dry: `lvs` is a script printing the LVs the cache wants,
`drbdadm -d adjust` is /bin/true (nothing to do), /proc/drbd is absent. The peer is reached
through the remote command as on a cluster, with `env` pointing at its directories instead of
ssh. Per size, the median wall time of `kiss-verify --json` (this node, the peer's `kiss-verify
--local --json`, the comparison), of `kiss-verify --local --json`, and of the comparison alone
(kisscluster.verify.compare on both nodes' facts, in process).
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

from kisscluster import inventory, pillar, verify, verifywanted
from kisscluster.verifyfacts import Host, Where, gather

CHECKOUT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
NODES = ("node1", "node2")


def make_site(root: Path, count: int) -> Path:
    """The example site, or one of `count` generated VMs, with its cache written."""
    site = root / "seed"
    for part in ("pillar", "vm-config"):
        shutil.copytree(CHECKOUT / part, site / part)
    if count:
        directory = site / "vm-config" / "example"
        for path in directory.glob("*.yml"):
            path.unlink()
        for index in range(count):
            spec = {
                "name": f"vm{index:04d}",
                "primary_on": NODES[index % 2],
                "network_bridge": "br0",
                "ram_megs": 1024,
                "cpus": 2,
                "root_disk_size": "20G",
                "more_disks": [{"name": "data", "size": "100G"}] if index % 3 == 0 else [],
            }
            (directory / f"vm{index:04d}.yml").write_text(yaml.safe_dump(spec))
    inventory.run(site)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main", str(site)], check=True)
    subprocess.run([*git, "-C", str(site), "add", "-A"], check=True)
    subprocess.run([*git, "-C", str(site), "commit", "-q", "-m", "site"], check=True)
    return site


def make_node(root: Path, seed: Path, name: str, kiss: dict) -> Path:
    """One node's directories; returns its minion config dir."""
    home = root / name
    subprocess.run(["git", "clone", "-q", "--bare", str(seed), str(home / "site.git")], check=True)
    subprocess.run(["git", "clone", "-q", str(home / "site.git"), str(home / "site")], check=True)
    sizes = [
        {"lv_name": d["lv"], "lv_size": str(d["size_bytes"])}
        for vm in kiss["vms"].values()
        for d in vm["disks"]
    ]
    (home / "lvs.json").write_text(json.dumps({"report": [{"lv": sizes}]}))
    lvs = home / "lvs"
    lvs.write_text(f"#!/bin/sh\nexec cat {home / 'lvs.json'}\n")
    lvs.chmod(0o755)
    lookup = {"root": str(home / "root"), "lvs": str(lvs), "drbdadm": "/bin/true"}
    config = verifywanted.settings(kiss, lookup)
    for wanted in verifywanted.wanted_files(kiss, name, config):
        path = home / "root" / wanted.path.lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(wanted.text)
    system = home / "root" / str(config["systemd_dir"]).lstrip("/")
    links = {f"all-vms.target.wants/vm@{vm}.service": "../vm@.service" for vm in kiss["vms"]}
    links[verifywanted.TIMER_LINK] = "../kiss-drbd-verify.timer"
    for link, target in links.items():
        (system / link).parent.mkdir(parents=True, exist_ok=True)
        (system / link).symlink_to(target)
    if name == "node1":
        lookup["remote_command"] = ["env", f"PATH={BIN}:/usr/bin:/bin",
                                    f"SALT_CONFIG_DIR={root / 'node2' / 'salt'}"]  # fmt: skip
    minion = {"id": name, "kiss_site": str(home / "site"), "kiss_lookup": lookup,
              "root_dir": str(home / "salt-root"), "file_client": "local"}  # fmt: skip
    (home / "salt").mkdir()
    (home / "salt" / "minion").write_text(yaml.safe_dump(minion))
    return home / "salt"


def wall(command: list[str], config: Path) -> float:
    env = {"PATH": f"{BIN}:/usr/bin:/bin", "SALT_CONFIG_DIR": str(config)}
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} exited {done.returncode}: {done.stdout}{done.stderr}"
        )
    return seconds


def measure(count: int, repeat: int) -> tuple[int, dict[str, float]]:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        seed = make_site(root, count)
        kiss = pillar.build(seed)
        configs = {name: make_node(root, seed, name, kiss) for name in NODES}
        kiss_verify = str(BIN / "kiss-verify")
        facts = {
            name: gather(
                Where(name, yaml.safe_load((configs[name] / "minion").read_text())["kiss_lookup"],
                      root / name / "site", root / name / "site.git"),
                kiss, Host(),
            )
            for name in NODES
        }  # fmt: skip
        times: dict[str, list[float]] = {"both nodes": [], "local": [], "compare": []}
        for round_ in range(repeat + 1):
            runs = {
                "both nodes": wall([kiss_verify, "--json"], configs["node1"]),
                "local": wall([kiss_verify, "--local", "--json"], configs["node1"]),
            }
            start = time.perf_counter()
            assert verify.compare(kiss, facts) == []
            runs["compare"] = time.perf_counter() - start
            for kind, seconds in runs.items():
                if round_:
                    times[kind].append(seconds)
    return len(kiss["vms"]), {kind: statistics.median(t) for kind, t in times.items()}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[0, 100],
                        help="VMs to generate; 0 is the example site")  # fmt: skip
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    print(f"{'VMs':>4}  {'both nodes':>10}  {'local':>10}  {'compare':>10}")
    for count in args.sizes:
        vms, median = measure(count, args.repeat)
        cells = "  ".join(f"{median[kind] * 1000:>7.0f} ms" for kind in median)
        print(f"{vms:>4}  {cells}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
