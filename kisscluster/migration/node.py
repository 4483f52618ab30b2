"""What a live migration does on one node: `python3 -m kisscluster.migration.node OP VM ...`.

kiss-migrate runs these on the source directly and on the target through the cluster's remote
command (ssh over the storage network), so each takes plain words and prints at most one line
of JSON. Paths and drbdadm come from the node's kissclusterd.conf and kiss.node's defaults.

serve                         the operations below, one per line on stdin (one session)
facts VM                      what the pre-checks need (kisscluster.migration.plan.refusals)
mark VM SOURCE TARGET HOME HERE  `<run_dir>/<vm>.migration`: a migration from SOURCE to
                              TARGET is under way, HERE being this node and HOME the VM's
                              primary_on (unitctl adjust keeps two primaries allowed while it
                              is there)
unmark VM                     remove it
place VM NODE HERE PRIMARY_ON  the placement file and primary-vms.target's drop-in on HERE
                              with VM on NODE, then `systemctl daemon-reload`
two-primaries VM yes|no       DRBD's allow-two-primaries for the VM's resource
incoming VM ADDR PORT         start vm@VM with qemu waiting for the migration on ADDR:PORT
stop VM                       stop vm@VM (a qemu without its guest quits), wait until no
                              volume is Primary here, forget the incoming parameters
go-on VM                      this side of an interrupted window goes on alone (go_on); DRBD's
                              fence-peer handler starts it once it returned
"""

import argparse
import hashlib
import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TextIO

from kisscluster import drbd, names, placement, unitctl, verifywanted, vmmonitor
from kisscluster.atomic import write_atomic
from kisscluster.heartbeat import config as daemon_config
from kisscluster.heartbeat import copies
from kisscluster.overview import facts as overview_facts

SYSTEMD_DIR = copies.SYSTEMD_DIR
DRBD_DIR = copies.DRBD_DIR
PROC_DRBD = copies.PROC_DRBD
VM_CONF_DIR = vmmonitor.VM_CONF_DIR
RUN_DIR = vmmonitor.RUN_DIR
WAIT = 120.0  # seconds for a qemu to be ready, or a copy to be Secondary
POLL = 0.2


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except FileNotFoundError:
        return None


def _daemon_config() -> daemon_config.Config:
    return daemon_config.load(daemon_config.DEFAULT_PATH)


def active_target() -> str | None:
    states = overview_facts.systemctl_states([f"{t}.target" for t in overview_facts.TARGETS])
    active = [t for t in overview_facts.TARGETS if states[f"{t}.target"] == "active"]
    return active[0] if active else None


def mem_available_kib(meminfo: str) -> int:
    for line in meminfo.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    raise ValueError("no MemAvailable in /proc/meminfo")


def volumes(vm: str) -> list[dict[str, Any]]:
    minors = drbd.proc_volumes(PROC_DRBD.read_text(encoding="ascii"))
    return overview_facts.vm_volumes(DRBD_DIR, vm, minors) or []


def node_facts(vm: str) -> dict[str, Any]:
    return {
        "runs": vmmonitor.runs_here(vm),
        "migrating": (RUN_DIR / f"{vm}.migration").exists(),
        "conf_digest": _digest(VM_CONF_DIR / f"{vm}.conf"),
        "unit_digest": _digest(SYSTEMD_DIR / "vm@.service"),
        "volumes": volumes(vm),
        "target": active_target(),
        "maintenance": list(placement.load(placement_file()).maintenance),
        "mem_available_kib": mem_available_kib(Path("/proc/meminfo").read_text()),
    }


def placement_file() -> Path:
    return _daemon_config().placement_file


def maintenance(node: str, on: bool) -> None:
    path = placement_file()
    placement.save(placement.load(path).with_maintenance(node, on), path)


def mark(vm: str, source: str, target: str, home: str, here: str) -> None:
    RUN_DIR.mkdir(parents=True, exist_ok=True)
    marked = {"from": source, "to": target, "home": home, "here": here}
    write_atomic(RUN_DIR / f"{vm}.migration", json.dumps(marked) + "\n")


def marked(vm: str) -> dict[str, str] | None:
    """The mark of a migration of `vm` under way (or interrupted), or None."""
    try:
        found: dict[str, str] = json.loads((RUN_DIR / f"{vm}.migration").read_text())
    except FileNotFoundError:
        return None
    return found


def unmark(vm: str) -> None:
    (RUN_DIR / f"{vm}.migration").unlink(missing_ok=True)


def place(vm: str, node: str, here: str, primary_on: str) -> None:
    """Record `vm` on `node` in this node's (`here`) placement file and target drop-in."""
    path = placement_file()
    placement.save(placement.load(path).moved(vm, node, primary_on), path)
    drop_in = SYSTEMD_DIR / copies.HOME_DROP_IN
    wants, conflicts = (
        [name for name in listed if name != vm]
        for listed in placement.drop_in_lists(drop_in.read_text(encoding="utf-8"))
    )
    (wants if node == here else conflicts).append(vm)
    text = verifywanted.render_unit(
        "primary-vms-wants.conf", node=here, wants=sorted(wants), conflicts=sorted(conflicts)
    )
    write_atomic(drop_in, text)
    subprocess.run(["systemctl", "daemon-reload"], check=True)


def two_primaries(vm: str, allow: bool) -> None:
    done = subprocess.run(
        drbd.two_primaries_command(_daemon_config().drbdadm, vm, allow),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"drbdadm net-options: {drbd.error_line(done.stderr)}")


def _wait(what: str, ready: Callable[[], bool], wait: float = WAIT) -> None:
    deadline = time.monotonic() + wait
    while not ready():
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: not after {wait:.0f} s")
        time.sleep(POLL)


def qemu_status(vm: str) -> str | None:
    """The run state of this node's qemu for `vm` (kisscluster.unitctl.run_state), or None."""
    return unitctl.run_state(RUN_DIR, vm, timeout=5.0)


def listening(port: int, proc_net: Path = Path("/proc/net")) -> bool:
    """Whether a TCP socket on this host listens on `port` (qemu opens its QMP socket, and
    says `inmigrate`, before it listens for the migration)."""
    for table in ("tcp", "tcp6"):
        try:
            lines = (proc_net / table).read_text(encoding="ascii").splitlines()[1:]
        except FileNotFoundError:
            continue
        for line in lines:
            _, local, _, state = line.split()[:4]
            if state == "0A" and int(local.rsplit(":", 1)[1], 16) == port:
                return True
    return False


def incoming(vm: str, address: str, port: int) -> None:
    """vm@VM started with qemu waiting for the migration stream on address:port."""
    listen = f"[{address}]" if ":" in address else address
    write_atomic(
        RUN_DIR / f"{vm}.conf",
        "# kiss-migrate: this start receives the VM from the peer.\n"
        f"QEMU_EXTRA_ARGS=-incoming tcp:{listen}:{port}\n",
    )
    subprocess.run(["systemctl", "start", f"vm@{vm}.service"], check=True, timeout=WAIT)
    _wait(
        f"{vm}'s qemu waiting for the migration on port {port}",
        lambda: qemu_status(vm) == "inmigrate" and listening(port),
    )


def forget_incoming(vm: str) -> None:
    (RUN_DIR / f"{vm}.conf").unlink(missing_ok=True)


def stop(vm: str, wait: float = WAIT) -> None:
    """vm@VM stopped (it holds no guest here), and every volume of the VM Secondary here."""
    subprocess.run(["systemctl", "stop", f"vm@{vm}.service"], check=True, timeout=wait)
    forget_incoming(vm)
    _wait(
        f"{vm}'s volumes Secondary here",
        lambda: all(v.get("role") != "Primary" for v in volumes(vm)),
        wait,
    )


def give_way(vm: str, wait: float = WAIT) -> None:
    """This side of a migration's window, which does not run the guest, lets the other side
    run it on its own (the link between them is lost): this side's part of the migration undone
    here, as kiss-migrate, cut off from it, cannot. Its qemu quits and its volumes go Secondary,
    the VM is placed on the other node, two primaries are no longer allowed, the mark goes."""
    window = marked(vm)
    stop(vm, wait)
    if window is None:
        return
    place_on_the_other(vm, window)
    two_primaries(vm, False)
    unmark(vm)


def place_on_the_other(vm: str, window: dict[str, str]) -> None:
    """`vm` placed, on this side of the migration's window, on the other side."""
    here = window["here"]
    place(vm, window["from"] if here == window["to"] else window["to"], here, window["home"])


def go_on(vm: str) -> None:
    """This side of a migration's window goes on alone: the peer gave way, or is dead (DRBD's
    fence-peer handler got an answer that lets it go on). Two primaries are no longer allowed
    and the mark and incoming parameters go. A qemu here that holds no guest (it waited for the
    guest, or sent it to a peer now dead) is restarted, so that the VM runs from its disk: a
    failover, which leaves the VM placed here as the migration would have (on the target if it
    completed, else on the source), so that it goes there once the peer is back."""
    window = marked(vm)
    forget_incoming(vm)
    if qemu_status(vm) in unitctl.NO_GUEST_HERE:
        subprocess.run(["systemctl", "restart", f"vm@{vm}.service"], check=True, timeout=WAIT)
        if window is not None:  # after the start: until then this node's target wants the VM
            place_on_the_other(vm, window)
    two_primaries(vm, False)
    unmark(vm)


OPS: dict[str, tuple[int, Callable[..., object]]] = {  # op -> (words after VM, function)
    "mark": (4, mark),
    "unmark": (0, unmark),
    "place": (3, place),
    "incoming": (2, lambda vm, address, port: incoming(vm, address, int(port))),
    "forget-incoming": (0, forget_incoming),
    "stop": (0, stop),
    "go-on": (0, go_on),
    "two-primaries": (1, lambda vm, allow: two_primaries(vm, {"yes": True, "no": False}[allow])),
}


FAILURES = (ValueError, KeyError, TypeError, OSError, RuntimeError, subprocess.SubprocessError,
            daemon_config.ConfigError)  # fmt: skip


def run_op(op: str, name: str, words: list[str]) -> str:
    """One operation; what it prints (the facts' JSON, else nothing)."""
    if op == "maintenance":
        (switch,) = words
        maintenance(names.validate_member_name(name), {"on": True, "off": False}[switch])
        return ""
    vm = names.validate_vm_name(name)
    if op == "facts":
        return json.dumps(node_facts(vm))
    count, function = OPS[op]
    if len(words) != count:
        raise ValueError(f"takes {count} word(s) after the VM, got {words}")
    function(vm, *[names.validate_member_name(w) if op in ("mark", "place") else w for w in words])
    return ""


def serve(requests: TextIO, replies: TextIO) -> int:
    """Operations one per line (`OP NAME WORDS...`), each answered by one line of JSON:
    {"ok": true, "out": ...} or {"ok": false, "error": ...}. kiss-migrate keeps one such
    session open to the peer for a whole migration: one ssh connection and one Python start."""
    for line in requests:
        op, name, *words = line.split() or ["", ""]
        try:
            reply = {"ok": True, "out": run_op(op, name, words)}
        except FAILURES as exc:
            reply = {"ok": False, "error": f"{op} {name}: {exc}"}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python3 -m kisscluster.migration.node")
    parser.add_argument("op", choices=["serve", "facts", "maintenance", *OPS])
    parser.add_argument("name", nargs="?", help="the VM; for maintenance, the node")
    parser.add_argument("words", nargs="*")
    args = parser.parse_args(argv)
    if args.op == "serve":
        return serve(sys.stdin, sys.stdout)
    try:
        print(run_op(args.op, args.name or "", args.words))
    except FAILURES as exc:
        print(f"{args.op} {args.name}: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
