"""Helpers of the lab tests: the session's Lab, polling, snapshots of both nodes, and the
sampler that checks no VM ever runs on both nodes."""

import json
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import pytest

from kisscluster.lab import cluster
from kisscluster.lab.layout import Layout, Progress
from kisscluster.lab.machine import Machine


@dataclass
class Lab:
    layout: Layout
    progress: Progress
    node1: Machine
    node2: Machine
    outputs: dict[str, str] = field(default_factory=dict)

    @property
    def nodes(self) -> tuple[Machine, Machine]:
        return (self.node1, self.node2)

    def sh(self, machine: Machine, *command: str, timeout: float = 120) -> str:
        return machine.ssh(list(command), timeout=timeout).stdout

    def ok(self, machine: Machine, *command: str, timeout: float = 120) -> bool:
        return machine.ssh(list(command), timeout=timeout, check=False).returncode == 0

    def record(self, name: str, seconds: float) -> None:
        self.progress.timings[name] = seconds
        path = self.layout.root / "timings.json"
        path.write_text(json.dumps(self.progress.timings, indent=2, sort_keys=True) + "\n")


def snapshot(machine: Machine) -> dict[str, Any]:
    """What the node runs now (kisscluster.lab.probe); {} while it is powered off."""
    return cluster.snapshot(machine) or {}


def wait_until(what: str, check: Callable[[], bool], timeout: float, every: float = 2.0) -> float:
    """Poll `check` until it holds; the seconds it took. Fails the test after `timeout`."""
    began = time.monotonic()
    while not check():
        if time.monotonic() - began > timeout:
            pytest.fail(f"not within {timeout:.0f}s: {what}")
        time.sleep(every)
    return time.monotonic() - began


def kiss_pillar(lab: Lab) -> dict[str, Any]:
    out = lab.sh(lab.node1, "salt-call", "--local", "--out=json", "pillar.get", "kiss")
    pillar: dict[str, Any] = json.loads(out)["local"]
    return pillar


def vm_running(state: dict[str, Any], vm: str) -> bool:
    return state.get("units", {}).get(f"vm@{vm}.service") == "active"


def target_active(state: dict[str, Any], target: str) -> bool:
    return state.get("targets", {}).get(f"{target}.target") == "active"


def in_sync(state: dict[str, Any], resource: str) -> bool:
    volumes = [v for k, v in state.get("drbd", {}).items() if k.split("/")[0] == resource]
    return bool(volumes) and all(
        v.get("cs") == "Connected" and v.get("disk") == v.get("peer_disk") == "UpToDate"
        for v in volumes
    )


class Sampler:
    """Samples both nodes side by side in the background, to check afterwards that no VM ever
    ran on both nodes and no DRBD volume was ever primary on both."""

    def __init__(self, lab: Lab, every: float = 2.0) -> None:
        self.lab = lab
        self.every = every
        self.samples: list[tuple[float, dict[str, Any], dict[str, Any]]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> "Sampler":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=120)

    def _one(self, machine: Machine) -> dict[str, Any]:
        try:
            return snapshot(machine)
        except Exception:
            return {}

    def _run(self) -> None:
        with ThreadPoolExecutor(2) as pool:
            while not self._stop.is_set():
                at = time.monotonic()
                one, two = pool.map(self._one, self.lab.nodes)
                self.samples.append((at, one, two))
                self._stop.wait(self.every)

    def both_ran(self) -> list[str]:
        """Every moment a VM unit was active, or a DRBD volume Primary, on both nodes."""
        found = []
        for at, one, two in self.samples:
            for unit, state in one.get("units", {}).items():
                if unit.startswith("vm@") and state == "active" == two.get("units", {}).get(unit):
                    found.append(f"t={at:.0f}: {unit} active on both")
            for volume, drbd in one.get("drbd", {}).items():
                other = two.get("drbd", {}).get(volume, {})
                if drbd.get("role") == "Primary" == other.get("role"):
                    found.append(f"t={at:.0f}: {volume} Primary on both")
                if drbd.get("role") == "Primary" == drbd.get("peer_role"):
                    found.append(f"t={at:.0f}: {volume} Primary/Primary")
        return found


def settled(lab: Lab, vms: dict[str, Any]) -> bool:
    """Both nodes on primary-vms, each VM running on its primary_on node only."""
    states = {m.name: snapshot(m) for m in lab.nodes}
    return all(target_active(s, "primary-vms") for s in states.values()) and all(
        vm_running(states[name], vm) == (record["primary_on"] == name)
        for vm, record in vms.items()
        for name in states
    )
