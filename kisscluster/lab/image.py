"""The lab's guest image: Debian bookworm by debootstrap, every package kisscluster needs, and a
Python venv with Salt built from wheels on the host (the guests have no internet).

The image is cached in <lab>/image and rebuilt only when the hash of its recipe changes: the
suite, packages, Python requirements, guest files and chroot commands below, and the lab's ssh
public key (baked into the image; the lab is a test bench, not a production install).
"""

import hashlib
import json
import os
import shutil
from dataclasses import asdict, dataclass
from pathlib import Path

from kisscluster.lab.layout import (
    BMC_ADDR,
    NODES,
    SWITCH_ADDR,
    WITNESS_ADDR,
    LabError,
    Layout,
    Progress,
    production_addr,
    require_host_tools,
    run,
    storage_addr,
)

SUITE = "bookworm"
# Everything kiss.node installs (salt/states/kiss/defaults.yaml `packages`) is here already, so
# its pkg states are no-ops in the guest.
PACKAGES = (
    "linux-image-amd64",
    "initramfs-tools",
    "systemd-sysv",
    "udev",
    "kmod",
    "dbus",
    "lvm2",
    "drbd-utils",
    "qemu-system-x86",
    "fping",
    "iproute2",
    "iputils-ping",
    "procps",
    "openssh-server",
    "openssh-client",
    "git",
    "python3",
    "python3-venv",
    "python3-pip",
    "sudo",
    "ca-certificates",
    "netbase",
)
# Salt and what the checkout's kisscluster needs, plus what pip needs to install the checkout
# without an index. Built into wheels on the host.
PYTHON_REQUIREMENTS = (
    "salt==3007.15",
    "PyYAML>=6.0,<7",
    "Jinja2>=3.1,<4",
    "GitPython>=3.1.40,<4",
    "setuptools>=68",
    "wheel",
)
VENV = "/opt/kisscluster"  # the documented install of a node (README, "Running a cluster")
IMAGE_SIZE = "4G"
READY_MARKER = "KISS-LAB-READY"
CLOCK_SCRIPT = "usr/local/sbin/kiss-lab-clock"  # kisscluster/lab/clock.py

_NETWORK_COMMON = "LinkLocalAddressing=no\nConfigureWithoutCarrier=yes\nIgnoreCarrierLoss=yes\n"


def _node_networks(number: int, node: str) -> dict[str, str]:
    """networkd files of one node, chosen by `kiss.lab.node=N` on the kernel command line.

    ens3: qemu user-net for ssh from the host. ens4: storage link. ens5: production link.
    ens6: the uplink to this node's switch (its own qemu user-net, whose gateway address is
    the switch's and answers ping; the BMC stand-in and the witness are reached there too).
    The cluster addresses stay on carrier loss, or DRBD goes StandAlone instead of waiting for
    the peer.
    """
    match = f"KernelCommandLine=kiss.lab.node={number}\n"
    prod = production_addr(node)
    return {
        f"etc/systemd/network/20-storage-{node}.network": (
            f"[Match]\nName=ens4\n{match}[Network]\nAddress={storage_addr(node)}/24\n"
            + _NETWORK_COMMON
        ),
        f"etc/systemd/network/20-production-{node}.network": (
            f"[Match]\nName=ens5\n{match}[Network]\nAddress={prod}/24\n" + _NETWORK_COMMON
        ),
        f"etc/systemd/network/20-switch-{node}.network": (
            f"[Match]\nName=ens6\n{match}[Network]\n{_NETWORK_COMMON}"
            + "".join(
                f"[Route]\nDestination={address}/32\nPreferredSource={prod}\nScope=link\n"
                for address in (SWITCH_ADDR, BMC_ADDR, WITNESS_ADDR)
            )
        ),
    }


def guest_files(public_key: str) -> dict[str, str]:
    """Files written into the rootfs, by path relative to it."""
    hosts = "127.0.0.1 localhost\n" + "".join(f"{storage_addr(n)} {n}\n" for n in NODES)
    files = {
        "etc/hostname": "kiss-lab\n",
        "etc/hosts": hosts,
        "etc/fstab": "/dev/vda / ext4 rw,noatime,errors=remount-ro 0 1\n",
        # A small initramfs: only what mounts root on virtio-blk.
        "etc/initramfs-tools/conf.d/kiss-lab.conf": "MODULES=list\nCOMPRESS=zstd\n",
        "etc/initramfs-tools/modules": "virtio_pci\nvirtio_blk\nvirtio_net\next4\ncrc32c_generic\n",
        "root/.ssh/authorized_keys": public_key,
        # kiss-init and kiss-configure reach the peer as root over the storage link.
        "root/.ssh/config": (
            f"Host {' '.join(storage_addr(n) for n in NODES)} {' '.join(NODES)}\n"
            "  IdentityFile /root/.ssh/id_ed25519\n"
            "  StrictHostKeyChecking no\n  UserKnownHostsFile /dev/null\n  LogLevel ERROR\n"
        ),
        "etc/ssh/sshd_config.d/kiss-lab.conf": "PermitRootLogin prohibit-password\nUseDNS no\n",
        "etc/systemd/network/10-ssh.network": (
            "[Match]\nName=ens3\n[Network]\nAddress=10.0.2.15/24\nLinkLocalAddressing=no\n"
        ),
        "etc/systemd/network/30-br0.netdev": "[NetDev]\nName=br0\nKind=bridge\n",
        "etc/systemd/network/30-br0.network": ("[Match]\nName=br0\n[Network]\n" + _NETWORK_COMMON),
        "etc/systemd/system/kiss-lab-ready.service": (
            "[Unit]\nDescription=kiss-lab boot marker on the serial console\n"
            "After=multi-user.target ssh.service systemd-networkd.service "
            "serial-getty@ttyS0.service\n"
            # The getty's vhangup of ttyS0 fails a write racing with it: write again.
            "[Service]\nType=oneshot\nRestart=on-failure\nRestartSec=1\n"
            f"ExecStart=/bin/echo {READY_MARKER} %H\nStandardOutput=file:/dev/ttyS0\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
        CLOCK_SCRIPT: (Path(__file__).parent / "clock.py").read_text(encoding="utf-8"),
        "etc/systemd/system/kiss-lab-clock.service": (
            "[Unit]\nDescription=kiss-lab: the clock kept on the host's, as NTP would\n"
            f"[Service]\nExecStart=/usr/bin/python3 /{CLOCK_SCRIPT}\nRestart=always\n"
            "[Install]\nWantedBy=multi-user.target\n"
        ),
    }
    for number, node in enumerate(NODES, start=1):
        files.update(_node_networks(number, node))
    return files


SETUP_COMMANDS = (
    ("systemctl", "enable", "systemd-networkd", "kiss-lab-ready.service", "kiss-lab-clock.service"),
    (
        "systemctl",
        "mask",
        "apt-daily.timer",
        "apt-daily-upgrade.timer",
        "e2scrub_all.timer",
        "fstrim.timer",
        "dpkg-db-backup.timer",
        "e2scrub_reap.service",
        "systemd-networkd-wait-online.service",
    ),
    ("python3", "-m", "venv", VENV),
)
# Between the two: pip installs every wheel of /wheels (the host's wheel dir, bind-mounted).
FINISH_COMMANDS = (
    (f"{VENV}/bin/python", "-c", "import salt.version, git, yaml, jinja2"),
    ("update-initramfs", "-u", "-k", "all"),
    ("apt-get", "clean"),
)


@dataclass(frozen=True)
class Recipe:
    suite: str
    packages: tuple[str, ...]
    python_requirements: tuple[str, ...]
    files: dict[str, str]
    setup_commands: tuple[tuple[str, ...], ...]
    finish_commands: tuple[tuple[str, ...], ...]
    size: str

    def digest(self) -> str:
        text = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def recipe(public_key: str) -> Recipe:
    return Recipe(
        SUITE,
        PACKAGES,
        PYTHON_REQUIREMENTS,
        guest_files(public_key),
        SETUP_COMMANDS,
        FINISH_COMMANDS,
        IMAGE_SIZE,
    )


def debian_mirror() -> str:
    """The Debian mirror this machine's apt uses (deb822 or one-line sources)."""
    sources = sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))
    for path in sources:
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.startswith("URIs:") and "security" not in line:
                return line.split()[1]
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text(encoding="utf-8").splitlines():
            parts = line.split()
            if len(parts) >= 3 and parts[0] == "deb" and "security" not in parts[1]:
                return parts[1]
    return "http://deb.debian.org/debian"


def ensure_ssh_key(layout: Layout) -> str:
    if not layout.ssh_key.exists():
        layout.root.mkdir(parents=True, exist_ok=True)
        run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "kiss-lab",
             "-f", layout.ssh_key], timeout=30)  # fmt: skip
    return layout.ssh_key.with_suffix(".pub").read_text(encoding="utf-8")


@dataclass(frozen=True)
class Image:
    kernel: Path
    initrd: Path
    disk: Path
    digest: str


def cached_image(layout: Layout) -> Image | None:
    """The image, if one built from the current recipe is in the cache."""
    digest = recipe(ensure_ssh_key(layout)).digest()
    found = Image(
        layout.image_dir / "vmlinuz",
        layout.image_dir / "initrd.img",
        layout.image_dir / "base.qcow2",
        digest,
    )
    stamp = layout.image_dir / "recipe.sha256"
    if stamp.exists() and stamp.read_text().strip() == digest and found.disk.exists():
        return found
    return None


def ensure_image(layout: Layout, progress: Progress) -> Image:
    found = cached_image(layout)
    if found is not None:
        progress.say(f"image: cached ({found.digest}) in {layout.image_dir}")
        return found
    require_host_tools()
    the_recipe = recipe(ensure_ssh_key(layout))
    with progress.phase("image: Python wheels"):
        _build_wheels(layout, the_recipe)
    rootfs = layout.build_dir / "rootfs"
    with progress.phase(f"image: debootstrap {SUITE}"):
        _debootstrap(rootfs, layout.root / "debs", the_recipe)
    with progress.phase("image: configure"):
        _configure(layout, rootfs, the_recipe)
    with progress.phase("image: disk"):
        _make_disk(layout, rootfs, the_recipe)
    _remove_tree(layout.build_dir)
    image = cached_image(layout)
    if image is None:
        raise LabError(f"the image build left no usable image in {layout.image_dir}")
    size = image.disk.stat().st_size / 2**20
    progress.say(f"image: {image.disk} {size:.0f} MiB (recipe {image.digest})")
    return image


def _build_wheels(layout: Layout, the_recipe: Recipe) -> None:
    stamp = layout.wheels_dir / "requirements.txt"
    wanted = "\n".join(the_recipe.python_requirements) + "\n"
    if stamp.exists() and stamp.read_text() == wanted:
        return
    shutil.rmtree(layout.wheels_dir, ignore_errors=True)
    layout.wheels_dir.mkdir(parents=True)
    # --use-pep517: sdists without a pyproject.toml (contextvars) build in an isolated
    # environment that has `wheel`, which Debian's python3-venv does not install.
    run(["python3", "-m", "pip", "wheel", "-q", "--use-pep517", "-w", layout.wheels_dir,
         *the_recipe.python_requirements], timeout=1800)  # fmt: skip
    stamp.write_text(wanted)


def _remove_tree(top: Path) -> None:
    """Remove a build tree, refusing while anything is mounted under it (an interrupted build
    leaves /dev, /proc and /sys bind mounts there)."""
    prefix = str(top.resolve()) + "/"
    mounted = [
        line.split()[1]
        for line in Path("/proc/self/mounts").read_text().splitlines()
        if line.split()[1].startswith(prefix)
    ]
    if mounted:
        raise LabError(f"still mounted under {top}: {', '.join(mounted)}; unmount them first")
    shutil.rmtree(top, ignore_errors=True)


def _debootstrap(rootfs: Path, cache: Path, the_recipe: Recipe) -> None:
    """The rootfs; downloaded packages stay in `cache` for the next rebuild."""
    _remove_tree(rootfs)
    rootfs.mkdir(parents=True)
    cache.mkdir(parents=True, exist_ok=True)
    run(["debootstrap", "--variant=minbase", f"--cache-dir={cache}",
         f"--include={','.join(the_recipe.packages)}", the_recipe.suite, rootfs,
         debian_mirror()], timeout=1800)  # fmt: skip


def _configure(layout: Layout, rootfs: Path, the_recipe: Recipe) -> None:
    for relative, text in the_recipe.files.items():
        path = rootfs / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    ssh_dir = rootfs / "root" / ".ssh"
    shutil.copyfile(layout.ssh_key, ssh_dir / "id_ed25519")
    ssh_dir.chmod(0o700)
    for path in ssh_dir.iterdir():
        path.chmod(0o600)
    mounts = [
        (["--bind", "/dev"], rootfs / "dev"),
        (["-t", "proc", "proc"], rootfs / "proc"),
        (["-t", "sysfs", "sysfs"], rootfs / "sys"),
        (["--bind", str(layout.wheels_dir)], rootfs / "wheels"),
    ]
    (rootfs / "wheels").mkdir(exist_ok=True)
    mounted: list[Path] = []
    environment = {"DEBIAN_FRONTEND": "noninteractive", "LC_ALL": "C"}
    try:
        for options, target in mounts:
            run(["mount", *options, target], timeout=30)
            mounted.append(target)
        wheels = sorted(f"/wheels/{w.name}" for w in layout.wheels_dir.glob("*.whl"))
        pip_install = (f"{VENV}/bin/pip", "install", "-q", "--no-index", "--no-deps", *wheels)
        commands = [*the_recipe.setup_commands, pip_install, *the_recipe.finish_commands]
        for command in commands:
            run(["chroot", rootfs, "env", *(f"{k}={v}" for k, v in environment.items()),
                 *command], timeout=900)  # fmt: skip
    finally:
        for target in reversed(mounted):
            run(["umount", target], timeout=60)
    (rootfs / "wheels").rmdir()


def _make_disk(layout: Layout, rootfs: Path, the_recipe: Recipe) -> None:
    """ext4 straight from the directory (no loop device needed), then a compact qcow2."""
    layout.image_dir.mkdir(parents=True, exist_ok=True)
    for stale in layout.image_dir.iterdir():
        stale.unlink()
    raw = layout.build_dir / "root.raw"
    raw.unlink(missing_ok=True)
    run(["truncate", "-s", the_recipe.size, raw], timeout=30)
    run(["mkfs.ext4", "-q", "-F", "-L", "kissroot", "-d", rootfs, raw], timeout=900)
    kernels = sorted((rootfs / "boot").glob("vmlinuz-*"))
    initrds = sorted((rootfs / "boot").glob("initrd.img-*"))
    if not kernels or not initrds:
        raise LabError(f"no kernel or initrd in {rootfs}/boot after the build")
    shutil.copyfile(kernels[-1], layout.image_dir / "vmlinuz")
    shutil.copyfile(initrds[-1], layout.image_dir / "initrd.img")
    run(["qemu-img", "convert", "-O", "qcow2", raw, layout.image_dir / "base.qcow2"], timeout=900)
    raw.unlink()
    os.sync()
    (layout.image_dir / "recipe.sha256").write_text(the_recipe.digest() + "\n")
