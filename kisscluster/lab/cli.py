"""kiss-lab: the two-node qemu lab on this machine (see `kiss-lab --help`)."""

import argparse
import subprocess
import sys

from kisscluster.lab import cluster
from kisscluster.lab.image import ensure_image
from kisscluster.lab.layout import NODES, LabError, Layout, Progress, require_host_tools
from kisscluster.lab.machine import Machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiss-lab",
        description="Two Debian guests (node1, node2) under qemu TCG running this checkout's "
        "kisscluster on the example site. Work directory: $KISS_LAB_DIR or ./lab-work.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("image", help="build the guest image if its recipe changed")
    commands.add_parser(
        "up", help="boot both nodes, install kisscluster, kiss.node, kiss-init, kiss-configure"
    )
    commands.add_parser("down", help="power both nodes off and remove their disks")
    show = commands.add_parser("status", help="targets, VM units and DRBD state of both nodes")
    show.add_argument("--json", action="store_true", help="both nodes' probes as one JSON object")
    ssh = commands.add_parser("ssh", help="a shell (or a command) on a node")
    ssh.add_argument("node", choices=NODES)
    ssh.add_argument("remote", nargs=argparse.REMAINDER, help="command to run instead of a shell")
    kill = commands.add_parser("kill", help="hard power-off of a node, as a crash")
    kill.add_argument("node", choices=NODES)
    hang = commands.add_parser("hang", help="stop a node's qemu for SECONDS, then resume it")
    hang.add_argument("node", choices=NODES)
    hang.add_argument("seconds", type=float)
    start = commands.add_parser("start", help="power a node on again and wait until it is up")
    start.add_argument("node", choices=NODES)
    args = parser.parse_args(argv)

    layout = Layout.from_environment()
    progress = Progress()
    if args.command in ("hang", "kill", "start"):
        cluster.forget_fresh(layout)  # a faulted pair is no freshly rolled-out one for the tests
    try:
        if args.command == "image":
            ensure_image(layout, progress)
        elif args.command == "up":
            cluster.up(layout, progress)
        elif args.command == "down":
            cluster.down(layout, progress)
        elif args.command == "status":
            print(cluster.status(layout, args.json))
        elif args.command == "ssh":
            require_host_tools(["ssh"])
            machine = Machine(layout, args.node)
            command = machine.ssh_command(args.remote, tty=not args.remote and sys.stdin.isatty())
            return subprocess.run(command, check=False).returncode
        elif args.command == "hang":
            Machine(layout, args.node).hang(args.seconds)
            progress.say(f"{args.node}: resumed after {args.seconds:g} s")
        elif args.command == "kill":
            Machine(layout, args.node).kill()
            progress.say(f"{args.node}: powered off")
        else:
            cluster.boot(layout, progress, (args.node,))
    except LabError as exc:
        print(f"kiss-lab: error: {exc}", file=sys.stderr)
        return 1
    return 0
