"""kisscluster's execution module: thin adapters over the `kisscluster` package.

The site repository is the minion option `kiss_site` (default /srv/kiss-configure). Rendering
functions return the text of a file for `file.managed`; action functions run one command as an
argument list and raise CommandExecutionError when it fails.
"""

import contextlib as _contextlib
import io as _io
from pathlib import Path as _Path

from salt.exceptions import CommandExecutionError

try:
    from kisscluster import drbd as _drbd
    from kisscluster import initialsync as _initialsync
    from kisscluster import inventory as _inventory
    from kisscluster import lvm as _lvm
    from kisscluster import paths as _paths
    from kisscluster import pillar as _pillar
    from kisscluster import placement as _placement
    from kisscluster import saltcmd as _saltcmd
    from kisscluster import vmconf as _vmconf
    from kisscluster import vmmonitor as _vmmonitor

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


def _site(site):
    return site or __opts__.get("kiss_site", _paths.SITE_DIR)


def _run(argv):
    return _saltcmd.run(__salt__["cmd.run_all"], argv)


def defaults():
    """
    The settings of the kiss states that kisscluster's Python side defines too (map.jinja merges
    them over defaults.yaml): the paths of kissclusterd's config, its shared secret and the fence
    agents' secrets, the placement file of kiss-migrate and kiss-maintenance.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.defaults
    """
    return {
        "kissclusterd_conf": _paths.KISSCLUSTERD_CONF,
        "placement_file": _paths.PLACEMENT_FILE,
        "heartbeat": {
            "secret_file": _paths.HEARTBEAT_SECRET_FILE,
            "fence_secret_file": _paths.FENCE_SECRET_FILE,
        },
    }


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


# Six parameters: what orchestrate/kiss/vms.sls passes to each step.
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
    known = __context__.setdefault("kiss.lvs", {})
    if refresh or volume_group not in known:
        output = _run(_lvm.lvs_command(program, volume_group))
        try:
            known[volume_group] = _lvm.parse_lvs(output)
        except _lvm.LvmError as exc:
            raise CommandExecutionError(str(exc)) from exc
    return dict(known[volume_group])


def lv_create(volume_group, name, size_bytes, lvcreate="lvcreate"):
    """
    Create the logical volume ``volume_group/name`` of exactly ``size_bytes``.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.lv_create vg0 web_root 21474836480 lvcreate=/sbin/lvcreate
    """
    return _run(_lvm.lvcreate_command(lvcreate, volume_group, name, int(size_bytes)))


def drbd_create_md(resource, volume, drbdadm="drbdadm"):
    """
    Fresh internal DRBD metadata on volume ``volume`` of ``resource``, whose LV was just created.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.drbd_create_md web 0 drbdadm=/usr/lib/drbd/drbdadm-84
    """
    return _run(_drbd.create_md_command(drbdadm, resource, int(volume)))


def drbd_adjust(resource, drbdadm="drbdadm"):
    """
    Bring the DRBD resource ``resource`` to its configuration (up, attached, connecting).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.drbd_adjust web
    """
    return _run(_drbd.adjust_command(drbdadm, resource))


def drbd_initial_sync(resource, drbdadm="drbdadm"):
    """
    Start the initial sync of ``resource``, just created here, from this node, unless the peer's
    copy holds data: then this copy syncs from the peer (kisscluster.initialsync). Returns what
    was done.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.drbd_initial_sync web
    """
    return _run(_initialsync.command(drbdadm, resource))


def drbd_resource(vm, members, volume_group):
    """
    The text of ``/etc/drbd.d/<vm>.res`` for the VM record ``vm`` of pillar ``kiss:vms``, the
    cluster's ``members`` and ``volume_group``: volume 0 is the root disk, volume n extra disk n.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.drbd_resource '{"name": "web", ...}' '[{"name": "node1", ...}]' vg0
    """
    try:
        return _drbd.render_resource(vm, members, volume_group)
    except (KeyError, ValueError) as exc:
        raise CommandExecutionError(f"DRBD resource of VM {vm.get('name')}: {exc}") from exc


def vm_config(vm, keyboard, settings):
    """
    The text of ``/etc/vm/<vm>.conf``, the qemu parameters of the VM record ``vm`` from its
    template (``<template>.conf.jinja`` in the site's ``vm-templates/``, else the shipped
    ``templates/vm/``), with the cluster's ``keyboard`` and the
    ``settings`` of map.jinja (run_dir, vnc_listen, qemu_machine, qemu_accel, qemu_cpu, and
    iso_dir for a VM file's ``install_iso``).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.vm_config '{"name": "web", ...}' en-us '{"run_dir": "/run/kvm", ...}'
    """
    try:
        return _vmconf.render(_paths.template_dirs(_site(None)), vm, keyboard, settings)
    except (KeyError, ValueError) as exc:
        raise CommandExecutionError(f"qemu parameters of VM {vm.get('name')}: {exc}") from exc


def placed_here(node, placement_file):
    """
    The VMs of pillar ``kiss:vms`` that primary-vms.target on ``node`` wants (``wants``: their
    ``primary_on`` is ``node``, or kiss-migrate put them here) and those it conflicts with
    (``conflicts``), after the placement file (kisscluster/placement.py).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.placed_here node1 /var/lib/kisscluster/placement.json
    """
    homes = {name: vm["primary_on"] for name, vm in __pillar__["kiss"].get("vms", {}).items()}
    try:
        placement = _placement.load(_Path(placement_file))
    except (_placement.PlacementError, OSError) as exc:
        raise CommandExecutionError(str(exc)) from exc
    wants, conflicts = _placement.split(homes, node, placement)
    return {"wants": wants, "conflicts": conflicts}


def kissclusterd_conf(cluster, heartbeat):
    """
    The text of kissclusterd's config for ``cluster`` (pillar ``kiss:cluster``) and the merged
    heartbeat settings (defaults.yaml under pillar ``kiss:cluster:heartbeat``).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.kissclusterd_conf '{"members": [...], ...}' '{"port": 694, ...}'
    """
    from kisscluster import nodeconf as _nodeconf

    try:
        return _nodeconf.kissclusterd_conf(cluster, heartbeat)
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


def vm_monitor(name, action, file=None, run_dir="/run/kvm"):
    """
    Press VM ``name``'s power button, reset, pause or resume it, insert an ISO ``file`` into its
    CD-ROM or eject it, write its screen to ``file``, or show its state (``info``), through the
    QMP socket of its qemu on this node (``<run_dir>/<name>.qmp``). ``kiss-vm-monitor`` does the
    same from either node.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.vm_monitor web powerdown
        salt-call --local kiss.vm_monitor web cdrom /srv/iso/debian-12.iso
    """
    if action not in _vmmonitor.ACTIONS:
        raise CommandExecutionError(f"unknown action {action!r}: {sorted(_vmmonitor.ACTIONS)}")
    try:
        return _vmmonitor.monitor(name, action, file, _Path(run_dir))
    except (_vmmonitor.MonitorError, ValueError, OSError) as exc:
        raise CommandExecutionError(f"VM {name}: {exc}") from exc


def overview(timeout=None):
    """
    Both nodes at a glance, from this node: each node's kissclusterd state (target, priorities,
    heartbeats per net, switch), each VM's home, where it runs, its units and DRBD volumes,
    disabled VMs, and every ``problems`` line that keeps the pair from being healthy (a node
    unreachable, a VM on both nodes or on neither, a volume not Connected or not UpToDate).
    ``status`` is 0 healthy, 1 degraded, 2 cannot tell. The peer is asked over pillar
    ``kiss:cluster:lookup:remote_command`` and has ``timeout`` seconds (default 3) to answer.
    ``kiss-overview`` shows the same as a table.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.overview
        salt-call --local --out=json kiss.overview timeout=10
    """
    from kisscluster.configure.node import NodeError
    from kisscluster.overview import cli as _overview

    config_dir = _Path(__opts__["conf_file"]).parent
    try:
        if timeout is None:
            return _overview.report(config_dir)
        return _overview.report(config_dir, float(timeout))
    except (NodeError, _inventory.InventoryError, ValueError) as exc:
        raise CommandExecutionError(f"overview: {exc}") from exc


def _command(main, argv):
    """Run one of kisscluster's commands here; its progress lines, or its error."""
    out, err = _io.StringIO(), _io.StringIO()
    with _contextlib.redirect_stdout(out), _contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse refused the arguments
            status = exc.code or 0
    if status != 0:
        raise CommandExecutionError(err.getvalue().strip() or f"exit status {status}")
    return out.getvalue().splitlines()


def migrate(name=None, to=None, home=False, bandwidth=None):
    """
    Live-migrate VM ``name`` to the other node (``to`` may name it) without stopping its guest,
    or with ``home=True`` every VM away from its ``primary_on`` node back home; ``bandwidth``
    caps the migration in MiB/s. Refused, with the reasons, before anything changes when the
    VM cannot move safely. The VM stays where it is put until migrated back or a failover moves
    it. Returns the progress lines. ``kiss-migrate`` does the same from either node.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.migrate web
        salt-call --local kiss.migrate home=True
    """
    from kisscluster.migration import cli as _migration

    argv = ["--home"] if home else [name, *(["--to", to] if to else [])]
    argv += ["--bandwidth", str(int(bandwidth))] if bandwidth else []
    return _command(_migration.migrate_main, argv)


def maintenance(node, switch, home=False):
    """
    ``switch="on"``: migrate every VM off ``node`` live, one at a time, then mark it in
    maintenance, so that neither node's kissclusterd gives it VMs back while the other node can
    run them (across reboots too). ``switch="off"``: lift the mark; with ``home=True`` also
    migrate ``node``'s own VMs back. Returns the progress lines. ``kiss-maintenance`` does the
    same.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.maintenance node1 on
        salt-call --local kiss.maintenance node1 off home=True
    """
    from kisscluster.migration import cli as _migration

    return _command(_migration.maintenance_main, [node, switch, *(["--home"] if home else [])])
