"""Time kiss-overview as an operator runs it (a whole process, the peer asked over a real ssh)
at this machine's own speed, with both nodes up and with the peer dead.

    python3 benchmarks/overview.py [--repeat 7]

The two nodes are the tests' pair on this machine (tests/twonodes.py): directories with their
own config, the example site, and a real sshd on 127.0.0.1 and 127.0.0.2 through which node1
asks node2 (`kiss-overview --local`). What a node without a lab lacks (systemd's units, DRBD,
kissclusterd) each side reports as missing, which costs the same calls. The dead peer is a
listener that completes TCP's handshake and never speaks, the slowest kind of dead (a closed
port is refused at once). Per case, the median wall time of `kiss-overview --json` on node1, and
the issue's goal beside it.
"""

import argparse
import shutil
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

import yaml

CHECKOUT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(CHECKOUT / "tests"))

from twonodes import TEST_STATES, Pair, make_pair, start_sshd  # noqa: E402

from kisscluster import inventory  # noqa: E402

GOALS = {"both nodes up": 2.0, "peer dead": 5.0}  # seconds (issue 11)


def timed(pair: Pair, repeat: int) -> list[float]:
    seconds = []
    for _ in range(repeat):
        began = time.monotonic()
        done = pair.run("kiss-overview", pair.node1, "--json")
        seconds.append(time.monotonic() - began)
        if done.returncode not in (0, 1):
            raise SystemExit(f"kiss-overview exited {done.returncode}: {done.stderr}")
    return seconds


def peer_silent(site: Path, port: int) -> None:
    """The site's node2 reached at 127.0.0.3:`port` (the silent listener)."""
    cluster_file = site / "pillar" / "cluster.yml"
    definition = yaml.safe_load(cluster_file.read_text(encoding="utf-8"))
    definition["cluster"]["members"][1]["stor_addr"] = "127.0.0.3"
    definition["cluster"]["lookup"]["remote_command"][3:3] = ["-p", str(port)]
    cluster_file.write_text(yaml.safe_dump(definition), encoding="utf-8")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        base = Path(scratch)
        sshd = start_sshd(base / "sshd")
        try:
            pair = make_pair(base / "cluster", sshd, TEST_STATES)
            shutil.copytree(pair.skeleton, pair.node1.site)
            inventory.run(pair.node1.site)
            results = {"both nodes up": timed(pair, args.repeat)}
            with socket.socket() as silent:
                silent.bind(("127.0.0.3", 0))
                silent.listen(16)
                peer_silent(pair.node1.site, silent.getsockname()[1])
                results["peer dead"] = timed(pair, args.repeat)
        finally:
            sshd.stop()
    for case, seconds in results.items():
        print(
            f"{case:14} median {statistics.median(seconds):5.2f} s "
            f"(min {min(seconds):.2f}, max {max(seconds):.2f}, {len(seconds)} runs; "
            f"goal {GOALS[case]:.0f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
