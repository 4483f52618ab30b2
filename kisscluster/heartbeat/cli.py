"""`kissclusterd run` (the daemon) and `kissclusterd status [--json]`."""

import argparse
import json
import sys
from pathlib import Path

from kisscluster.heartbeat import status
from kisscluster.heartbeat.config import DEFAULT_PATH
from kisscluster.heartbeat.daemon import Daemon, configure_logging


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kissclusterd",
        description="Heartbeat and failover daemon of a kisscluster node pair.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon (in the foreground, for systemd)")
    run.add_argument("--config", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}")
    show = commands.add_parser("status", help="show what the running daemon last published")
    show.add_argument("--json", action="store_true", help="print the status as JSON")
    for sub in (run, show):
        sub.add_argument(
            "--run-dir",
            type=Path,
            default=status.DEFAULT_RUN_DIR,
            help=f"where the daemon publishes its status (default {status.DEFAULT_RUN_DIR})",
        )
    args = parser.parse_args(argv)
    if args.command == "run":
        configure_logging()
        return Daemon(args.config, args.run_dir).run()
    try:
        current = status.read(args.run_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"kissclusterd status: no status under {args.run_dir}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(current, indent=2, sort_keys=True) if args.json else status.render(current))
    return 1 if current["stale"] else 0
