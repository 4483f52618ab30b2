"""kisscluster's execution module for the disks of an existing VM: thin adapters over
`kisscluster` (lvm, drbd, initialsync, vmmonitor), the actions kisscluster.disks plans for a
new extra disk and a grown one. Action functions run one command as an argument list, or one
QMP command, and raise CommandExecutionError when it fails.
"""

from pathlib import Path as _Path

from salt.exceptions import CommandExecutionError

try:
    from kisscluster import drbd as _drbd
    from kisscluster import initialsync as _initialsync
    from kisscluster import lvm as _lvm
    from kisscluster import saltcmd as _saltcmd
    from kisscluster import vmmonitor as _vmmonitor

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss_disks"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


def _run(argv):
    return _saltcmd.run(__salt__["cmd.run_all"], argv)


def lv_extend(volume_group, name, size_bytes, lvextend="lvextend"):
    """
    Grow the logical volume ``volume_group/name`` to ``size_bytes`` (rounded up to extents).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss_disks.lv_extend vg0 web_root 100663296 lvextend=/sbin/lvextend
    """
    return _run(_lvm.lvextend_command(lvextend, volume_group, name, int(size_bytes)))


def vg_extent_size(volume_group, program="/sbin/vgs"):
    """
    The extent size of ``volume_group`` in bytes, asked once per run (kept in ``__context__``).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss_disks.vg_extent_size vg0
    """
    known = __context__.setdefault("kiss.vg_extent_size", {})
    if volume_group not in known:
        try:
            known[volume_group] = _lvm.parse_extent_size(
                _run(_lvm.extent_size_command(program, volume_group))
            )
        except _lvm.LvmError as exc:
            raise CommandExecutionError(str(exc)) from exc
    return known[volume_group]


def vm_drive_sizes(name, volumes, run_dir="/run/kvm"):
    """
    The sizes in bytes qemu shows the guest of VM ``name`` for its DRBD ``volumes``, through its
    QMP socket in ``run_dir``; None when the VM does not run here.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss_disks.vm_drive_sizes db '[0, 1, 2]'
    """
    try:
        return _vmmonitor.drive_sizes(name, [int(v) for v in volumes], _Path(run_dir))
    except (_vmmonitor.MonitorError, ValueError, OSError) as exc:
        raise CommandExecutionError(f"VM {name}: {exc}") from exc


def vm_grow_drive(name, volume, run_dir="/run/kvm"):
    """
    Tell the qemu of VM ``name``, running here, the size of the DRBD device behind its drive
    ``volume`` (QMP ``block_resize``): the guest sees a grown disk without a restart.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss_disks.vm_grow_drive web 0
    """
    try:
        return _vmmonitor.grow_drive(name, int(volume), _Path(run_dir))
    except (_vmmonitor.MonitorError, ValueError, OSError) as exc:
        raise CommandExecutionError(f"VM {name}: {exc}") from exc


def drbd_resize(resource, volume, drbdadm="drbdadm"):
    """
    Grow volume ``volume`` of ``resource`` to the smaller of the two nodes' LVs.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss_disks.drbd_resize web 0
    """
    return _run(_drbd.resize_command(drbdadm, resource, int(volume)))


def drbd_volume_sync(resource, volume, keep_primary=False, drbdadm="drbdadm"):
    """
    Start the initial sync of ``volume``, a new volume of the running ``resource``, from this
    node when the peer's copy of it is connected and new too (kisscluster.initialsync).
    ``keep_primary``: the volume stays Primary, as the rest of a resource whose VM runs here.

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss_disks.drbd_volume_sync db 3
    """
    return _run(_initialsync.volume_command(drbdadm, resource, int(volume), bool(keep_primary)))
