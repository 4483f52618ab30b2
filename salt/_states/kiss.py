"""kisscluster's state: what Salt's own states cannot decide, the disks of a VM on this node.

The files of a VM are Salt's `file.managed` with text from the `kiss.*` execution module; the
VM disks plan (which LVs to create or grow, and their DRBD setup, resize and qemu's view) is
decided by `kisscluster.skeleton` and `kisscluster.disks` and carried out by the `kiss.*` action
functions.
"""

from pathlib import Path as _Path

try:
    from kisscluster import disks as _disks
    from kisscluster import lvm as _lvm
    from kisscluster import pillar as _pillar
    from kisscluster import skeleton as _skeleton
    from kisscluster import steps as _steps

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


def _observed(vm, volume_group, programs, run_dir, root):
    """What DRBD and qemu say here about VM ``vm``, whose root LV exists (kisscluster.disks)."""
    return _disks.Observed(
        extent_bytes=__salt__["kiss_disks.vg_extent_size"](volume_group, programs["vgs"]),
        minors=_disks.read_minors([int(d["minor"]) for d in vm["disks"]], _Path(root)),
        drives=__salt__["kiss_disks.vm_drive_sizes"](
            vm["name"], [int(d["volume"]) for d in vm["disks"]], run_dir
        ),
        run_dir=run_dir,
    )


# Six arguments: the VM and its cluster from pillar, the programs (lvs, vgs, lvcreate,
# lvextend, drbdadm), qemu's socket directory and the root of /proc and /sys (tests move it).
def vm_disks(name, vm, cluster, programs, run_dir, root="/"):
    """
    The LVs and DRBD volumes of VM ``name`` (``vm``: its record of pillar ``kiss:vms``;
    ``cluster``: pillar ``kiss:cluster``). A VM new on this node: its LVs, and only when this run
    creates the root LV also ``create-md`` on each new volume and ``adjust``, and on the VM's
    ``primary_on`` node the initial sync, unless the peer holds the VM's data. A VM that exists
    here: a new extra disk (LV, metadata of that volume only, ``adjust``, its initial sync once
    both copies exist), a larger size (``lvextend``, ``drbdadm resize``, and qemu told where the
    VM runs); a smaller size fails. ``changes`` maps each step to its command, in test mode
    (would run) as in a real run (ran).
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        volume_group = cluster["volume_group"]
        node = _pillar.local_member({"cluster": cluster}, __opts__["id"])["name"]
        existing = __salt__["kiss.lvs"](volume_group, programs["lvs"])
        observed = None
        if _lvm.lv_name(name, "root") in existing:
            observed = _observed(vm, volume_group, programs, run_dir, root)
        tools = _steps.Programs(programs["lvcreate"], programs["lvextend"], programs["drbdadm"])
        plan = _skeleton.plan(vm, node, volume_group, existing, tools, observed)
        commands = {step.what: " ".join(step.argv) for step in plan.steps}
    except Exception as exc:  # the state fails naming the VM, whatever broke
        ret.update(result=False, comment=f"VM {name}: {exc}")
        return ret
    if plan.notes:
        ret["warnings"] = list(plan.notes)
    if not plan.steps:
        ret["comment"] = "\n".join([f"VM {name}: disks as the VM file says", *plan.notes])
        return ret
    if __opts__["test"]:
        ret.update(
            result=None,
            changes=commands,
            comment="\n".join([f"VM {name}: would run: {'; '.join(commands)}", *plan.notes]),
        )
        return ret
    told = []
    for step in plan.steps:
        try:
            output = __salt__[step.function](**step.kwargs)
        except Exception as exc:  # CommandExecutionError, or a step that could not start
            ret.update(result=False, comment=f"VM {name}: step '{step.what}' failed: {exc}")
            return ret
        ret["changes"][step.what] = commands[step.what]
        if step.tells:
            told.append(output.strip())
    after = __salt__["kiss.lvs"](volume_group, programs["lvs"], refresh=True)
    missing = [d["lv"] for d in vm["disks"] if d["lv"] not in after]
    if missing:
        ret.update(result=False, comment=f"VM {name}: LVs still missing after lvcreate: {missing}")
        return ret
    ret["comment"] = "\n".join([f"VM {name}: ran: {'; '.join(commands)}", *told, *plan.notes])
    return ret
