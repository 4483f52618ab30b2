"""kisscluster's execution module: thin adapters over the `kisscluster` package.

The site repository is the minion option `kiss_site` (default /srv/kiss-configure).
"""

from salt.exceptions import CommandExecutionError

try:
    from kisscluster import inventory as _inventory
    from kisscluster import pillar as _pillar

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss"

DEFAULT_SITE = "/srv/kiss-configure"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


def _site(site):
    return site or __opts__.get("kiss_site", DEFAULT_SITE)


def inventory(site=None, test=None):
    """
    Run the VM inventory: allocate DRBD minors for new VM files, disable VMs whose file is gone,
    and write the allocation cache if it changed. Returns what it allocated, activated, disabled.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.inventory
        salt-call --local kiss.inventory site=/srv/kiss-configure test=True
    """
    dry_run = __opts__.get("test", False) if test is None else bool(test)
    try:
        return _inventory.run(_site(site), dry_run=dry_run).as_dict()
    except _inventory.InventoryError as exc:
        raise CommandExecutionError(str(exc)) from exc


def vms(site=None):
    """
    The active and disabled VMs of the committed cache, with their minors, MACs and LV names.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.vms
    """
    try:
        data = _pillar.build(_site(site))
    except _inventory.InventoryError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return {"active": data["vms"], "disabled": data["disabled_vms"]}


def vm(name, site=None):
    """
    One VM of the committed cache: minors, VNC display, MAC, LV and DRBD names.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.vm web
    """
    everything = vms(site)
    for state in ("active", "disabled"):
        if name in everything[state]:
            return dict(everything[state][name], disabled=state == "disabled")
    raise CommandExecutionError(f"no VM {name!r} in the cache of {_site(site)}")


def rollout_step(step, commit=None, test=False, config_dir=None, sls="kiss.vms", candidate=None):
    """
    One step of `salt-run state.orchestrate kiss.vms` (orchestrate/kiss/vms.sls): ``check-peer``
    (can the peer's working copy reach ``commit``?), ``apply-local`` or ``apply-peer`` (bring the
    working copy to ``commit`` and apply ``sls``; refused when it is not there). The peer is
    reached through pillar ``kiss:cluster:lookup:remote_command``. Returns ``result`` and the
    node's readable outcome as ``comment``. ``candidate`` (with ``test``): a site directory
    holding what kiss-configure --dry-run would commit, applied instead of the working copies.

    CLI Example:

    .. code-block:: bash

        salt-run state.orchestrate kiss.vms pillar='{"kiss_commit": "<sha>"}'
        salt-call --local kiss.rollout_step apply-local test=True
    """
    # Imported here: only salt-run's orchestration needs GitPython and the rollout code.
    from pathlib import Path

    from kisscluster.configure import rollout

    return rollout.run_step(
        step, config_dir, commit, sls, bool(test), Path(candidate) if candidate else None
    )


def lvs(volume_group, program="/sbin/lvs", refresh=False):
    """
    The logical volumes of ``volume_group`` and their sizes in bytes. LVM is asked once per run:
    the answer is kept in ``__context__`` for every later call (``refresh=True`` asks again, as
    ``kiss.vms`` does after creating LVs, to confirm them).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.lvs vg0
    """
    from kisscluster import lvm as _lvm

    known = __context__.setdefault("kiss.lvs", {})
    if refresh or volume_group not in known:
        command = _lvm.lvs_command(program, volume_group)
        result = __salt__["cmd.run_all"](command, python_shell=False, ignore_retcode=True)
        if result["retcode"] != 0:
            raise CommandExecutionError(
                f"{' '.join(command)} exited {result['retcode']}: {result['stderr'].strip()}"
            )
        try:
            known[volume_group] = _lvm.parse_lvs(result["stdout"])
        except _lvm.LvmError as exc:
            raise CommandExecutionError(str(exc)) from exc
    return dict(known[volume_group])


def kissclusterd_conf(heartbeat):
    """
    The text of kissclusterd's config for this cluster, from pillar ``kiss:cluster`` and the
    merged heartbeat settings (defaults.yaml under pillar ``kiss:cluster:heartbeat``).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.kissclusterd_conf '{"port": 694, ...}'
    """
    from kisscluster import nodeconf as _nodeconf

    try:
        return _nodeconf.kissclusterd_conf(__pillar__["kiss"]["cluster"], heartbeat)
    except (KeyError, ValueError) as exc:
        raise CommandExecutionError(f"kissclusterd config: {exc}") from exc


def bridges():
    """
    The bridges VMs of this cluster join (default bridge and every VM's, active or disabled),
    validated: the qemu bridge ACL lists them.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.bridges
    """
    from kisscluster import nodeconf as _nodeconf

    kiss = __pillar__["kiss"]
    vms = list(kiss.get("vms", {}).values()) + list(kiss.get("disabled_vms", {}).values())
    try:
        return _nodeconf.bridges(kiss["cluster"]["default_bridge"], vms)
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc


def nuke(name, test=None, force=False, site=None):
    """
    Remove the VM ``name`` from this node for good: DRBD disconnect, down and wipe-md, its
    resource file, its unit (disabled) and qemu config, its LVs. Refused while its unit is
    active (unless ``force=True``, which stops it first) and while its ``*.yml`` file exists.
    ``test=True`` lists every step and removes nothing. Run on both nodes; kiss-nuke-vm does
    that and then forgets the VM from the cache.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.nuke old test=True
        salt-call --local kiss.nuke old force=True
    """
    from pathlib import Path

    from kisscluster import nuke as nuke_mod

    test = __opts__.get("test", False) if test is None else bool(test)
    try:
        return nuke_mod.nuke(
            Path(_site(site)),
            __pillar__["kiss"],
            name,
            lookup_overrides=__opts__.get("kiss_lookup") or {},
            test=test,
            force=bool(force),
        )
    except (nuke_mod.NukeError, ValueError) as exc:
        raise CommandExecutionError(str(exc)) from exc


def nuke_step(step, vm, test=False, force=False, config_dir=None):
    """
    One step of `salt-run state.orchestrate kiss.nuke` (orchestrate/kiss/nuke.sls):
    ``check-local``, ``check-peer``, ``nuke-local``, ``nuke-peer`` or ``forget``.

    CLI Example:

    .. code-block:: bash

        salt-run state.orchestrate kiss.nuke pillar='{"vm": "old"}'
        salt-call --local kiss.nuke_step check-local old
    """
    from kisscluster.configure import nuking

    return nuking.run_step(step, vm, config_dir, bool(test), bool(force))
