"""Two kisscluster nodes on one machine, for kiss-init, kiss-configure and kiss-nuke-vm tests.

Each node has its own directory: minion config (`salt/`), salt-run config (`salt-run/`), bare
repository, working copy and `root` (the map.jinja path prefix, set per node through the minion
option `kiss_lookup`). node1's storage address is 127.0.0.1, node2's 127.0.0.2; a real sshd
listens on both, so the peer is reached over ssh exactly as on a cluster: git pushes and fetches
over ssh, and the pillar's remote command is `ssh -F <config> {stor_addr} env ...`. The `env`
part points the peer's kiss-configure at that node's directories (on a cluster the defaults
/etc/salt and /srv/kiss-configure apply).
"""

import os
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import yaml
from kisstest import (
    CHECKOUT,
    CLONE_NEWUTS,
    DRBDADM_84,
    copy_example_site,
    make_loop_vg,
    write_minion_config,
)

SSHD = "/usr/sbin/sshd"
BIN_DIR = Path(sys.executable).parent
MEMBERS = (("node1", "127.0.0.1"), ("node2", "127.0.0.2"))
TIMEOUT = 300
# The small kiss.vms state tree the configure and nuke tests apply instead of the product's.
TEST_STATES = Path(__file__).parent / "configure" / "states"


@dataclass
class SshServer:
    directory: Path
    client_config: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_sshd(directory: Path) -> SshServer:
    """A real sshd on 127.0.0.1 and 127.0.0.2 that accepts one generated key for root."""
    directory.mkdir(parents=True, exist_ok=True)
    for key in ("host_key", "client_key"):
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / key)],
            check=True,
            timeout=30,
        )
    shutil.copy(directory / "client_key.pub", directory / "authorized_keys")
    port = _free_port()
    server_config = directory / "sshd_config"
    server_config.write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"ListenAddress 127.0.0.2:{port}\n"
        f"HostKey {directory / 'host_key'}\n"
        f"PidFile {directory / 'sshd.pid'}\n"
        f"AuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\n"
        "PasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\n"
        "UsePAM no\n"
        "StrictModes no\n",
        encoding="utf-8",
    )
    client_config = directory / "ssh_config"
    client_config.write_text(
        "Host 127.0.0.1 127.0.0.2\n"
        f"  Port {port}\n"
        "  User root\n"
        f"  IdentityFile {directory / 'client_key'}\n"
        "  IdentitiesOnly yes\n"
        "  UserKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking no\n"
        "  BatchMode yes\n"
        "  ConnectTimeout 5\n"
        "  LogLevel ERROR\n",
        encoding="utf-8",
    )
    Path("/run/sshd").mkdir(exist_ok=True)
    process = subprocess.Popen(
        [SSHD, "-D", "-e", "-f", str(server_config)],
        stdout=subprocess.DEVNULL,
        stderr=(directory / "sshd.log").open("w"),
    )
    server = SshServer(directory, client_config, process)
    deadline = time.monotonic() + 20
    while True:
        probe = subprocess.run(
            ["ssh", "-F", str(client_config), "127.0.0.2", "true"],
            capture_output=True,
            timeout=30,
            check=False,
        )
        if probe.returncode == 0:
            return server
        if time.monotonic() > deadline or process.poll() is not None:
            server.stop()
            log = (directory / "sshd.log").read_text()
            raise RuntimeError(f"sshd did not come up: {probe.stderr!r} {log}")
        time.sleep(0.2)


@dataclass
class NodeDirs:
    name: str
    stor_addr: str
    directory: Path

    @property
    def config_dir(self) -> Path:
        return self.directory / "salt"

    @property
    def run_config_dir(self) -> Path:
        return self.directory / "salt-run"

    @property
    def site(self) -> Path:
        return self.directory / "kiss-configure"

    @property
    def bare(self) -> Path:
        return self.directory / "kiss-configure.git"

    @property
    def root(self) -> Path:
        return self.directory / "root"


def write_run_config(node: NodeDirs) -> None:
    """salt/master.example with this checkout's paths and everything salt-run writes inside."""
    config = yaml.safe_load((CHECKOUT / "salt" / "master.example").read_text(encoding="utf-8"))
    state = node.run_config_dir / "state"
    config.update(
        root_dir=str(state),
        pki_dir=str(state / "pki"),
        cachedir=str(state / "cache"),
        sock_dir=str(state / "sock"),
        log_file=str(state / "salt-run.log"),
        file_roots={"base": [str(CHECKOUT / "orchestrate")]},
        module_dirs=[str(CHECKOUT / "salt" / "_modules")],
        kiss_minion_config_dir=str(node.config_dir),
    )
    node.run_config_dir.mkdir(parents=True, exist_ok=True)
    (node.run_config_dir / "master").write_text(yaml.safe_dump(config), encoding="utf-8")


@dataclass
class Pair:
    """Two nodes, the site skeleton they are initialised from, and the ssh server between them."""

    base: Path
    sshd: SshServer
    skeleton: Path
    node1: NodeDirs
    node2: NodeDirs

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PATH": f"{BIN_DIR}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "PYTHONPATH": str(CHECKOUT),
            "GIT_SSH_COMMAND": f"ssh -F {self.sshd.client_config}",
            "GIT_AUTHOR_NAME": "kiss test",
            "GIT_AUTHOR_EMAIL": "test@example.org",
            "GIT_COMMITTER_NAME": "kiss test",
            "GIT_COMMITTER_EMAIL": "test@example.org",
        }

    def run(self, script: str, node: NodeDirs, *args: str) -> subprocess.CompletedProcess:
        """Run scripts/<script> as the operator would on `node`."""
        command = [sys.executable, str(CHECKOUT / "scripts" / script), "-c", str(node.config_dir)]
        if script in ("kiss-configure", "kiss-nuke-vm") and args[:1] != ("node",):
            command += ["--run-config-dir", str(node.run_config_dir)]
        return subprocess.run(
            [*command, *args],
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
            env=self.env(),
            check=False,
        )

    def git(self, repo: Path, *args: str) -> str:
        completed = subprocess.run(
            ["git", "-C", str(repo), *args],
            capture_output=True,
            text=True,
            timeout=60,
            env=self.env(),
            check=True,
        )
        return completed.stdout.strip()

    def head(self, repo: Path) -> str:
        return self.git(repo, "rev-parse", "main")


def make_pair(base: Path, sshd: SshServer, states: Path) -> Pair:
    """Both nodes' configs and the skeleton site; nothing is initialised yet."""
    nodes = [NodeDirs(name, addr, base / name) for name, addr in MEMBERS]
    skeleton = copy_example_site(base / "skeleton")
    cluster_file = skeleton / "pillar" / "cluster.yml"
    definition = yaml.safe_load(cluster_file.read_text(encoding="utf-8"))
    for member, node in zip(definition["cluster"]["members"], nodes, strict=True):
        member["stor_addr"] = node.stor_addr
    definition["cluster"]["lookup"] = {
        "remote_command": [
            "ssh",
            "-F",
            str(sshd.client_config),
            "{stor_addr}",
            "env",
            f"PATH={CHECKOUT / 'scripts'}:{BIN_DIR}:/usr/bin:/bin",
            f"PYTHONPATH={CHECKOUT}",
            f"SALT_CONFIG_DIR={base}/{{name}}/salt",
        ]
    }
    cluster_file.write_text(yaml.safe_dump(definition), encoding="utf-8")
    for node in nodes:
        node.directory.mkdir(parents=True)
        write_minion_config(
            node.config_dir,
            node.site,
            node.name,
            file_roots={"base": [str(states)]},
            kiss_lookup={"root": str(node.root)},
        )
        write_run_config(node)
    return Pair(base, sshd, skeleton, nodes[0], nodes[1])


# --- The real kiss.vms on both nodes -------------------------------------------------------------
#
# What this host cannot do, and the seam used instead (the same as tests/states uses):
# * device-mapper: each node's LVM runs for real on its own loop device with `activation = 0`
#   (lvs, vgs, lvcreate and lvextend are wrappers that only set LVM_SYSTEM_DIR), so LVs exist
#   as metadata only;
# * the DRBD module: drbdadm is a recorder that runs the real drbdadm-84 --dry-run in a UTS
#   namespace named like the node, against the node's own drbd.conf under its root;
# * systemd as PID 1: systemctl is a recorder.


_SCRIPT = '''#!{python}
"""{doc}"""
import ctypes, json, os, socket, sys
with open({log!r}, "a", encoding="utf-8") as log:
    log.write(json.dumps([{name!r}, *sys.argv[1:]]) + "\\n")
{body}
'''

_LVM_BODY = """os.environ.update(LVM_SYSTEM_DIR={conf!r}, LVM_SUPPRESS_FD_WARNINGS="1")
os.execv({real!r}, [{real!r}, *sys.argv[1:]])
"""

_DRBDADM_BODY = """libc = ctypes.CDLL(None, use_errno=True)
if libc.unshare({clone}) != 0:
    sys.exit("unshare(CLONE_NEWUTS) failed: errno %d" % ctypes.get_errno())
socket.sethostname({node!r})
os.execv({real!r}, [{real!r}, "--dry-run", "-c", {config!r}, *sys.argv[1:]])
"""


def _script(path: Path, doc: str, log: Path, body: str) -> str:
    text = _SCRIPT.format(python=sys.executable, doc=doc, log=str(log), name=path.name, body=body)
    path.write_text(text, encoding="utf-8")
    path.chmod(0o755)
    return str(path)


def use_real_kiss_states(pair: Pair) -> list[str]:
    """Point both nodes at the product's kiss states; returns the loop devices to detach."""
    devices = []
    for node in (pair.node1, pair.node2):
        bin_dir = node.directory / "bin"
        bin_dir.mkdir()
        log = node.directory / "commands.log"
        drbd_conf = node.root / "etc" / "drbd.conf"
        drbd_conf.parent.mkdir(parents=True)
        drbd_conf.write_text(
            f'include "{node.root}/etc/drbd.d/*.conf";\ninclude "{node.root}/etc/drbd.d/*.res";\n',
            encoding="utf-8",
        )
        vg = make_loop_vg(node.directory / "vg", size_mib=256)
        device, lvm_conf = vg.device, Path(vg.env["LVM_SYSTEM_DIR"])
        devices.append(device)
        lvm_doc = "Real {} with this node's lvm.conf (loop device, no activation)."
        lookup = {
            "root": str(node.root),
            **{
                program: _script(
                    bin_dir / program,
                    lvm_doc.format(program),
                    log,
                    _LVM_BODY.format(conf=str(lvm_conf), real=shutil.which(program)),
                )
                for program in ("lvs", "vgs", "lvcreate", "lvextend")
            },
            "drbdadm": _script(
                bin_dir / "drbdadm",
                f"Real drbdadm-84 --dry-run as host {node.name}.",
                log,
                _DRBDADM_BODY.format(
                    clone=CLONE_NEWUTS, node=node.name, real=DRBDADM_84, config=str(drbd_conf)
                ),
            ),
            "systemctl": _script(bin_dir / "systemctl", "Records and succeeds.", log, ""),
            "python": sys.executable,
        }
        minion = node.config_dir / "minion"
        config = yaml.safe_load(minion.read_text(encoding="utf-8"))
        config["file_roots"] = {"base": [str(CHECKOUT / "salt" / "states")]}
        config["kiss_lookup"] = lookup
        minion.write_text(yaml.safe_dump(config), encoding="utf-8")
    return devices


def detach(devices: list[str]) -> None:
    for device in devices:
        subprocess.run(["losetup", "--detach", device], capture_output=True, timeout=30)
