"""kiss-vm-monitor VM ACTION: a VM's power button, pause, CD-ROM and screen, through the QMP
socket of its qemu (`<run_dir>/<vm>.qmp`, which every template opens) on the node that runs it.
kiss-console VM: where to reach its screen (VNC) and its serial console.
kiss.vms asks it the sizes of a running VM's drives and grows them (`block_resize`).

Run on either node: where the VM does not run, the command goes to the peer through the
cluster's remote command (as kiss-configure reaches it), and a screendump is written there.
"""

import argparse
import json
import os
import re
import socket
import subprocess
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from kisscluster import drbd, names

RUN_DIR = Path("/run/kvm")
VM_CONF_DIR = Path("/etc/vm")
TIMEOUT = 10.0
_VNC = re.compile(r"-vnc\s+(\S*?):(\d+)\b")

#: Action -> (the QMP command, whether it takes a file argument).
ACTIONS: dict[str, tuple[str, bool]] = {
    "powerdown": ("system_powerdown", False),
    "reset": ("system_reset", False),
    "pause": ("stop", False),
    "resume": ("cont", False),
    "cdrom": ("blockdev-change-medium", True),
    "eject": ("eject", False),
    "screendump": ("screendump", True),
    "info": ("query-status", False),
}


class MonitorError(Exception):
    """qemu refused the command, or its QMP socket is not there."""


class Qmp:
    """One QMP session over a unix socket, capabilities negotiated. Events that arrive while a
    command waits for its answer are kept for `event`."""

    def __init__(self, path: Path, timeout: float = TIMEOUT) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(timeout)
        self.timeout = timeout
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        try:
            self.sock.connect(str(path))
        except OSError as exc:
            self.sock.close()
            raise MonitorError(
                f"no QMP socket at {path} ({exc.strerror}): is the VM running here?"
            ) from None
        self._message()  # the greeting
        self.execute("qmp_capabilities")

    def _message(self) -> dict[str, Any]:
        while b"\n" not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise MonitorError("qemu closed its QMP socket")
            self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message

    def execute(self, command: str, **arguments: Any) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.sock.sendall(json.dumps(request).encode() + b"\n")
        while True:
            message = self._message()
            if "return" in message:
                return message["return"]
            if "error" in message:
                raise MonitorError(f"{command}: {message['error'].get('desc', message['error'])}")
            if "event" in message:
                self.events.append(message)

    def event(self, wait: float) -> dict[str, Any] | None:
        """The next event, waiting up to `wait` seconds for one; None if none came."""
        if self.events:
            return self.events.pop(0)
        self.sock.settimeout(wait)
        try:
            while True:
                message = self._message()
                if "event" in message:
                    return message
        except TimeoutError:
            return None
        finally:
            self.sock.settimeout(self.timeout)

    def close(self) -> None:
        self.sock.close()


def cdrom_device(block_devices: list[dict[str, Any]]) -> str:
    """The VM's CD-ROM drive among `query-block`'s devices: the removable one."""
    removable = [d for d in block_devices if d.get("removable")]
    if not removable:
        raise MonitorError("the VM has no CD-ROM drive (its template gives it none)")
    return str(removable[0].get("qdev") or removable[0]["device"])


def act(qmp: Qmp, action: str, argument: str | None) -> str:
    """Run one action; a line for the operator."""
    command, takes_file = ACTIONS[action]
    if takes_file and not argument:
        raise MonitorError(f"{action} needs a file")
    if action == "info":
        status = qmp.execute("query-status")
        blocks = qmp.execute("query-block")
        media = {
            str(b.get("qdev") or b["device"]): b.get("inserted", {}).get("file", "-")
            for b in blocks
        }
        return json.dumps({"status": status.get("status"), "block": media}, sort_keys=True)
    if action == "cdrom":
        device = cdrom_device(qmp.execute("query-block"))
        path = str(Path(str(argument)).resolve())
        qmp.execute(command, id=device, filename=path, format="raw")
        return f"CD-ROM {device}: {path}"
    if action == "eject":
        device = cdrom_device(qmp.execute("query-block"))
        qmp.execute(command, id=device, force=True)
        return f"CD-ROM {device}: ejected"
    if action == "screendump":
        path = str(Path(str(argument)).resolve())
        qmp.execute(command, filename=path)
        return f"screen written to {path} ({socket.gethostname()})"
    qmp.execute(command)
    return f"{command}: done"


def _drives(qmp: Qmp, vm: str, volumes: Sequence[int], by_res: str) -> dict[int, dict[str, Any]]:
    """Volume -> its drive in `query-block`, found by the DRBD device qemu opened: every template
    opens `<by_res>/<vm>/<volume>` whatever id it gives the drive."""
    paths = {f"{by_res}/{vm}/{int(volume)}": int(volume) for volume in volumes}
    return {
        paths[block["inserted"]["file"]]: block
        for block in qmp.execute("query-block")
        if block.get("inserted", {}).get("file") in paths
    }


def drive_sizes(
    vm: str, volumes: Sequence[int], run_dir: Path = RUN_DIR, by_res: str = drbd.BY_RES
) -> dict[int, int] | None:
    """Volume -> the size in bytes qemu shows the guest; None when the VM does not run here."""
    try:
        qmp = Qmp(run_dir / f"{names.validate_vm_name(vm)}.qmp")
    except MonitorError:
        return None
    try:
        drives = _drives(qmp, vm, volumes, by_res)
        return {v: int(d["inserted"]["image"]["virtual-size"]) for v, d in drives.items()}
    finally:
        qmp.close()


def device_bytes(path: str) -> int:
    """The size of the block device (or file) at `path`."""
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.lseek(fd, 0, os.SEEK_END)
    finally:
        os.close(fd)


def grow_drive(vm: str, volume: int, run_dir: Path = RUN_DIR, by_res: str = drbd.BY_RES) -> str:
    """Tell qemu the size of the DRBD device behind the VM's drive `volume` (`block_resize`), so
    the guest sees a grown disk without a restart; a line for the operator."""
    qmp = Qmp(run_dir / f"{names.validate_vm_name(vm)}.qmp")
    try:
        drive = _drives(qmp, vm, [volume], by_res).get(int(volume))
        if drive is None:
            raise MonitorError(f"qemu has no drive on {by_res}/{vm}/{int(volume)}")
        path = drive["inserted"]["file"]
        shown, size = int(drive["inserted"]["image"]["virtual-size"]), device_bytes(path)
        if size <= shown:
            return f"{vm}: qemu already shows {path} as {shown} bytes"
        target = (
            {"device": drive["device"]}
            if drive.get("device")
            else {"node-name": drive["inserted"]["node-name"]}
        )
        qmp.execute("block_resize", size=size, **target)
        return f"{vm}: qemu shows {path} as {size} bytes (was {shown}): the guest sees it now"
    finally:
        qmp.close()


def monitor(vm: str, action: str, argument: str | None, run_dir: Path = RUN_DIR) -> str:
    qmp = Qmp(run_dir / f"{names.validate_vm_name(vm)}.qmp")
    try:
        return act(qmp, action, argument)
    finally:
        qmp.close()


def runs_here(vm: str) -> bool:
    done = subprocess.run(
        ["systemctl", "is-active", "--quiet", f"vm@{vm}.service"], check=False, timeout=30
    )
    return done.returncode == 0


def running_peer(vm: str) -> str | None:
    """The peer's name if `vm` runs there (asked through the cluster's remote command)."""
    from kisscluster.configure.node import load_node

    node = load_node()
    cluster = node.cluster()
    peer = cluster.peer_of(node.minion_id)
    asked = cluster.remote_command(peer, "systemctl", "is-active", "--quiet", f"vm@{vm}.service")
    done = subprocess.run(asked, check=False, timeout=60)
    return str(peer["name"]) if done.returncode == 0 else None


def on_peer(arguments: list[str]) -> int:
    """The same command on the peer, through the cluster's remote command."""
    from kisscluster.configure.node import load_node

    node = load_node()
    cluster = node.cluster()
    command = cluster.remote_command(cluster.peer_of(node.minion_id), "kiss-vm-monitor", *arguments)
    return subprocess.run(command, check=False, timeout=120).returncode


def main(argv: list[str] | None = None, here: Callable[[str], bool] = runs_here) -> int:
    parser = argparse.ArgumentParser(prog="kiss-vm-monitor", description=__doc__.split("\n\n")[0])
    parser.add_argument("vm")
    parser.add_argument("action", choices=sorted(ACTIONS))
    parser.add_argument("file", nargs="?", help="the ISO of `cdrom`, the image of `screendump`")
    parser.add_argument("--run-dir", type=Path, default=RUN_DIR, help=argparse.SUPPRESS)
    parser.add_argument("--here", action="store_true", help="only on this node")
    args = parser.parse_args(argv)
    try:
        vm = names.validate_vm_name(args.vm)
        if not args.here and not here(vm):
            # The file is the peer's: an ISO there, a screendump written there.
            forwarded = [vm, args.action, *([args.file] if args.file else []), "--here"]
            return on_peer(forwarded)
        print(f"{vm}: {monitor(vm, args.action, args.file, args.run_dir)}")
    except (MonitorError, ValueError, OSError) as exc:
        print(f"kiss-vm-monitor: {exc}", file=sys.stderr)
        return 1
    return 0


def console(vm: str, node: str, conf_dir: Path = VM_CONF_DIR, run_dir: Path = RUN_DIR) -> str:
    """How to reach the screen and the serial console of `vm`, which runs on `node`."""
    vm = names.validate_vm_name(vm)
    try:
        found = _VNC.search((conf_dir / f"{vm}.conf").read_text(encoding="utf-8"))
    except OSError as exc:
        raise MonitorError(f"{conf_dir / vm}.conf: {exc.strerror}: is {vm} a VM here?") from None
    if found is None:
        raise MonitorError(f"{conf_dir / vm}.conf gives the VM no VNC display")
    address, port = found.group(1) or "0.0.0.0", 5900 + int(found.group(2))  # noqa: S104
    return "\n".join(
        [
            f"{vm} runs on {node}: its screen is VNC {address}:{port} there",
            f"  from your desk: ssh -N -L {port}:{address}:{port} root@{node}, then a VNC "
            f"viewer on localhost:{port}",
            f"  serial console on {node}: socat -,raw,echo=0,escape=0x1d "
            f"UNIX-CONNECT:{run_dir}/{vm}.serial (Ctrl-] leaves)",
        ]
    )


def console_main(argv: list[str] | None = None, here: Callable[[str], bool] = runs_here) -> int:
    parser = argparse.ArgumentParser(prog="kiss-console", description="Where to reach a VM's "
                                     "screen (VNC) and serial console.")  # fmt: skip
    parser.add_argument("vm")
    args = parser.parse_args(argv)
    try:
        vm = names.validate_vm_name(args.vm)
        node = socket.gethostname() if here(vm) else running_peer(vm)
        if node is None:
            raise MonitorError(f"{vm} runs on neither node")
        print(console(vm, node))
    except (MonitorError, ValueError, OSError) as exc:
        print(f"kiss-console: {exc}", file=sys.stderr)
        return 1
    return 0
