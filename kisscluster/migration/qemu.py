"""The source side of a live migration, through the VM's QMP socket: send the guest, follow
qemu's MIGRATION events to the end (progress from `query-migrate` while none comes), or cancel.
"""

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from kisscluster.vmmonitor import RUN_DIR, Qmp

PROGRESS_EVERY = 1.0  # seconds between two progress lines while qemu sends the guest
# Seconds without a byte sent after which the migration is cancelled: a stream cut off (the
# storage link down) would otherwise wait for TCP to give up, a quarter of an hour.
STALL_AFTER = 30.0
MIB = 1024 * 1024
ENDED = ("completed", "failed", "cancelled")


class MigrationFailed(RuntimeError):
    pass


def _progress(info: dict[str, Any]) -> str:
    ram = info.get("ram") or {}
    sent, total = ram.get("transferred", 0) / MIB, ram.get("total", 0) / MIB
    return f"qemu {info.get('status', '?')}: {sent:.1f} MiB sent of {total:.1f} MiB RAM"


def migrate_out(
    vm: str,
    uri: str,
    say: Callable[[str], None],
    bandwidth_mib: int | None = None,
    run_dir: Path = RUN_DIR,
    stall_after: float = STALL_AFTER,
) -> dict[str, Any]:
    """Send `vm`'s guest to the qemu waiting at `uri`; qemu's `query-migrate` once completed,
    with `qemu-seconds`. MigrationFailed if it fails, or sends nothing for `stall_after`
    seconds (then still under way: cancel_migration ends it)."""
    qmp = Qmp(run_dir / f"{vm}.qmp")
    try:
        # return-path: qemu completes only once the target has loaded the guest; without it a
        # target that dies at the last moment would leave the guest paused here and gone there.
        qmp.execute("migrate-set-capabilities", capabilities=[
            {"capability": "events", "state": True},
            {"capability": "return-path", "state": True},
        ])  # fmt: skip
        if bandwidth_mib is not None:
            qmp.execute("migrate-set-parameters", **{"max-bandwidth": bandwidth_mib * MIB})
        qmp.execute("migrate", uri=uri)
        status = "setup"
        stamps: dict[str, dict[str, int]] = {}  # status -> the timestamp of its first event
        sent, sent_at = -1, time.monotonic()
        while status not in ENDED:
            event = qmp.event(PROGRESS_EVERY)
            if event is None:
                info = qmp.execute("query-migrate")
                status = info.get("status", status)
                say(f"{vm}: {_progress(info)}")
                now_sent = (info.get("ram") or {}).get("transferred", 0)
                if now_sent != sent:
                    sent, sent_at = now_sent, time.monotonic()
                elif time.monotonic() - sent_at > stall_after:
                    raise MigrationFailed(
                        f"qemu: migration stalled: nothing sent for {stall_after:.0f} s "
                        f"({status}): the storage link or the target is gone"
                    )
            elif event["event"] == "MIGRATION":
                status = event["data"]["status"]
                stamps.setdefault(status, event["timestamp"])
        info = qmp.execute("query-migrate")
        if status != "completed":
            raise MigrationFailed(
                f"qemu: migration {status}: {info.get('error-desc', 'no reason given')}"
            )
        # qemu's own time, from its first MIGRATION event to the one that says completed (its
        # total-time reads 0 in a qemu that once received a guest itself).
        seconds = [s["seconds"] + s["microseconds"] / 1e6 for s in stamps.values()]
        return {**info, "qemu-seconds": max(seconds) - min(seconds)}
    finally:
        qmp.close()


def cancel_migration(vm: str, run_dir: Path = RUN_DIR) -> None:
    """Stop sending the guest; it goes on running here. Refused once qemu completed it."""
    qmp = Qmp(run_dir / f"{vm}.qmp")
    try:
        status = qmp.execute("query-migrate").get("status")
        if status == "completed":
            raise MigrationFailed(f"{vm}: the migration completed: the guest runs on the peer")
        if status not in ENDED and status is not None:
            qmp.execute("migrate_cancel")
            while qmp.execute("query-migrate").get("status") not in ENDED:
                qmp.event(0.2)
        if qmp.execute("query-status")["status"] != "running":
            qmp.execute("cont")  # a migration that failed in its last phase leaves it paused
    finally:
        qmp.close()
