"""Command lines: kiss-configure (and its `node` subcommands run on the peer), kiss-init,
kiss-nuke-vm."""

import argparse
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path

import git

from kisscluster import inventory
from kisscluster import nuke as nuke_mod
from kisscluster.configure import gitsite, nodeside, nuking, primary
from kisscluster.configure import init as init_mod
from kisscluster.configure.node import NodeError, load_node
from kisscluster.configure.remote import Outcome


def _error(message: str) -> int:
    print(f"error: {message}", file=sys.stderr)
    return 1


def _run(command: Callable[[], int], *refusals: type[Exception]) -> int:
    """Run a command's whole job; a refusal or a git error is one `error:` line and exit 1."""
    caught: tuple[type[Exception], ...] = (NodeError, gitsite.SiteError, *refusals)
    try:
        return command()
    except caught as exc:
        return _error(str(exc))
    except git.GitError as exc:
        return _error(f"git: {gitsite.one_line(exc)}")


def _say(line: str) -> None:
    print(line, flush=True)


def _config_dir_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "-c",
        "--config-dir",
        type=Path,
        help="Salt minion config dir of this node (default: $SALT_CONFIG_DIR or /etc/salt)",
    )


def _node_command(args: argparse.Namespace) -> int:
    """`kiss-configure node ...`: what the primary asks the peer; prints one Outcome JSON line."""
    try:
        node = load_node(args.config_dir)
    except NodeError as exc:
        print(Outcome("?", False, [str(exc)]).to_json())
        return 1
    if args.action == "check":
        outcome = nodeside.check(node, args.commit)
    elif args.action == "apply" and args.candidate_stdin:
        with tempfile.TemporaryDirectory(prefix="kiss-configure-candidate-") as scratch:
            try:
                candidate = nodeside.unpack_candidate(sys.stdin.read(), Path(scratch))
            except (ValueError, tarfile.TarError) as exc:  # binascii.Error is a ValueError
                print(Outcome(node.minion_id, False, [str(exc)]).to_json())
                return 1
            outcome = nodeside.apply(node, args.commit, args.sls, True, candidate)
    elif args.action == "apply":
        outcome = nodeside.apply(node, args.commit, args.sls, args.test)
    elif args.action == "init-bare":
        outcome = init_mod.node_init_bare(node, args.group)
    elif args.action == "clone":
        outcome = init_mod.node_clone(node, args.peer_addr, Path(args.peer_bare), args.group)
    elif args.action == "nuke":
        outcome = nuking.nuke_here(node, args.vm, args.test, args.force)
    else:
        outcome = init_mod.node_secret(node, sys.stdin.read())
    print(outcome.to_json())
    return 0 if outcome.ok else 1


def configure_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiss-configure",
        description="Commit the site's edits, sync both nodes' repositories, run the inventory, "
        "push, and apply kiss.vms on both nodes (salt-run state.orchestrate kiss.vms).",
    )
    _config_dir_option(parser)
    parser.add_argument(
        "--force",
        action="store_true",
        help="run on a node that is not the primary, or with the peer unreachable; "
        "keeping git in sync is then your job",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="no commit, no push; both nodes apply with test=True and report what would change",
    )
    parser.add_argument(
        "--run-config-dir",
        type=Path,
        default=primary.DEFAULT_RUN_CONFIG_DIR,
        help="config dir for salt-run (salt/master.example; default %(default)s)",
    )
    commands = parser.add_subparsers(dest="command")
    node = commands.add_parser("node", help="steps the primary runs on the peer (internal)")
    node.add_argument("action", choices=["check", "apply", "init-bare", "clone", "secret", "nuke"])
    node.add_argument("--commit", default="")
    node.add_argument("--sls", default="kiss.vms")
    node.add_argument("--test", action="store_true")
    node.add_argument("--candidate-stdin", action="store_true")
    node.add_argument("--vm", default="")
    node.add_argument("--force", action="store_true")
    node.add_argument("--peer-addr", default="")
    node.add_argument("--peer-bare", default="")
    node.add_argument("--group", default=init_mod.DEFAULT_GROUP)
    args = parser.parse_args(argv)
    if args.command == "node":
        return _node_command(args)
    options = primary.Options(
        force=args.force,
        dry_run=args.dry_run,
        config_dir=args.config_dir,
        run_config_dir=args.run_config_dir,
    )
    return _run(
        lambda: primary.configure(options, say=_say),
        primary.ConfigureError,
        inventory.InventoryError,
    )


def init_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiss-init",
        description="Create the bare repository and the working copy on both nodes (run on the "
        "primary), seed the site, and copy the heartbeat secret to the peer.",
    )
    _config_dir_option(parser)
    parser.add_argument(
        "--from",
        dest="skeleton",
        type=Path,
        help="site skeleton with pillar/ and vm-config/ (default: this install's example site)",
    )
    parser.add_argument(
        "--group",
        default=init_mod.DEFAULT_GROUP,
        help="group that may edit the working copy (default %(default)s)",
    )
    parser.add_argument(
        "--force", action="store_true", help="run on a node that is not the primary"
    )
    parser.add_argument(
        "--rejoin",
        action="store_true",
        help="on the node that kept the site (either node): make the reinstalled peer's "
        "repositories again from this node's and copy it the heartbeat secret",
    )
    args = parser.parse_args(argv)
    options = init_mod.InitOptions(
        config_dir=args.config_dir,
        skeleton=args.skeleton,
        group=args.group,
        force=args.force,
        rejoin=args.rejoin,
    )

    def init() -> int:
        init_mod.init(options, say=_say)
        return 0

    return _run(init, init_mod.InitError, inventory.InventoryError)


def nuke_main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="kiss-nuke-vm",
        description="Remove a disabled VM for good on both nodes (DRBD, resource file, unit "
        "config, LVs), then forget it from the cache; its DRBD minors are never reused. Run on "
        "the primary (salt-run state.orchestrate kiss.nuke).",
    )
    _config_dir_option(parser)
    parser.add_argument("vm", help="the VM to nuke; its *.yml file must be gone already")
    parser.add_argument(
        "--test", action="store_true", help="list every step on both nodes, remove nothing"
    )
    parser.add_argument(
        "--force", action="store_true", help="nuke even while the VM runs (it is stopped first)"
    )
    parser.add_argument(
        "--run-config-dir",
        type=Path,
        default=primary.DEFAULT_RUN_CONFIG_DIR,
        help="config dir for salt-run (salt/master.example; default %(default)s)",
    )
    args = parser.parse_args(argv)
    options = nuking.NukeOptions(
        vm=args.vm,
        test=args.test,
        force=args.force,
        config_dir=args.config_dir,
        run_config_dir=args.run_config_dir,
    )
    return _run(
        lambda: nuking.nuke_vm(options, say=_say),
        primary.ConfigureError,
        nuke_mod.NukeError,
        ValueError,
    )
