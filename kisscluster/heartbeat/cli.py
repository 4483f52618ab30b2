"""`kissclusterd run` (the daemon), `kissclusterd status [--json]`, `kissclusterd check-config`
(kiss.node's check before it installs a config), `kissclusterd witness` (on a third host), what
DRBD's handlers run: `fence-peer`, `stand-down RESOURCE`, `notify EVENT`, and what the daemon
runs to take a silent peer's VMs with power fencing: `fence-then -- ACTION...`."""

import argparse
import json
import logging
import logging.handlers
import sys
from pathlib import Path

from kisscluster.heartbeat import status
from kisscluster.heartbeat.config import DEFAULT_PATH, ConfigError, load, read_secret
from kisscluster.heartbeat.daemon import Daemon
from kisscluster.heartbeat.journal import configure_logging, log

HANDLERS = ("fence-peer", "stand-down", "notify", "fence-then")


def _journal_logging() -> None:
    """DRBD runs its handlers with no useful stdout or stderr: log to syslog (the journal)."""
    configure_logging()
    try:
        handler = logging.handlers.SysLogHandler(address="/dev/log")
    except OSError:
        return
    handler.ident = "kissclusterd: "
    log.addHandler(handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kissclusterd",
        description="Heartbeat and failover daemon of a kisscluster node pair.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run the daemon (in the foreground, for systemd)")
    show = commands.add_parser("status", help="show what the running daemon last published")
    check = commands.add_parser(
        "check-config", help="validate a config file: silent if it is good, else its error, exit 1"
    )
    show.add_argument("--json", action="store_true", help="print the status as JSON")
    fence = commands.add_parser(
        "fence-peer", help="DRBD's fence-peer handler (resource in $DRBD_RESOURCE)"
    )
    stand = commands.add_parser(
        "stand-down", help="after the peer took a resource over: kill its VM here, resync"
    )
    stand.add_argument("resource")
    witness = commands.add_parser(
        "witness", help="serve the witness's lease (on a third host of the production net)"
    )
    witness.add_argument("--listen", default="0.0.0.0", help="address (default all IPv4)")  # noqa: S104
    witness.add_argument("--port", type=int, default=694, help="TCP port (default 694)")
    witness.add_argument(
        "--secret-file", type=Path, required=True, help="the cluster's heartbeat secret"
    )
    then = commands.add_parser(
        "fence-then", help="power the silent peer off, then run ACTION (the daemon's takeover)"
    )
    then.add_argument("action", nargs="+", help="the action's argument list")
    event = commands.add_parser("notify", help="DRBD's event handlers: log (and mail) the event")
    event.add_argument("event", choices=("split-brain", "local-io-error", "after-resync-target"))
    event.add_argument("--mail", help="also mail this address (needs a `mail` program)")
    for sub in (run, check, fence, stand, then):
        sub.add_argument(
            "--config", type=Path, default=DEFAULT_PATH, help=f"default {DEFAULT_PATH}"
        )
    for sub in (run, show, fence, then):
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
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "witness":
        return _witness(args.listen, args.port, args.secret_file)
    if args.command in HANDLERS:
        return _handler(args)
    try:
        current = status.read(args.run_dir)
    except (OSError, ValueError, KeyError) as exc:
        print(f"kissclusterd status: no status under {args.run_dir}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(current, indent=2, sort_keys=True) if args.json else status.render(current))
    return 1 if current["stale"] else 0


def _check_config(path: Path) -> int:
    try:
        load(path)
    except ConfigError as exc:
        print(f"kissclusterd check-config: {exc}", file=sys.stderr)
        return 1
    return 0


def _witness(listen: str, port: int, secret_file: Path) -> int:
    from kisscluster.heartbeat.witness import Witness

    configure_logging()
    try:
        server = Witness((listen, port), read_secret(secret_file))
    except (ConfigError, OSError) as exc:
        log.error("witness: %s", exc)
        return 1
    log.info("witness: serving the lease on %s port %d", *server.address)
    server.serve()
    return 0


def _handler(args: argparse.Namespace) -> int:
    from kisscluster.heartbeat import fence

    if args.command == "fence-then":
        configure_logging()  # run by the daemon: its stderr is the daemon's, in the journal
    else:
        _journal_logging()
    try:
        if args.command == "fence-peer":
            return fence.fence_peer(args.config, args.run_dir)
        if args.command == "stand-down":
            return fence.stand_down(args.config, args.resource)
        if args.command == "fence-then":
            return fence.fence_then_act(args.config, args.run_dir, args.action)
        return fence.notify(args.event, args.mail)
    except (ConfigError, ValueError) as exc:
        log.error("%s: %s", args.command, exc)
        return fence.FAILED


if __name__ == "__main__":
    sys.exit(main())
