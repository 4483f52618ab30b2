"""The `kiss.*` execution functions of kiss-verify and DRBD online verify: thin adapters over
kisscluster.verifycli and kisscluster.onlineverify, in the `kiss` namespace of
salt/_modules/kiss.py (the same virtual name).
"""

from pathlib import Path as _Path

from salt.exceptions import CommandExecutionError

try:
    from kisscluster import onlineverify as _onlineverify
    from kisscluster import paths as _paths
    from kisscluster import verifycli as _verifycli
    from kisscluster import verifyfacts as _verifyfacts

    HAS_KISSCLUSTER = True
except ImportError:
    HAS_KISSCLUSTER = False

__virtualname__ = "kiss"


def __virtual__():
    if not HAS_KISSCLUSTER:
        return (False, "the kisscluster package is not importable: pip install kisscluster")
    return __virtualname__


def verify(local=False, site=None):
    """
    Both nodes (``local=True``: this one) against the committed cache and the pillar: LVs, DRBD
    resource files and running configuration, units and their wants, blocks DRBD's online verify
    found out of sync, git. Returns ``clean`` and every difference with the command that fixes
    it, as ``kiss-verify --json`` prints (kisscluster/verifycli.py).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.verify
    """
    site = _Path(site or __opts__.get("kiss_site", _paths.SITE_DIR))
    bare = site.with_name(site.name + ".git")
    where = _verifyfacts.Where(__opts__["id"], __opts__.get("kiss_lookup") or {}, site, bare)
    try:
        return _verifycli.run(__pillar__["kiss"], where, bool(local))
    except (ValueError, OSError) as exc:
        raise CommandExecutionError(f"kiss.verify: {exc}") from exc


def verify_units(node, settings):
    """
    The texts of ``kiss-drbd-verify.timer`` (pillar ``kiss:cluster:verify_schedule``, checked
    with ``systemd-analyze calendar``) and ``.service`` (``drbdadm verify`` of the resources whose
    VM is at home on ``node``), with the ``settings`` of map.jinja (kisscluster/onlineverify.py).

    CLI Example:

    .. code-block:: bash

        salt-call --local kiss.verify_units node1 '{"python": ..., "drbdadm": ...}'
    """
    kiss, ov = __pillar__["kiss"], _onlineverify
    try:
        schedule = ov.check_schedule(
            kiss["cluster"]["verify_schedule"], settings["systemd_analyze"]
        )
        service = ov.service_unit(kiss["vms"], node, settings["python"], settings["drbdadm"])
    except ValueError as exc:
        raise CommandExecutionError(str(exc)) from exc
    return {"timer": ov.timer_unit(schedule), "service": service}
