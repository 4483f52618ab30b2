"""One lab node: its qemu process (TCG), its disks, its monitor, and ssh into it."""

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from kisscluster.lab.image import READY_MARKER, Image
from kisscluster.lab.layout import (
    BMC_ADDR,
    BMC_PORT,
    PRODUCTION_NET,
    SWITCH_ADDR,
    WITNESS_ADDR,
    WITNESS_PORT,
    LabError,
    Layout,
    node_number,
    peer_of,
    run,
)

MEMORY_MIB = int(os.environ.get("KISS_LAB_MEMORY", "1536"))
DATA_DISK_SIZE = "2G"
BOOT_TIMEOUT = 600.0
SSH_OPTIONS = (
    "-o", "BatchMode=yes",
    "-o", "StrictHostKeyChecking=no",
    "-o", "UserKnownHostsFile=/dev/null",
    "-o", "LogLevel=ERROR",
    "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=10",
)  # fmt: skip
# Guest NIC ids (qemu) and the PCI slots that give them their names in the guest (ensN).
SSH_NIC, STORAGE_NIC, PRODUCTION_NIC, SWITCH_NIC = "ssh", "storage", "production", "switch"


@dataclass(frozen=True)
class Machine:
    layout: Layout
    name: str

    @property
    def overlay(self) -> Path:
        return self.layout.run_dir / f"{self.name}.qcow2"

    @property
    def data_disk(self) -> Path:
        """The second virtio disk (vdb): the LVM physical volume of the volume group."""
        return self.layout.run_dir / f"{self.name}-data.raw"

    @property
    def serial_log(self) -> Path:
        return self.layout.run_dir / f"{self.name}.serial"

    @property
    def monitor_socket(self) -> Path:
        return self.layout.run_dir / f"{self.name}.monitor"

    @property
    def pid_file(self) -> Path:
        return self.layout.run_dir / f"{self.name}.pid"

    def pid(self) -> int | None:
        """The qemu process id while the node is powered on."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def qemu_command(self, image: Image) -> list[str]:
        number = node_number(self.name)
        peer = peer_of(self.name)
        port = self.layout

        def dgram(nic: str, local: int, remote: int) -> list[str]:
            return ["-netdev", f"dgram,id={nic},local.type=inet,local.host=127.0.0.1,"
                    f"local.port={local},remote.type=inet,remote.host=127.0.0.1,"
                    f"remote.port={remote}"]  # fmt: skip

        def nic(name: str, slot: int, octet: int) -> list[str]:
            mac = f"52:54:00:{octet:02x}:00:{number:02x}"
            return ["-device", f"virtio-net-pci,netdev={name},addr={slot:#x},mac={mac}"]

        bmc = f"{sys.executable} -m kisscluster.lab.bmc"
        if "," in bmc + str(port.root):
            raise LabError(f"qemu options cannot hold a comma: {bmc} {port.root}")
        append = (
            f"root=/dev/vda rw console=ttyS0 panic=-1 kiss.lab.node={number} "
            f"systemd.hostname={self.name}"
        )
        return [
            "qemu-system-x86_64",
            "-name", self.name,
            "-accel", "tcg",
            "-cpu", "max",
            "-smp", "1",
            "-m", str(MEMORY_MIB),
            "-no-reboot",
            "-kernel", str(image.kernel),
            "-initrd", str(image.initrd),
            "-append", append,
            "-drive", f"file={self.overlay},if=none,id=root,format=qcow2,cache=unsafe",
            "-device", "virtio-blk-pci,drive=root,addr=0x8",
            "-drive", f"file={self.data_disk},if=none,id=data,format=raw,cache=unsafe",
            "-device", "virtio-blk-pci,drive=data,addr=0x9",
            "-netdev", f"user,id={SSH_NIC},restrict=on,"
                       f"hostfwd=tcp:127.0.0.1:{port.ssh_port(self.name)}-:22",
            *nic(SSH_NIC, 3, 0),
            *dgram(STORAGE_NIC, port.storage_port(self.name), port.storage_port(peer)),
            *nic(STORAGE_NIC, 4, 0x99),
            *dgram(PRODUCTION_NIC, port.production_port(self.name), port.production_port(peer)),
            *nic(PRODUCTION_NIC, 5, 0x98),
            # The switch: a user-net that is not routed anywhere (restrict=on); its gateway
            # address answers ICMP echo from the guest, and two addresses lead to host
            # commands: the BMC stand-in and the relay to the witness (kisscluster.lab.bmc).
            "-netdev", f"user,id={SWITCH_NIC},restrict=on,net={PRODUCTION_NET}.0/24,"
                       f"host={SWITCH_ADDR},dhcpstart={PRODUCTION_NET}.200,"
                       f"guestfwd=tcp:{BMC_ADDR}:{BMC_PORT}-cmd:{bmc} serve {port.root},"
                       f"guestfwd=tcp:{WITNESS_ADDR}:{WITNESS_PORT}-cmd:{bmc} relay "
                       f"{port.witness_port}",
            *nic(SWITCH_NIC, 6, 0x97),
            "-serial", f"file:{self.serial_log}",
            "-monitor", f"unix:{self.monitor_socket},server=on,wait=off",
            "-display", "none",
            "-daemonize",
            "-pidfile", str(self.pid_file),
        ]  # fmt: skip

    def start(self, image: Image) -> None:
        """Power the node on (its disks persist across kill/start; `down` removes them)."""
        if self.pid() is not None:
            raise LabError(f"{self.name} is already running (pid {self.pid()})")
        self.layout.run_dir.mkdir(parents=True, exist_ok=True)
        if not self.overlay.exists():
            run(["qemu-img", "create", "-q", "-f", "qcow2", "-F", "qcow2", "-b", image.disk,
                 self.overlay], timeout=60)  # fmt: skip
        if not self.data_disk.exists():
            run(["truncate", "-s", DATA_DISK_SIZE, self.data_disk], timeout=30)
        self.serial_log.unlink(missing_ok=True)
        run(self.qemu_command(image), timeout=60)

    def wait_ready(self, timeout: float = BOOT_TIMEOUT) -> None:
        """Until the guest's boot marker is on the serial console and ssh answers."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.pid() is None:
                raise LabError(f"{self.name}: qemu exited during boot; see {self.serial_log}")
            with contextlib.suppress(FileNotFoundError):
                if READY_MARKER.encode() in self.serial_log.read_bytes():
                    break
            time.sleep(0.5)
        else:
            raise LabError(f"{self.name}: not up within {timeout:.0f}s; see {self.serial_log}")
        while self.ssh(["true"], timeout=30, check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise LabError(f"{self.name}: booted but ssh does not answer")
            time.sleep(1)

    def kill(self) -> None:
        """Hard power-off, as a crash: SIGKILL to qemu."""
        pid = self.pid()
        if pid is None:
            return
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while self.pid() is not None and time.monotonic() < deadline:
            time.sleep(0.1)
        self.pid_file.unlink(missing_ok=True)

    def hang(self, seconds: float) -> None:
        """A hang, as a kernel stall or a paused hypervisor: qemu stopped, then resumed."""
        pid = self.pid()
        if pid is None:
            raise LabError(f"{self.name}: not running")
        os.kill(pid, signal.SIGSTOP)
        try:
            time.sleep(seconds)
        finally:
            os.kill(pid, signal.SIGCONT)

    def monitor(self, command: str) -> str:
        """One human-monitor command (e.g. `set_link switch off`); its output."""
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(2)
            sock.connect(str(self.monitor_socket))
            _read_until_prompt(sock)
            sock.sendall(command.encode() + b"\n")
            answer = _read_until_prompt(sock)
        lines = answer.replace("\r", "").splitlines()
        return "\n".join(line for line in lines[1:] if not line.startswith("(qemu)")).strip()

    def set_link(self, nic: str, up: bool) -> None:
        self.monitor(f"set_link {nic} {'on' if up else 'off'}")

    def ssh_command(self, command: Sequence[str], tty: bool = False) -> list[str]:
        # One connection per node, shared by every command: a handshake under TCG takes seconds.
        shared = ("-o", "ControlMaster=auto", "-o", "ControlPersist=60",
                  "-o", f"ControlPath={self.layout.run_dir / self.name}.ssh")  # fmt: skip
        return [
            "ssh", *SSH_OPTIONS, *shared, *(["-t"] if tty else []),
            "-i", str(self.layout.ssh_key),
            "-p", str(self.layout.ssh_port(self.name)),
            "root@127.0.0.1",
            "--", *command,
        ]  # fmt: skip

    def ssh(
        self,
        command: Sequence[str],
        *,
        timeout: float = 120,
        check: bool = True,
        input_bytes: bytes | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command in the guest. ssh joins the arguments into one line for the guest's
        shell, so callers pass fixed words and validated names only."""
        try:
            done = subprocess.run(
                self.ssh_command(command),
                input=input_bytes.decode("latin-1") if input_bytes is not None else None,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise LabError(f"{self.name}: {' '.join(command)} took over {timeout:.0f}s") from exc
        if check and done.returncode != 0:
            tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-25:])
            raise LabError(f"{self.name}: {' '.join(command)} exited {done.returncode}:\n{tail}")
        return done

    def push_tree(self, files: Sequence[Path], base: Path, target: str) -> None:
        """Copy files (relative to base) into the guest directory target, replacing it."""
        tar = subprocess.run(
            ["tar", "-C", str(base), "-cf", "-", "--", *(str(f) for f in files)],
            capture_output=True,
            check=True,
            timeout=120,
        )
        done = subprocess.run(
            self.ssh_command(["rm", "-rf", target, "&&", "mkdir", "-p", target, "&&",
                              "tar", "-C", target, "-xf", "-"]),
            input=tar.stdout,
            capture_output=True,
            timeout=300,
            check=False,
        )  # fmt: skip
        if done.returncode != 0:
            raise LabError(f"{self.name}: copying into {target} failed: {done.stderr.decode()}")


def _read_until_prompt(sock: socket.socket) -> str:
    data = b""
    deadline = time.monotonic() + 10
    while not data.endswith(b"(qemu) ") and time.monotonic() < deadline:
        try:
            chunk = sock.recv(4096)
        except TimeoutError:
            break
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace")
