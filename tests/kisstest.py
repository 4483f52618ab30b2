"""Helpers shared by every test tier: the example site, masterless Salt configs, salt-call."""

import ctypes
import json
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from kisscluster import lvm, paths

DRBDADM_84 = "/usr/lib/drbd/drbdadm-84"  # DRBD 8.4's front end, as the lab's kernel needs
CLONE_NEWUTS = 0x04000000

CHECKOUT = Path(__file__).resolve().parent.parent


def copy_example_site(target: Path) -> Path:
    """The example site (pillar/ and vm-config/ of the checkout) as a fresh directory."""
    target.mkdir(parents=True, exist_ok=True)
    for part in ("pillar", "vm-config"):
        shutil.copytree(CHECKOUT / part, target / part)
    return target


def write_minion_config(
    config_dir: Path, site: Path, minion_id: str = "node1", **extra: object
) -> Path:
    """A masterless minion config dir for `salt-call -c`; everything Salt writes stays inside."""
    salt = paths.salt_root()
    config_dir.mkdir(parents=True, exist_ok=True)
    root = config_dir / "root"
    config = {
        "file_client": "local",
        "id": minion_id,
        "root_dir": str(root),
        "pki_dir": str(root / "pki"),
        "cachedir": str(root / "cache"),
        "sock_dir": str(root / "sock"),
        "log_file": str(root / "minion.log"),
        "file_roots": {"base": [str(salt / "states")]},
        "pillar_roots": {"base": [str(site / "pillar")]},
        "module_dirs": [str(salt / "_modules")],
        "states_dirs": [str(salt / "_states")],
        "kiss_site": str(site),
        # Salt's lvm grain would scan the tests' loop-device VGs with the host's LVM config and
        # leave their metadata archives in the host's /etc/lvm.
        "disable_grains": ["lvm"],
        **extra,
    }
    (config_dir / "minion").write_text(yaml.safe_dump(config), encoding="utf-8")
    return config_dir


def run_salt_call(config_dir: Path, *args: str) -> subprocess.CompletedProcess:
    """Run real `salt-call --local` with this config dir, JSON output, exit code passed through."""
    salt_call_bin = Path(sys.executable).with_name("salt-call")
    command = [
        str(salt_call_bin) if salt_call_bin.exists() else "salt-call",
        "--local",
        "-c",
        str(config_dir),
        "--out",
        "json",
        "--log-level",
        "quiet",
        "--retcode-passthrough",
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=300, check=False)


def salt_call(config_dir: Path, *args: str, check: bool = True) -> dict:
    """`run_salt_call` and return its JSON `local` value; with `check`, a non-zero exit fails."""
    completed = run_salt_call(config_dir, *args)
    if check and completed.returncode != 0:
        output = f"{completed.stdout}\n{completed.stderr}"
        raise AssertionError(f"{completed.args} exited {completed.returncode}\n{output}")
    try:
        return json.loads(completed.stdout)["local"]
    except (json.JSONDecodeError, KeyError) as exc:
        output = f"{completed.stdout}\n{completed.stderr}"
        raise AssertionError(f"no JSON from salt-call:\n{output}") from exc


@dataclass
class LoopVg:
    """Volume group `name` on a loop device; `env` makes LVM commands see only it."""

    device: str
    env: dict[str, str]
    name: str = "vg0"

    def lvs(self) -> dict[str, int]:
        out = subprocess.run(
            lvm.lvs_command("lvs", self.name),
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
        return lvm.parse_lvs(out)


def make_loop_vg(directory: Path, size_mib: int = 512, name: str = "vg0") -> LoopVg:
    if shutil.which("lvcreate") is None:
        pytest.fail("lvm2 is not installed (apt-get install lvm2)")
    directory.mkdir(parents=True, exist_ok=True)
    image = directory / "pv.img"
    with image.open("wb") as handle:
        handle.truncate(size_mib << 20)
    device = subprocess.run(
        ["losetup", "--find", "--show", str(image)],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    ).stdout.strip()
    conf_dir = directory / "lvm"
    conf_dir.mkdir()
    (conf_dir / "lvm.conf").write_text(
        "devices {\n"
        f'    filter = [ "a|^{device}$|", "r|.*|" ]\n'
        "    use_devicesfile = 0\n"
        '    hints = "none"\n'
        "    obtain_device_list_from_udev = 0\n"
        "}\n"
        "global {\n    activation = 0\n}\n"
        "backup {\n    backup = 0\n    archive = 0\n}\n",
        encoding="utf-8",
    )
    env = {**os.environ, "LVM_SYSTEM_DIR": str(conf_dir), "LVM_SUPPRESS_FD_WARNINGS": "1"}
    for command in (["pvcreate", device], ["vgcreate", name, device]):
        subprocess.run(command, env=env, capture_output=True, check=True, timeout=60)
    return LoopVg(device, env, name)


def remove_loop_vg(vg: LoopVg) -> None:
    subprocess.run(["losetup", "--detach", vg.device], capture_output=True, timeout=30)


def unshare_uts(hostname: str):
    """A preexec_fn: the child gets its own UTS namespace with `hostname` (drbdadm matches its
    `on <host>` sections by host name)."""

    def enter() -> None:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.unshare(CLONE_NEWUTS) != 0:
            raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWUTS)")
        socket.sethostname(hostname)

    return enter
