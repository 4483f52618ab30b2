"""The lab pair: boot both nodes, install this checkout's kisscluster into them, set up the
cluster with the project's own commands on the example site, tear it all down.

The lab's pair is the recommended one: the example site plus power fencing through the lab's
stand-in BMC and a witness on the host (kisscluster.lab.bmc), both reached over the switch."""

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import yaml

from kisscluster import paths
from kisscluster.atomic import write_atomic
from kisscluster.configure.gitsite import CONFIG_PATHS
from kisscluster.heartbeat import status as heartbeat_status
from kisscluster.lab.image import VENV, ensure_image
from kisscluster.lab.layout import (
    BMC_ADDR,
    BMC_PORT,
    NODES,
    VOLUME_GROUP,
    WITNESS_ADDR,
    LabError,
    Layout,
    Progress,
    require_host_tools,
    run,
)
from kisscluster.lab.machine import Machine

CHECKOUT = Path(__file__).resolve().parent.parent.parent
SOURCE_IN_GUEST = "/opt/kisscluster-src"
SITE_IN_GUEST = paths.SITE_DIR
# What the operator and kiss.node need on root's PATH, linked from the virtual environment: Salt's
# two commands and every script of the package (README, "Install").
COMMANDS = ("salt-call", "salt-run", *sorted(p.name for p in (CHECKOUT / "scripts").iterdir()))
# What differs from a real node: the nested VMs run under TCG because the guests have no KVM,
# and having no OS they ignore the ACPI power button, so a VM stop (failback, no-vms) waits out
# the stop timeout before qemu is killed.
LOOKUP = {
    "qemu_accel": "tcg",
    "qemu_cpu": "max",
    "vm_stop_timeout": 20,
}
SALT_TIMEOUT = 1200.0
START_HEARTBEAT = ["systemctl", "start", "kissclusterd.service"]
NODE_STATE = [
    "salt-call", "--local", "--retcode-passthrough", "--state-output=terse",
    "state.apply", "kiss.node",
]  # fmt: skip
EXAMPLE_MINION_ID = "id: node1\n"
SKELETON_IN_GUEST = "/root/lab-site"
WITNESS_PID, WITNESS_SECRET, WITNESS_LOG = "witness.pid", "witness.secret", "witness.log"
# Written by `kiss-lab up` once the pair is rolled out, removed by whatever changes the pair:
# the lab tests take such a pair over instead of booting their own (take_fresh).
FRESH = "fresh.json"


def machines(layout: Layout) -> list[Machine]:
    return [Machine(layout, name) for name in NODES]


def minion_config(node: str) -> str:
    """salt/minion.example with this node's id, as the README's install step writes it."""
    example = (CHECKOUT / "salt" / "minion.example").read_text(encoding="utf-8")
    if EXAMPLE_MINION_ID not in example:
        raise LabError(f"salt/minion.example has no line {EXAMPLE_MINION_ID.strip()!r}")
    return example.replace(EXAMPLE_MINION_ID, f"id: {node}\n")


def lab_settings() -> str:
    """The lab's own minion settings (minion.d/), beside the example config."""
    return json.dumps({"kiss_lookup": LOOKUP}, indent=2) + "\n"


def checkout_files() -> list[Path]:
    """The checkout as git sees it: tracked files and new files not ignored."""
    listing = run(["git", "-C", CHECKOUT, "ls-files", "-z", "--cached", "--others",
                   "--exclude-standard"], timeout=60)  # fmt: skip
    names = sorted(set(listing.split("\0")) - {""})
    return [Path(name) for name in names if (CHECKOUT / name).exists()]


def write_guest_file(machine: Machine, path: str, text: str) -> None:
    machine.ssh(["install", "-D", "-m", "0644", "/dev/stdin", path], input_bytes=text.encode())


def install_checkout(machine: Machine) -> None:
    """The README's node install, offline: the checkout pip-installed into the virtual
    environment, its commands linked onto root's PATH, the two Salt configs from the examples."""
    machine.push_tree(checkout_files(), CHECKOUT, SOURCE_IN_GUEST)
    machine.ssh([f"{VENV}/bin/pip", "install", "-q", "--no-deps", "--no-index",
                 "--no-build-isolation", SOURCE_IN_GUEST], timeout=600)  # fmt: skip
    for command in COMMANDS:
        machine.ssh(["ln", "-sfn", f"{VENV}/bin/{command}", f"/usr/local/bin/{command}"])
    write_guest_file(machine, "/etc/salt/minion", minion_config(machine.name))
    write_guest_file(machine, "/etc/salt/minion.d/kiss-lab.conf", lab_settings())
    master = (CHECKOUT / "salt" / "master.example").read_text(encoding="utf-8")
    write_guest_file(machine, "/etc/kisscluster/salt-run/master", master)
    machine.ssh(["sync"])  # a test may crash the node soon: the install must be on its disk


def lab_cluster_yml() -> str:
    """The example site's cluster.yml plus the lab's power fencing and witness."""
    data = yaml.safe_load((CHECKOUT / "pillar" / "cluster.yml").read_text(encoding="utf-8"))
    cluster = data["cluster"]
    for member in cluster["members"]:
        member["fence"] = (
            f"{VENV}/bin/python -m kisscluster.lab.bmc agent "
            f"ip={BMC_ADDR} ipport={BMC_PORT} plug={member['name']}"
        )
    cluster["heartbeat"] = {**cluster.get("heartbeat", {}), "witness_addr": WITNESS_ADDR}
    return "# The example site with the lab's fencing (kisscluster/lab/cluster.py).\n" + (
        yaml.safe_dump(data, sort_keys=False)
    )


def push_lab_site(machine: Machine) -> None:
    files = [f for f in checkout_files() if f.parts[0] in CONFIG_PATHS]
    machine.push_tree(files, CHECKOUT, SKELETON_IN_GUEST)
    write_guest_file(machine, f"{SKELETON_IN_GUEST}/pillar/cluster.yml", lab_cluster_yml())


def write_fence_secret(layout: Layout, machine: Machine) -> None:
    """The BMC's password in the node's root-only fence secret file, never in the site."""
    password = (layout.run_dir / "bmc.secret").read_text(encoding="utf-8").strip()
    machine.ssh(["install", "-D", "-m", "0600", "/dev/stdin", paths.FENCE_SECRET_FILE],
                input_bytes=f"password={password}\n".encode())  # fmt: skip


def start_witness(layout: Layout, machine: Machine) -> None:
    """`kissclusterd witness` on the host's loopback with the cluster's secret from `machine`."""
    secret = layout.run_dir / WITNESS_SECRET
    text = machine.ssh(["cat", paths.HEARTBEAT_SECRET_FILE]).stdout
    secret.touch(mode=0o600)
    secret.write_text(text, encoding="utf-8")
    with open(layout.run_dir / WITNESS_LOG, "ab") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "kisscluster.heartbeat.cli", "witness", "--listen",
             "127.0.0.1", "--port", str(layout.witness_port), "--secret-file", str(secret)],
            stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
        )  # fmt: skip
    (layout.run_dir / WITNESS_PID).write_text(f"{process.pid}\n")


def stop_witness(layout: Layout) -> None:
    try:
        pid = int((layout.run_dir / WITNESS_PID).read_text())
        os.kill(pid, signal.SIGTERM)
    except (OSError, ValueError):
        pass


def ensure_volume_group(machine: Machine) -> None:
    """The lab's stand-in for the operator's disk setup: vg0 on the second disk."""
    if machine.ssh(["vgs", VOLUME_GROUP], check=False).returncode != 0:
        machine.ssh(["pvcreate", "-q", "/dev/vdb"])
        machine.ssh(["vgcreate", "-q", VOLUME_GROUP, "/dev/vdb"])


def boot(layout: Layout, progress: Progress, names: tuple[str, ...] = NODES) -> None:
    image = ensure_image(layout, progress)
    started = [Machine(layout, name) for name in names]
    with progress.phase(f"boot {' '.join(names)}"):
        for machine in started:
            machine.start(image)
        with ThreadPoolExecutor(len(started)) as pool:
            for machine, _ in zip(started, pool.map(Machine.wait_ready, started), strict=True):
                progress.say(f"{machine.name}: ready")


def prepare(layout: Layout, progress: Progress) -> None:
    """Both nodes booted from a fresh copy of the image, the checkout installed, vg0 made."""
    require_host_tools()
    node1, node2 = machines(layout)
    if node1.pid() or node2.pid():
        raise LabError("the lab is already up: `kiss-lab down` first, or `kiss-lab status`")
    shutil.rmtree(layout.run_dir, ignore_errors=True)
    layout.run_dir.mkdir(parents=True)
    bmc_password = layout.run_dir / "bmc.secret"
    bmc_password.touch(mode=0o600)
    bmc_password.write_text(secrets.token_hex(16) + "\n", encoding="utf-8")
    boot(layout, progress)
    with progress.phase("install kisscluster from the checkout"), ThreadPoolExecutor(2) as pool:
        list(pool.map(install_checkout, (node1, node2)))
        list(pool.map(ensure_volume_group, (node1, node2)))


def roll_out(layout: Layout, progress: Progress) -> dict[str, str]:
    """The cluster set up as an operator does: kiss-init, kiss.node on both (the secret copied
    in between), then kiss-configure on the primary. Returns each step's output."""
    node1, node2 = machines(layout)
    push_lab_site(node1)
    steps = [
        ("kiss-init on node1 (repositories)", node1, ["kiss-init", "--from", SKELETON_IN_GUEST]),
        ("kiss.node on node1", node1, NODE_STATE),
        ("kiss-init on node1 (heartbeat secret)", node1, ["kiss-init"]),
        ("kiss.node on node2", node2, NODE_STATE),
        ("kiss-configure on node1", node1, ["kiss-configure"]),
    ]
    # kiss.node enables kissclusterd for the next boot; start it now, as the README says.
    for machine in (node1, node2):
        steps.append((f"start kissclusterd on {machine.name}", machine, START_HEARTBEAT))
    outputs = {}
    for name, machine, command in steps:
        if name.startswith("start kissclusterd on node1"):
            with progress.phase("fence secrets and the witness"):
                for node in (node1, node2):
                    write_fence_secret(layout, node)
                start_witness(layout, node1)
        with progress.phase(name):
            outputs[name] = machine.ssh(command, timeout=SALT_TIMEOUT).stdout
    return outputs


def up(layout: Layout, progress: Progress) -> None:
    prepare(layout, progress)
    outputs = roll_out(layout, progress)
    fresh = {"checkout": checkout_digest(), "outputs": outputs, "timings": progress.timings}
    write_atomic(layout.run_dir / FRESH, json.dumps(fresh, indent=2) + "\n")
    progress.say("lab up: `kiss-lab status`, `kiss-lab ssh node1`")


def checkout_digest() -> str:
    """What a pair installed from this checkout was installed from (checkout_files' contents)."""
    digest = hashlib.sha256()
    for name in checkout_files():
        digest.update(f"{name}\0".encode() + (CHECKOUT / name).read_bytes() + b"\0")
    return digest.hexdigest()


def take_fresh(layout: Layout) -> dict[str, Any] | None:
    """What `kiss-lab up` recorded of the running pair (each step's output, the timings) if
    nothing changed the pair since (no kill, hang or start, no test took it) and it runs this
    checkout as it is now; taken once: the record is removed. None otherwise."""
    path = layout.run_dir / FRESH
    try:
        fresh = json.loads(path.read_text(encoding="utf-8"))
        path.unlink()
    except (OSError, ValueError):
        return None
    if not all(machine.pid() for machine in machines(layout)):
        return None
    return fresh if fresh.get("checkout") == checkout_digest() else None


def forget_fresh(layout: Layout) -> None:
    """The pair is about to change: no test may take it for a freshly rolled-out one."""
    (layout.run_dir / FRESH).unlink(missing_ok=True)


def down(layout: Layout, progress: Progress) -> None:
    for machine in machines(layout):
        machine.kill()
    stop_witness(layout)
    shutil.rmtree(layout.run_dir, ignore_errors=True)
    progress.say(f"nodes removed; the image cache stays in {layout.image_dir}")


def snapshot(machine: Machine) -> dict[str, Any] | None:
    """The guest's probe (kisscluster.lab.probe), or None while the node is off."""
    if machine.pid() is None:
        return None
    done = machine.ssh([f"{VENV}/bin/python", "-m", "kisscluster.lab.probe"], timeout=60)
    result: dict[str, Any] = json.loads(done.stdout)
    return result


def render_status(name: str, state: dict[str, Any] | None) -> str:
    if state is None:
        return f"{name}: powered off"
    active = [t for t, s in state["targets"].items() if s == "active"] or ["none"]
    lines = [f"{name}: up, target {' '.join(active)}"]
    daemon = state.get("kissclusterd")
    if daemon:
        lines += [f"  kissclusterd {line}" for line in heartbeat_status.render(daemon).splitlines()]
    for unit, status in sorted(state["units"].items()):
        lines.append(f"  {unit:32} {status}")
    for volume, drbd in sorted(state["drbd"].items()):
        lines.append(
            f"  drbd {volume:12} minor {drbd['minor']:<3} {drbd.get('cs', '?'):14} "
            f"{drbd.get('role', '?')}/{drbd.get('peer_role', '?')} "
            f"{drbd.get('disk', '?')}/{drbd.get('peer_disk', '?')}"
            + (" I/O frozen" if drbd.get("io") == "s" else "")
        )
    return "\n".join(lines)


def status(layout: Layout, as_json: bool = False) -> str:
    """Both nodes as a table, or (as_json) as one JSON object of their probes by node name,
    null for a node that is off and {"error": ...} for one that does not answer."""
    lines, states = [], {}
    for machine in machines(layout):
        try:
            state = snapshot(machine)
            lines.append(render_status(machine.name, state))
        except (LabError, json.JSONDecodeError, subprocess.SubprocessError) as exc:
            state = {"error": str(exc)}
            lines.append(f"{machine.name}: powered on, not answering ({exc})")
        states[machine.name] = state
    return json.dumps(states, sort_keys=True) if as_json else "\n".join(lines)
