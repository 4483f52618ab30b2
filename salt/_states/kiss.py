"""kisscluster's state: what Salt's own states cannot decide, the disks of a VM on this node.

The files of a VM are Salt's `file.managed` with text from the `kiss.*` execution module; the
VM disks plan (which LVs to create, and for a VM new on this node its DRBD setup) is decided by
`kisscluster.skeleton` and carried out by the `kiss.*` action functions.
"""

try:
    from kisscluster import pillar as _pillar
    from kisscluster import skeleton as _skeleton

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


# Six arguments: the VM and its cluster from pillar, and the three programs of defaults.yaml.
def vm_disks(name, vm, cluster, lvs, lvcreate, drbdadm):
    """
    The LVs and, for a VM new on this node, the DRBD setup of VM ``name`` (``vm``: its record of
    pillar ``kiss:vms``; ``cluster``: pillar ``kiss:cluster``): create its missing LVs; only when
    this run creates the root LV also ``create-md`` on each new volume and ``adjust``, and on the
    VM's ``primary_on`` node the initial sync, unless the peer holds the VM's data. Never
    shrinks or removes an LV; a size larger than the LV is reported. ``changes`` maps each step
    to its command, in test mode (would run) as in a real run (ran).
    """
    ret = {"name": name, "result": True, "changes": {}, "comment": ""}
    try:
        volume_group = cluster["volume_group"]
        node = _pillar.local_member({"cluster": cluster}, __opts__["id"])["name"]
        existing = __salt__["kiss.lvs"](volume_group, lvs)
        plan = _skeleton.plan(
            vm, node, volume_group, existing, _skeleton.Programs(lvcreate, drbdadm)
        )
        commands = {step.what: " ".join(step.argv) for step in plan.steps}
    except Exception as exc:  # the state fails naming the VM, whatever broke
        ret.update(result=False, comment=f"VM {name}: {exc}")
        return ret
    if plan.notes:
        ret["warnings"] = list(plan.notes)
    if not plan.steps:
        ret["comment"] = "\n".join([f"VM {name}: LVs present", *plan.notes])
        return ret
    if __opts__["test"]:
        ret.update(
            result=None,
            changes=commands,
            comment="\n".join([f"VM {name}: would run {len(plan.steps)} step(s)", *plan.notes]),
        )
        return ret
    told = []
    for step in plan.steps:
        try:
            output = __salt__[f"kiss.{step.function}"](**step.kwargs)
        except Exception as exc:  # CommandExecutionError, or a step that could not start
            ret.update(result=False, comment=f"VM {name}: step '{step.what}' failed: {exc}")
            return ret
        ret["changes"][step.what] = commands[step.what]
        if step.tells:
            told.append(output.strip())
    after = __salt__["kiss.lvs"](volume_group, lvs, refresh=True)
    missing = [d["lv"] for d in vm["disks"] if d["lv"] not in after]
    if missing:
        ret.update(result=False, comment=f"VM {name}: LVs still missing after lvcreate: {missing}")
        return ret
    ret["comment"] = "\n".join([f"VM {name}: ran {len(plan.steps)} step(s)", *told, *plan.notes])
    return ret
