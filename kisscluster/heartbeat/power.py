"""Power fencing: switch the peer off through its BMC with a fence agent before taking its VMs.

A fence device is configured per member (`fence1`, `fence2` in kissclusterd.conf): the agent's
command, then its options as name=value words, e.g.

    fence2 = fence_ipmilan ip=10.0.0.12 username=admin lanplus=1

The agent is any program that speaks the fence-agents interface (Debian's `fence-agents`:
`fence_ipmilan`, `fence_redfish`, ...): it reads its options as name=value lines on stdin,
`action=off` among them, and exits 0 once the machine is confirmed off. Secrets (password=...)
never go into the configuration, which comes from git: they are further name=value lines in a
root-only file of each node (`fence_secret_file`), appended to the options.

One fencing runs at a time on a node (a lock), and a confirmed power-off is remembered: the
daemon fences before it takes the VMs over, and DRBD's fence-peer handler, which may run at the
same moment for the same silence, finds the record and reports the peer fenced without
powering it off twice.
"""

import fcntl
import json
import logging
import os
import re
import shlex
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kisscluster.atomic import write_atomic

log = logging.getLogger("kissclusterd")

AGENT_TIMEOUT = 120.0  # seconds: agents retry the BMC and wait for the power state themselves
LOCK_FILE, RECORD_FILE = "power-fence.lock", "power-fenced.json"
_OPTION = re.compile(r"[a-z][a-z0-9_-]*=\S*")


class FenceConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Device:
    argv: tuple[str, ...]
    options: tuple[str, ...]  # name=value

    def line(self) -> str:
        return " ".join(shlex.quote(word) for word in (*self.argv, *self.options))


def parse_device(text: str) -> Device | None:
    """`agent [args...] name=value...`: the leading words up to the first name=value are the
    command, the rest its options. Empty text: no device."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise FenceConfigError(f"cannot split {text!r} into words: {exc}") from None
    if not words:
        return None
    first = next((i for i, word in enumerate(words) if "=" in word), len(words))
    argv, options = tuple(words[:first]), tuple(words[first:])
    if not argv:
        raise FenceConfigError(f"{text!r} names no agent before its options")
    bad = [word for word in options if not _OPTION.fullmatch(word)]
    if bad:
        raise FenceConfigError(f"options must be name=value words after the agent, got {bad}")
    if any(word.startswith("action=") for word in options):
        raise FenceConfigError("the action is kissclusterd's to choose: drop action=")
    return Device(argv, options)


def secret_options(path: Path) -> list[str]:
    """The name=value lines of a root-only secret file; none if the file does not exist."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return []
    with os.fdopen(fd, encoding="utf-8") as handle:
        info = os.fstat(handle.fileno())
        if info.st_mode & 0o077 or not stat.S_ISREG(info.st_mode):
            raise FenceConfigError(f"{path}: must be a regular file of mode 0600; chmod 0600 it")
        lines = [line.strip() for line in handle if line.strip() and not line.startswith("#")]
    bad = [line.split("=")[0] for line in lines if not _OPTION.fullmatch(line.replace(" ", ""))]
    if bad:
        raise FenceConfigError(f"{path}: lines must be name=value, not {bad}")
    return lines


def agent_input(device: Device, secret_file: Path, action: str) -> str:
    return "\n".join([f"action={action}", *device.options, *secret_options(secret_file)]) + "\n"


def run_agent(device: Device, secret_file: Path, action: str = "off") -> tuple[bool, str]:
    """Run the agent once: whether it confirmed `action`, and what it said."""
    try:
        done = subprocess.run(
            list(device.argv),
            input=agent_input(device, secret_file, action),
            capture_output=True,
            text=True,
            timeout=AGENT_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired, FenceConfigError) as exc:
        return False, str(exc)
    said = " ".join((done.stdout + done.stderr).split())[-300:]
    return (
        done.returncode == 0,
        f"exit {done.returncode}: {said}" if said else f"exit {done.returncode}",
    )


def fenced_since(run_dir: Path) -> float | None:
    """The wall time of the latest confirmed power-off of the peer, if any."""
    try:
        record = json.loads((run_dir / RECORD_FILE).read_text(encoding="utf-8"))
        return float(record["at"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def fence(device: Device, secret_file: Path, run_dir: Path, silent_since: float) -> bool:
    """Power the peer off unless that was confirmed after `silent_since` (wall time of the
    peer's last heartbeat): whether it is now confirmed off."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with open(run_dir / LOCK_FILE, "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        done_at = fenced_since(run_dir)
        if done_at is not None and done_at > silent_since:
            log.warning("power fencing: the peer was confirmed off at %s", time.ctime(done_at))
            return True
        began = time.monotonic()
        log.warning("power fencing: switching the peer off: %s", device.argv[0])
        ok, said = run_agent(device, secret_file)
        took = time.monotonic() - began
        if not ok:
            log.error("power fencing FAILED after %.1f s (%s): the peer's VMs wait", took, said)
            return False
        write_atomic(run_dir / RECORD_FILE, json.dumps({"at": time.time()}) + "\n")
        log.warning("power fencing: the peer is off (%.1f s; %s)", took, said)
        return True


def fence_until_done(
    attempt: Callable[[], bool], still_silent: Callable[[], bool], pause: float = 5.0
) -> bool:
    """Repeat `attempt` while the peer stays silent: True once fenced, False if it spoke."""
    while still_silent():
        if attempt():
            return True
        time.sleep(pause)
    return False
