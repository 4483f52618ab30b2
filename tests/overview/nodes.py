"""Realistic facts of the example cluster's nodes, read by kisscluster.overview.facts from the
files a rolled-out node has: kiss.vms's wants and drop-in, resource files rendered by
kisscluster.drbd, /proc/drbd as DRBD 8.4 prints it, kissclusterd's published status. Only
systemd's answer is given, as the unit states a node would report.

The example: web (minor 8) and mail (4) live on node1, db (0, 1, 2) on node2."""

import time
from pathlib import Path
from typing import Any

from kisstest import copy_example_site

from kisscluster import drbd, inventory, pillar
from kisscluster.heartbeat import copies, status
from kisscluster.overview import facts

HOMES = {"web": "node1", "mail": "node1", "db": "node2"}
MINORS = {"db": [0, 1, 2], "mail": [4], "web": [8]}
OLD_MINORS = [12]  # a disabled VM, "old", whose resource kiss.vms keeps


def proc_line(
    minor: int,
    cs: str = "Connected",
    roles: str = "Secondary/Primary",
    disks: str = "UpToDate/UpToDate",
    io: str = "r-----",
    synced: float | None = None,
) -> str:
    protocol = "" if cs == "StandAlone" else "C "
    text = (
        f"{minor:2}: cs:{cs} ro:{roles} ds:{disks} {protocol}{io}\n"
        "    ns:0 nr:2048 dw:2048 dr:0 al:0 bm:0 lo:0 pe:0 ua:0 ap:0 ep:1 wo:f oos:0\n"
    )
    if synced is not None:
        text += (
            f"\t[=====>..............] sync'ed: {synced}% (61440/102400)K\n"
            "\tfinish: 0:01:05 speed: 944 (1,024) K/sec\n"
        )
    return text


def healthy_proc(node: str, running: dict[str, str] | None = None) -> dict[int, str]:
    """Minor -> /proc/drbd line of `node` with each VM Primary where `running` says (its home)."""
    running = running or HOMES
    lines = {}
    for vm, minors in MINORS.items():
        roles = "Primary/Secondary" if running[vm] == node else "Secondary/Primary"
        lines.update({minor: proc_line(minor, roles=roles) for minor in minors})
    lines[OLD_MINORS[0]] = proc_line(OLD_MINORS[0], roles="Secondary/Secondary")
    return lines


def example_pillar(base: Path) -> dict[str, Any]:
    """The `kiss` pillar of the example site, its minors allocated (in `base`/site)."""
    site = base / "site"
    if not site.exists():
        copy_example_site(site)
        inventory.run(site)
    return pillar.build(site)


def daemon_status(**changes: Any) -> dict[str, Any]:
    """What a settled kissclusterd publishes, with `changes`."""
    now = time.time()
    return {
        "node": "10.99.0.1",
        "pid": 812,
        "started": now - 3600,
        "updated": now - 0.3,
        "interval": 1.0,
        "dead_time": 3.0,
        "state": "primary-vms",
        "computed": "primary-vms",
        "in_grace": False,
        "own_priority": 100,
        "peer_priority": 100,
        "last_heartbeat": {"stor": now - 0.4, "prod": now - 0.5},
        "last_ping": {"ok": True, "at": now - 0.2},
        "last_ping_ok": now - 0.2,
        "dropped": {},
        "stale_copies": False,
        "cannot_run": [],
    } | changes


# Seven keyword parameters: each is one part of a node's state that a scenario changes.
def node_facts(
    base: Path,
    name: str,
    target: str = "primary-vms",
    running: list[str] | None = None,
    proc: dict[int, str] | None = None,
    daemon: dict[str, Any] | None = None,
    enabled: tuple[str, ...] = ("db", "mail", "web"),
) -> facts.Facts:
    """The facts `name` would report. `running`: its active VM units (default its home VMs);
    `daemon`: kissclusterd's status (default settled on `target`; {} for none)."""
    root = base / name
    places = facts.Places(root / "systemd", root / "drbd.d", root / "proc-drbd", root / "run")
    wants = places.systemd_dir / "all-vms.target.wants"
    wants.mkdir(parents=True)
    for vm in enabled:
        (wants / f"vm@{vm}.service").symlink_to("../vm@.service")
    drop_in = places.systemd_dir / copies.HOME_DROP_IN
    drop_in.parent.mkdir()
    lines = [f"Wants=vm@{vm}.service" for vm, home in sorted(HOMES.items()) if home == name]
    lines += [f"Conflicts=vm@{vm}.service" for vm, home in sorted(HOMES.items()) if home != name]
    drop_in.write_text("[Unit]\n" + "\n".join(lines) + "\n")
    kiss = example_pillar(base)
    places.drbd_dir.mkdir()
    for vm in (*kiss["vms"].values(), *kiss["disabled_vms"].values()):
        text = drbd.render_resource(vm, kiss["cluster"]["members"], "vg0")
        (places.drbd_dir / f"{vm['name']}.res").write_text(text)
    old = dict(
        kiss["vms"]["web"],
        name="old",
        disks=[{"name": "root", "volume": 0, "minor": 12, "drbd_device": "/dev/drbd12"}],
    )
    (places.drbd_dir / "old.res").write_text(
        drbd.render_resource(old, kiss["cluster"]["members"], "vg0")
    )
    proc = healthy_proc(name) if proc is None else proc
    header = "version: 8.4.11 (api:1/proto:86-101)\nsrcversion: 211FB288A383ED945B83420\n"
    places.proc_drbd.write_text(header + "".join(proc[m] for m in sorted(proc)))
    daemon = daemon_status(state=target, computed=target) if daemon is None else daemon
    if daemon:
        places.run_dir.mkdir()
        status.publish(places.run_dir, daemon)
    if running is None:
        running = [vm for vm, home in HOMES.items() if home == name and target == "primary-vms"]
    active = {f"{target}.target", facts.DAEMON_UNIT, *(f"vm@{vm}.service" for vm in running)}

    def unit_states(units: list[str]) -> dict[str, str]:
        return {unit: "active" if unit in active else "inactive" for unit in units}

    return facts.local_facts(places, unit_states)


def both_nodes(base: Path, **per_node: dict[str, Any]) -> dict[str, facts.Facts]:
    """Both nodes' facts, healthy unless `node1=dict(...)` or `node2=dict(...)` say otherwise."""
    return {name: node_facts(base, name, **per_node.get(name, {})) for name in ("node1", "node2")}
