"""Where the lab keeps its files and which loopback ports and addresses its nodes use."""

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

NODES = ("node1", "node2")
# Guest networks. Storage and production are point-to-point links between the two guests; each
# guest also has an uplink to its own qemu user-net whose gateway plays the switch.
STORAGE_NET = "10.99.0"
PRODUCTION_NET = "192.0.2"
SWITCH_ADDR = "192.0.2.1"
# Reached through each guest's switch uplink (qemu `guestfwd`, kisscluster.lab.bmc): the
# nodes' stand-in BMC, and the witness the lab runs on the host.
BMC_ADDR, BMC_PORT = "192.0.2.4", 623
WITNESS_ADDR, WITNESS_PORT = "192.0.2.5", 694
VOLUME_GROUP = "vg0"
# Host programs and the Debian package that provides each.
HOST_TOOLS = {
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "debootstrap": "debootstrap",
    "mkfs.ext4": "e2fsprogs",
    "ssh": "openssh-client",
    "ssh-keygen": "openssh-client",
}


class LabError(Exception):
    """The lab cannot do what was asked; the message says why and what to do."""


@dataclass(frozen=True)
class Layout:
    """The lab work directory: image cache under image/, running nodes under run/."""

    root: Path
    port_base: int = 47000

    @classmethod
    def from_environment(cls) -> "Layout":
        root = Path(os.environ.get("KISS_LAB_DIR") or Path.cwd() / "lab-work").resolve()
        return cls(root, int(os.environ.get("KISS_LAB_PORT_BASE", "47000")))

    @property
    def image_dir(self) -> Path:
        return self.root / "image"

    @property
    def build_dir(self) -> Path:
        return self.root / "build"

    @property
    def wheels_dir(self) -> Path:
        return self.root / "wheels"

    @property
    def run_dir(self) -> Path:
        return self.root / "run"

    @property
    def ssh_key(self) -> Path:
        return self.root / "id_ed25519"

    def ssh_port(self, node: str) -> int:
        return self.port_base + node_number(node)

    def storage_port(self, node: str) -> int:
        return self.port_base + 10 + node_number(node)

    def production_port(self, node: str) -> int:
        return self.port_base + 20 + node_number(node)

    @property
    def witness_port(self) -> int:
        """The host loopback port of the lab's witness."""
        return self.port_base + 30


def node_number(node: str) -> int:
    if node not in NODES:
        raise LabError(f"unknown node {node!r}: the lab has {', '.join(NODES)}")
    return NODES.index(node) + 1


def peer_of(node: str) -> str:
    return NODES[2 - node_number(node)]


def storage_addr(node: str) -> str:
    return f"{STORAGE_NET}.{node_number(node)}"


def production_addr(node: str) -> str:
    return f"{PRODUCTION_NET}.{10 + node_number(node)}"


def require_host_tools(tools: Sequence[str] = tuple(HOST_TOOLS)) -> None:
    missing = sorted({HOST_TOOLS[tool] for tool in tools if shutil.which(tool) is None})
    if missing:
        raise LabError(
            f"missing host programs: install them with `apt-get install {' '.join(missing)}`"
        )


class Progress:
    """One line per phase on stderr, with the seconds the phase took and since the start."""

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.timings: dict[str, float] = {}

    def phase(self, name: str) -> "_Phase":
        return _Phase(self, name)

    def say(self, text: str) -> None:
        print(f"[{time.monotonic() - self.start:7.1f}s] {text}", file=sys.stderr, flush=True)


class _Phase:
    def __init__(self, progress: Progress, name: str) -> None:
        self.progress = progress
        self.name = name
        self.began = 0.0

    def __enter__(self) -> "_Phase":
        self.began = time.monotonic()
        self.progress.say(f"{self.name} ...")
        return self

    def __exit__(self, kind: object, value: object, traceback: object) -> None:
        took = time.monotonic() - self.began
        self.progress.timings[self.name] = took
        outcome = "done" if kind is None else "FAILED"
        self.progress.say(f"{self.name}: {outcome} in {took:.1f}s")


def run(
    arguments: Sequence[str | os.PathLike[str]],
    *,
    timeout: float,
    input_text: str | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a host command; its stdout, or LabError with its stderr."""
    try:
        done = subprocess.run(
            [str(a) for a in arguments],
            input=input_text,
            capture_output=True,
            text=True,
            timeout=timeout,
            cwd=cwd,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise LabError(f"{arguments[0]} did not finish within {timeout:.0f}s") from exc
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-15:])
        raise LabError(f"{' '.join(str(a) for a in arguments[:4])} ... failed:\n{tail}")
    return done.stdout
