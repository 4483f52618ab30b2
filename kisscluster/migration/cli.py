"""kiss-migrate VM [--to NODE] | --home, and kiss-maintenance NODE on|off [--home].

kiss-migrate moves a running VM to the peer without stopping its guest: the peer's qemu starts
waiting for the migration (`-incoming`, through the one-off parameters file vm@.service reads),
DRBD allows two primaries for this resource only and only for the window, qemu sends the guest
over the storage network, and the source's qemu, holding nothing any more, quits and its
volumes go Secondary. The VM then stays where the operator put it (kisscluster.placement) until
migrated back; `--home` migrates every VM that is away back to its primary_on node. It runs on
either node: where the VM does not run here, the peer does the work.

kiss-maintenance NODE on migrates every VM off NODE, one at a time, then marks NODE in
maintenance: neither node's kissclusterd gives it VMs back while its peer can run them, across
reboots too. If the peer fails meanwhile, NODE takes every VM (a VM runs somewhere whenever one
node can). `off` lifts the mark; with `--home`, the VMs whose home is NODE migrate back.
"""

import argparse
import contextlib
import json
import select
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

from kisscluster import names, placement, verifywanted, vmmonitor
from kisscluster import pillar as pillar_mod
from kisscluster.configure.node import Cluster, Node, NodeError, load_node
from kisscluster.migration import node as here_ops
from kisscluster.migration import plan
from kisscluster.migration.qemu import cancel_migration, migrate_out

PORT_BASE = 49152  # the migration of the VM whose first DRBD minor is m listens on this + m


class Refused(Exception):
    """The migration was refused before anything changed."""


class Site:
    """This node, its peer, the site's VMs and the commands that reach either node."""

    def __init__(self) -> None:
        self.node: Node = load_node()
        self.kiss = pillar_mod.build(self.node.site)
        self.cluster: Cluster = self.node.cluster()
        self.here = self.node.minion_id
        self.peer = self.cluster.peer_of(self.here)
        self.python = verifywanted.settings(self.kiss, self.node.lookup_overrides)["python"]
        self.session: subprocess.Popen[str] | None = None
        self.lost: str | None = None  # why the peer's session ended without an answer

    def vm(self, name: str) -> dict[str, Any]:
        vm = names.validate_vm_name(name)
        if vm not in self.kiss["vms"]:
            raise Refused(f"{vm} is not an active VM of cluster {self.cluster.name}")
        found: dict[str, Any] = self.kiss["vms"][vm]
        return found

    def on_peer(self, *words: str, timeout: float = here_ops.WAIT + 30) -> str:
        """One node operation (kisscluster.migration.node) on the peer, through one session
        kept open for all of them; its output. Once that session ended without an answer (the
        storage link down, the peer hung), every later operation fails at once: the peer undoes
        its own part of a migration when it stands aside (kisscluster.heartbeat.outdate)."""
        if self.lost is not None:
            raise RuntimeError(f"on {self.peer['name']}: not tried, {self.lost}")
        if self.session is None:
            command = self.cluster.remote_command(
                self.peer, self.python, "-m", "kisscluster.migration.node", "serve"
            )
            self.session = subprocess.Popen(command, stdin=subprocess.PIPE,
                                            stdout=subprocess.PIPE, text=True)  # fmt: skip
        assert self.session.stdin is not None and self.session.stdout is not None
        try:
            self.session.stdin.write(" ".join(words) + "\n")
            self.session.stdin.flush()
        except BrokenPipeError:
            self.lost = "its session ended"
            self.close()
            raise RuntimeError(f"on {self.peer['name']}: {self.lost}") from None
        ready, _, _ = select.select([self.session.stdout], [], [], timeout)
        line = self.session.stdout.readline() if ready else ""
        if not line:
            self.lost = f"no answer to {words[0]} ({'session ended' if ready else 'timeout'})"
            self.session.kill()
            self.close()
            raise RuntimeError(f"on {self.peer['name']}: {self.lost}")
        reply = json.loads(line)
        if not reply["ok"]:
            raise RuntimeError(f"on {self.peer['name']}: {reply['error']}")
        return str(reply["out"])

    def close(self) -> None:
        if self.session is not None:
            with contextlib.suppress(OSError):
                self.session.stdin.close()  # type: ignore[union-attr]
            try:
                self.session.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.session.kill()
            self.session = None

    def forward(self, *arguments: str) -> int:
        """The same command, run on the peer."""
        command = self.cluster.remote_command(self.peer, *arguments)
        return subprocess.run(command, check=False).returncode


def say(line: str) -> None:
    print(line, flush=True)


def steps(site: Site, vm: str, record: dict[str, Any], bandwidth: int | None):
    """The window and finish steps of migrating `vm` from here to the peer."""
    source, target = site.here, site.peer["name"]
    home = record["primary_on"]
    port = str(PORT_BASE + int(record["drbd_minor"]))
    address = site.peer["stor_addr"]
    uri = f"tcp:{f'[{address}]' if ':' in address else address}:{port}"
    peer, report = site.on_peer, {}

    def migrate() -> None:
        report.update(migrate_out(vm, uri, say, bandwidth))

    def on_both(local: Callable[..., None], op: str, *words: str) -> Callable[[], None]:
        """The node operation `op` on VM here (`local`), then on the peer."""

        def run() -> None:
            local(vm, *words)
            peer(op, vm, *words)

        return run

    def mark() -> None:
        here_ops.mark(vm, source, target, home, source)
        peer("mark", vm, source, target, home, target)

    def two_primaries(allow: bool) -> Callable[[], None]:
        def run() -> None:
            here_ops.two_primaries(vm, allow)
            peer("two-primaries", vm, "yes" if allow else "no")

        return run

    window = [
        plan.Step(f"{vm}: migration marked on both nodes", mark,
                  on_both(here_ops.unmark, "unmark")),
        plan.Step(f"{vm}: placed on {target} there",
                  lambda: peer("place", vm, target, target, home),
                  lambda: peer("place", vm, source, target, home)),
        plan.Step(f"{vm}: two primaries allowed", two_primaries(True), two_primaries(False)),
        plan.Step(f"{vm}: qemu on {target} waits for the guest on {uri}",
                  lambda: peer("incoming", vm, address, port),
                  lambda: peer("stop", vm)),
        plan.Step(f"{vm}: guest migrated to {target}", migrate, lambda: cancel_migration(vm)),
    ]  # fmt: skip
    finish = [
        plan.Step(f"{vm}: {target} starts it normally from now on",
                  lambda: peer("forget-incoming", vm)),
        plan.Step(f"{vm}: placed on {target} here",
                  lambda: here_ops.place(vm, target, source, home)),
        plan.Step(f"{vm}: qemu on {source} quit, its volumes Secondary",
                  lambda: here_ops.stop(vm)),
        plan.Step(f"{vm}: two primaries no longer allowed", two_primaries(False)),
        plan.Step(f"{vm}: migration unmarked", on_both(here_ops.unmark, "unmark")),
    ]  # fmt: skip
    return window, finish, report


def migrate(site: Site, vm: str, bandwidth: int | None, clock: Callable[[], float]) -> int:
    """Migrate `vm`, which runs here, to the peer."""
    record = site.vm(vm)
    target = site.peer["name"]
    started = clock()
    here_facts = here_ops.node_facts(vm)
    peer_facts = json.loads(site.on_peer("facts", vm))
    refused = plan.refusals(vm, int(record["ram_megs"]), site.here, target, here_facts, peer_facts)
    if refused:
        raise Refused("; ".join(refused))
    say(f"{vm}: migrating from {site.here} to {target}")
    window, finish, report = steps(site, vm, record, bandwidth)
    plan.carry_out(window, finish, say, clock)
    total = clock() - started
    qemu = report["qemu-seconds"]
    where = "home" if target == record["primary_on"] else f"away from home ({record['primary_on']})"
    say(
        f"{vm}: runs on {target}, {where}: {total:.1f} s in all, qemu's migration "
        f"{qemu:.2f} s, "
        f"kiss-migrate's own {total - qemu:.1f} s"
    )
    return 0


def _runs_on_peer(site: Site, vm: str) -> bool:
    command = site.cluster.remote_command(
        site.peer, "systemctl", "is-active", "--quiet", f"vm@{vm}.service"
    )
    return subprocess.run(command, check=False, timeout=60).returncode == 0


def migrate_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiss-migrate", description=__doc__.split("\n\n")[1])
    parser.add_argument("vm", nargs="?")
    parser.add_argument("--to", help="the node to move it to (default: the other one)")
    parser.add_argument("--home", action="store_true", help="migrate every away VM back home")
    parser.add_argument("--bandwidth", type=int, metavar="MIB_S",
                        help="cap qemu's migration at this many MiB/s")  # fmt: skip
    parser.add_argument("--here", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if bool(args.vm) == args.home:
        parser.error("name one VM, or give --home")
    try:
        with contextlib.closing(Site()) as site:
            if args.home:
                return migrate_home(site, args.bandwidth)
            vm = names.validate_vm_name(args.vm)
            to = names.validate_member_name(args.to) if args.to else None
            site.vm(vm)
            if to is not None and to not in (site.here, site.peer["name"]):
                raise Refused(f"{to} is not a member of cluster {site.cluster.name}")
            if not vmmonitor.runs_here(vm):
                if args.here:
                    raise Refused(f"{vm} does not run on {site.here}")
                if to == site.peer["name"]:
                    there = _runs_on_peer(site, vm)
                    raise Refused(f"{vm} {'already runs on' if there else 'runs on neither'} "
                                  f"{to if there else 'node'}")  # fmt: skip
                return site.forward("kiss-migrate", vm, "--here", *_bandwidth(args.bandwidth))
            if to == site.here:
                raise Refused(f"{vm} already runs on {to}")
            return migrate(site, vm, args.bandwidth, time.monotonic)
    except Refused as exc:
        print(f"kiss-migrate: refused: {exc}", file=sys.stderr)
        return 2
    except plan.Failed as exc:
        what = (
            "undone, the VM runs where it ran"
            if exc.undone
            else "NOT fully undone: a peer cut off undoes its own part as it gives way; "
            "kiss-overview shows what is left"
        )
        if exc.left:
            what = f"the VM runs on the peer; left to do: {'; '.join(exc.left)}"
        print(f"kiss-migrate: {exc} ({what})", file=sys.stderr)
        return 1
    except (NodeError, ValueError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"kiss-migrate: {exc}", file=sys.stderr)
        return 1


def _bandwidth(bandwidth: int | None) -> list[str]:
    return [] if bandwidth is None else ["--bandwidth", str(bandwidth)]


def away_vms(site: Site) -> dict[str, str]:
    """The site's VMs placed away from home: VM -> the node it was moved to."""
    placed = placement.load(here_ops.placement_file())
    return {vm: node for vm, node in placed.away.items() if vm in site.kiss["vms"]}


def migrate_home(site: Site, bandwidth: int | None, only_home: str | None = None) -> int:
    """Every VM away from home (whose home is `only_home`, if given) migrated back, one by one."""
    failed = 0
    for vm, node in away_vms(site).items():
        home = site.kiss["vms"][vm]["primary_on"]
        if only_home not in (None, home):
            continue
        say(f"{vm}: away on {node}, home is {home}")
        if node == site.here:
            failed |= migrate_reporting(site, vm, bandwidth)
        else:
            failed |= site.forward("kiss-migrate", vm, "--here", *_bandwidth(bandwidth)) != 0
    return 1 if failed else 0


def migrate_reporting(site: Site, vm: str, bandwidth: int | None) -> int:
    """Migrate `vm` from here; 1 (said why) if that was refused or failed."""
    try:
        return migrate(site, vm, bandwidth, time.monotonic)
    except (Refused, plan.Failed, RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"kiss-migrate: {exc}", file=sys.stderr)
        return 1


def maintenance_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kiss-maintenance", description=__doc__.split("\n\n")[2])
    parser.add_argument("node")
    parser.add_argument("switch", choices=["on", "off"])
    parser.add_argument("--home", action="store_true", help="with off: migrate its VMs back")
    parser.add_argument("--bandwidth", type=int, metavar="MIB_S", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    started = time.monotonic()
    try:
        with contextlib.closing(Site()) as site:
            node = names.validate_member_name(args.node)
            if node not in (site.here, site.peer["name"]):
                raise Refused(f"{node} is not a member of cluster {site.cluster.name}")
            if args.switch == "on":
                failed = empty_node(site, node, args.bandwidth)
                if failed:
                    raise Refused(f"{node} still runs {', '.join(failed)}: maintenance not marked")
            set_maintenance(site, node, args.switch == "on")
            say(f"[{time.monotonic() - started:6.1f} s] {node}: maintenance {args.switch}")
            if args.switch == "off" and args.home:
                return migrate_home(site, args.bandwidth, only_home=node)
            return 0
    except Refused as exc:
        print(f"kiss-maintenance: refused: {exc}", file=sys.stderr)
        return 2
    except (NodeError, ValueError, OSError, RuntimeError, subprocess.SubprocessError) as exc:
        print(f"kiss-maintenance: {exc}", file=sys.stderr)
        return 1


def empty_node(site: Site, node: str, bandwidth: int | None) -> list[str]:
    """Every VM that runs on `node` migrated to the other node, one at a time; the VMs that
    still run there."""
    still = []
    for vm in sorted(site.kiss["vms"]):
        there = vmmonitor.runs_here(vm) if node == site.here else _runs_on_peer(site, vm)
        if not there:
            continue
        if node == site.here:
            failed = migrate_reporting(site, vm, bandwidth)
        else:
            failed = site.forward("kiss-migrate", vm, "--here", *_bandwidth(bandwidth))
        if failed:
            still.append(vm)
    return still


def set_maintenance(site: Site, node: str, on: bool) -> None:
    """The mark in both nodes' placement files (the peer's first: it may be unreachable)."""
    site.on_peer("maintenance", node, "on" if on else "off")
    here_ops.maintenance(node, on)
