"""The steps kiss.vm_disks runs: each names the execution function that acts (`kiss.*` in
salt/_modules/kiss.py, `kiss_disks.*` in salt/_modules/kiss_disks.py) and its arguments, and
shows the command it runs.

The deciding lives in kisscluster.skeleton (a VM new on this node) and kisscluster.disks (a VM
that exists here); the state only calls the functions, in order.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kisscluster import drbd, initialsync, lvm


@dataclass(frozen=True)
class Programs:
    lvcreate: str
    lvextend: str
    drbdadm: str


def block_resize_command(name: str, volume: int, run_dir: str) -> list[str]:
    """What kiss_disks.vm_grow_drive does, in QMP's words: no program runs, qemu is asked."""
    return ["block_resize", str(Path(run_dir) / f"{name}.qmp"), drbd.by_res_path(name, volume)]


#: The execution functions a step may call, each with the builder of the command it runs;
#: function and builder take the same keyword arguments.
COMMANDS: dict[str, Callable[..., list[str]]] = {
    "kiss.lv_create": lvm.lvcreate_command,
    "kiss.drbd_create_md": drbd.create_md_command,
    "kiss.drbd_adjust": drbd.adjust_command,
    "kiss.drbd_initial_sync": initialsync.command,
    "kiss_disks.lv_extend": lvm.lvextend_command,
    "kiss_disks.drbd_volume_sync": initialsync.volume_command,
    "kiss_disks.drbd_resize": drbd.resize_command,
    "kiss_disks.vm_grow_drive": block_resize_command,
}


@dataclass(frozen=True)
class Step:
    """`<function>(**kwargs)`, a Salt execution function; `what` names the step in changes and
    failure messages; `tells`: what the function returns is for the operator."""

    what: str
    function: str
    kwargs: Mapping[str, Any]
    tells: bool = False

    @property
    def argv(self) -> tuple[str, ...]:
        """The command the step runs."""
        return tuple(COMMANDS[self.function](**self.kwargs))
