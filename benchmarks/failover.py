"""Failover time of kissclusterd in the namespace setup of the fault matrix, and a no-fault soak.

Run as root: python3 benchmarks/failover.py [--reps 5] [--soak 300] [--settings 1/3,0.25/0.75,2/6]

For each interval/dead-time setting, both daemons run in their namespaces; each repetition waits
a random fraction of an interval (so the fault falls anywhere between two heartbeats), injects
the fault, and times fault -> the surviving node's recorded all-vms action; then it heals and
waits for primary-vms on both again. Faults: the peer's daemon killed (SIGKILL, restarted
afterwards) and the switch unreachable from the peer (nftables drop in the peer's namespace).
Goals: <= 5 s at the defaults (1 s / 3 s), <= dead time + 1 interval at every setting, and no
state change at all during the soak (default settings, no fault). The worst case by design is
exactly dead time + interval (the fault right after a heartbeat) plus the time to start the
action, so the "decided" column (the daemon's own log) is shown beside the recorded action.
"""

import argparse
import random
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "heartbeat"))

import hb_netlab as netlab

DEFAULTS = (1.0, 3.0)  # (interval, dead time)
BLOCK_SWITCH = (
    "table inet noswitch {\n chain output {\n type filter hook output priority 0;\n"
    f" ip daddr {netlab.SWITCH} drop\n }}\n}}\n"
)


def settle(lab: netlab.Lab) -> None:
    lab.wait_states(3 * lab.dead_time + 10, n1="primary-vms", n2="primary-vms")


def decided_at(lab: netlab.Lab, node: str, state: str) -> float:
    """Wall time the node decided on `state`: its last "running action for <state>" log line
    (millisecond resolution), written just before the action is started."""
    lines = lab.log_text(node).splitlines()
    line = [x for x in lines if f"INFO running action for {state}:" in x][-1]
    stamp, millis = line[:23].split(",")
    return time.mktime(time.strptime(stamp, "%Y-%m-%d %H:%M:%S")) + int(millis) / 1000


def one_failover(lab: netlab.Lab, fault: str, dead: dict) -> tuple[float, float, float]:
    """Seconds from the fault to n1's recorded all-vms action and to its decision, and the
    longest span with VMs wanted on both meanwhile.

    `dead` collects the spans in which n2 counts as a dead node: from the kill of its daemon
    until the restarted daemon's first decision (a rebooted node runs nothing until then)."""
    time.sleep(lab.dead_time + random.uniform(0, lab.interval))
    before = len(lab.actions("n1"))
    if fault == "peer killed":
        lab.signal("n2", signal.SIGKILL)
        lab.daemons["n2"].wait(timeout=10)
    else:
        lab.nft("n2", BLOCK_SWITCH)
    start = lab.events[-1][0]
    lab.wait_for(
        lambda: len(lab.actions("n1")) > before and lab.state("n1") == "all-vms",
        lab.dead_time + lab.interval + 10,
        "n1 all-vms",
    )
    took = lab.actions("n1")[-1][0] - start
    decided = decided_at(lab, "n1", "all-vms") - start
    if took > lab.dead_time + lab.interval:  # evidence for the closing note
        tail = [x for x in lab.log_text("n1").splitlines()[-30:] if "no change" not in x]
        print(f"slow failover ({fault}, {took:.3f} s); n1 log:", *tail, sep="\n  ", file=sys.stderr)
    if fault == "peer killed":
        known = len(lab.actions("n2"))
        lab.start("n2")
        lab.wait_for(lambda: len(lab.actions("n2")) > known, lab.dead_time + 10, "n2 back")
    else:
        lab.wait_states(lab.dead_time + 10, n2="no-vms")
        lab.nft_flush("n2")
    settle(lab)
    if fault == "peer killed":  # down from the kill until the restarted daemon's first decision
        back = min(when for when, _ in lab.actions("n2") if when > start)
        dead.setdefault("n2", []).append((start, back))
    spans = netlab.violations(_actions(lab), dead)
    return took, decided, max((end - begin for begin, end in spans if end > start), default=0.0)


def _actions(lab: netlab.Lab) -> dict[str, list[tuple[float, str]]]:
    return {node: lab.actions(node) for node in netlab.NODES}


def measure(interval: float, dead_time: float, reps: int) -> list[tuple]:
    rows = []
    with tempfile.TemporaryDirectory() as tmp, netlab.lab(Path(tmp), interval, dead_time) as lab:
        lab.start("n1")
        lab.start("n2")
        settle(lab)
        dead: dict[str, list[tuple[float, float]]] = {}
        for fault in ("peer killed", "switch unreachable from peer"):
            results = [one_failover(lab, fault, dead) for _ in range(reps)]
            times = [t for t, _, _ in results]
            decided = max(d for _, d, _ in results)
            rows.append((interval, dead_time, fault, times, decided, max(w for _, _, w in results)))
    return rows


def soak(seconds: float) -> tuple[int, int]:
    """State changes during `seconds` of no fault at default settings, per node."""
    with tempfile.TemporaryDirectory() as tmp, netlab.lab(Path(tmp)) as lab:
        lab.start("n1")
        lab.start("n2")
        settle(lab)
        time.sleep(seconds)
        return len(lab.actions("n1")) - 1, len(lab.actions("n2")) - 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="failovers per fault and setting")
    parser.add_argument("--soak", type=float, default=300.0, help="seconds without a fault")
    parser.add_argument(
        "--settings",
        default="1/3,0.25/0.75,2/6",
        help="comma-separated interval/dead-time pairs (default: 1/3,0.25/0.75,2/6)",
    )
    args = parser.parse_args()
    settings = [tuple(float(x) for x in pair.split("/")) for pair in args.settings.split(",")]
    ok = True
    print(
        f"{'interval':>8} {'dead':>5}  {'fault':<29} {'n':>2} {'min':>6} {'median':>6} "
        f"{'max':>6} {'decided':>7}  {'max/dead':>8}  {'bound':>5}  {'both-window':>11}  goal"
    )
    for interval, dead_time in settings:
        for interval_, dead_, fault, times, decided, window in measure(
            interval, dead_time, args.reps
        ):
            bound = dead_ + interval_
            limit = min(5.0, bound) if (interval_, dead_) == DEFAULTS else bound
            met = max(times) <= limit
            verdict = "met" if met else f"MISSED by {(max(times) - limit) * 1000:.0f} ms"
            ok &= met
            print(
                f"{interval_:>8g} {dead_:>5g}  {fault:<29} {len(times):>2} {min(times):>6.3f} "
                f"{statistics.median(times):>6.3f} {max(times):>6.3f} {decided:>7.3f}  "
                f"{max(times) / dead_:>8.2f}  {bound:>5g}  {window:>10.3f}s  "
                f"{verdict}",
                flush=True,
            )
    if args.soak > 0:
        changes = soak(args.soak)
        print(f"soak: {args.soak:g} s, default settings, no fault: state changes n1 {changes[0]}, "
              f"n2 {changes[1]} -> {'met' if changes == (0, 0) else 'MISSED'}")  # fmt: skip
        ok &= changes == (0, 0)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
