"""The decisions of a live migration, without I/O: the pre-checks, the steps and their undo.

A migration has two parts. Up to the switch-over (qemu reports the migration completed), every
step that changed something has an undo, and a failure or Ctrl-C undoes them in reverse order:
the VM keeps running on the source and no volume stays Primary on the target. After it, the
guest runs on the target; the remaining steps only tidy up, and one that fails is reported
with what is left to do, never undone.
"""

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

Facts = Mapping[str, Any]
# Room a qemu needs beside its guest's RAM (its own code, the video memory, buffers), in MiB.
QEMU_OVERHEAD_MIB = 64


def refusals(
    vm: str, ram_mib: int, source: str, target: str, here: Facts, peer: Facts
) -> list[str]:
    """Why `vm` must not be migrated from `source` (facts `here`) to `target` (facts `peer`),
    as the node facts of kisscluster.migration.node report them; empty when it may be."""
    found = []
    if not here["runs"]:
        found.append(f"{vm} does not run on {source}")
    if peer["runs"]:
        found.append(f"{vm} already runs on {target}")
    if here["migrating"] or peer["migrating"]:
        found.append(f"a migration of {vm} is under way (or was interrupted: kiss-overview)")
    if peer["conf_digest"] is None:
        found.append(f"{target} has no /etc/vm/{vm}.conf: roll the VM out there (kiss-configure)")
    elif (peer["conf_digest"], peer["unit_digest"]) != (here["conf_digest"], here["unit_digest"]):
        found.append(
            f"{vm}'s qemu parameters or vm@.service differ between {source} and {target}: "
            "roll out both nodes at the same commit (kiss-configure)"
        )
    volumes = here["volumes"]
    if not volumes:
        found.append(f"{vm} has no DRBD volume up on {source}")
    for volume in volumes:
        state = (volume["cs"], volume.get("disk"), volume.get("peer_disk"))
        if state != ("Connected", "UpToDate", "UpToDate"):
            found.append(
                f"{vm}/{volume['volume']} is {volume['cs']} {volume.get('disk')}/"
                f"{volume.get('peer_disk')} on {source}: a migration needs Connected "
                "UpToDate/UpToDate"
            )
    if peer["target"] != "all-vms" and peer["target"] != "primary-vms":
        found.append(f"{target} runs {peer['target'] or 'no VM target'}: it takes no VM now")
    for node in sorted(set(here["maintenance"]) | set(peer["maintenance"])):
        if node == target:
            found.append(f"{target} is in maintenance (kiss-maintenance {target} off)")
    needed = (ram_mib + QEMU_OVERHEAD_MIB) * 1024
    if peer["mem_available_kib"] < needed:
        found.append(
            f"{target} has {peer['mem_available_kib'] // 1024} MiB available, {vm} needs "
            f"{needed // 1024} MiB ({ram_mib} MiB RAM + {QEMU_OVERHEAD_MIB} MiB for qemu)"
        )
    return found


@dataclass(frozen=True)
class Step:
    says: str  # what is done, as a progress line says it
    do: Callable[[], object]
    undo: Callable[[], object] | None = None  # None: nothing to take back


class Failed(Exception):
    """A migration step failed; `undone` says whether the VM is back as it was."""

    def __init__(self, step: str, cause: BaseException, undone: bool, left: Sequence[str]) -> None:
        self.step, self.cause, self.undone, self.left = step, cause, undone, list(left)
        what = "interrupted" if isinstance(cause, KeyboardInterrupt) else f"failed: {cause}"
        super().__init__(f"{step}: {what}")


def carry_out(
    window: Sequence[Step],
    finish: Sequence[Step],
    say: Callable[[str], None],
    clock: Callable[[], float],
) -> None:
    """Run the `window` steps (undone in reverse on any failure or interruption), then the
    `finish` steps (never undone: a failure stops there and names what is left)."""
    started = clock()

    def progress(line: str) -> None:
        say(f"[{clock() - started:6.1f} s] {line}")

    done: list[Step] = []
    for step in window:
        try:
            step.do()
        except BaseException as exc:
            progress(f"{step.says}: {'interrupted' if isinstance(exc, KeyboardInterrupt) else exc}")
            undone = True
            for earlier in reversed([*done, step]):
                if earlier.undo is None:
                    continue
                try:
                    earlier.undo()
                    progress(f"undone: {earlier.says}")
                except Exception as undo_exc:  # go on: every other step is still undone
                    undone = False
                    progress(f"could not undo {earlier.says}: {undo_exc}")
            raise Failed(step.says, exc, undone, []) from exc
        done.append(step)
        progress(step.says)
    for index, step in enumerate(finish):
        try:
            step.do()
        except BaseException as exc:  # Ctrl-C too: what is left is said, never undone
            progress(f"{step.says}: {exc}")
            raise Failed(step.says, exc, False, [s.says for s in finish[index:]]) from exc
        progress(step.says)
