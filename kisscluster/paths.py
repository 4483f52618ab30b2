"""The paths of the product: its Salt tree (beside the package in a checkout, else under
share/), and the node paths both the Python side and the Salt states use."""

import sysconfig
from pathlib import Path

#: A node's working copy of the site repository (the minion option `kiss_site` may move it).
SITE_DIR = "/srv/kiss-configure"
KISSCLUSTERD_CONF = "/etc/kisscluster/kissclusterd.conf"
HEARTBEAT_SECRET_FILE = "/etc/kisscluster/kissclusterd.secret"  # noqa: S105 - a path
FENCE_SECRET_FILE = "/etc/kisscluster/fence.secret"  # noqa: S105 - a path
#: Where kiss-migrate and kiss-maintenance put VMs and nodes (kisscluster.placement).
PLACEMENT_FILE = "/var/lib/kisscluster/placement.json"

_CHECKOUT = Path(__file__).resolve().parent.parent


def product_root() -> Path:
    """The directory holding `salt/`, `orchestrate/`, `pillar/` and `vm-config/` of this install."""
    # salt/states/kiss, not salt/states: once installed, _CHECKOUT is site-packages, where Salt
    # itself has a salt/states package.
    if (_CHECKOUT / "salt" / "states" / "kiss").is_dir():
        return _CHECKOUT
    # Where pip put setup.py's data_files: the venv, or /usr/local on a Debian system Python.
    return Path(sysconfig.get_path("data")) / "share" / "kisscluster"


def salt_root() -> Path:
    return product_root() / "salt"


def vm_templates_dir() -> Path:
    """The qemu parameter templates a VM's `template` key may name (`<name>.conf.jinja`)."""
    return salt_root() / "states" / "kiss" / "templates" / "vm"


def original_templates_dir() -> Path:
    """The original KISScluster's templates in kisscluster's form, which kiss-adopt gives an
    adopted site (its `vm-templates/`): the devices the original gave each guest."""
    return salt_root() / "states" / "kiss" / "templates" / "original"


def template_dirs(site: Path | str) -> list[Path]:
    """Where a VM's template is looked up, first match wins: the site's own `vm-templates/`
    (beside `vm-config/`, committed with it), then the shipped ones."""
    return [Path(site) / "vm-templates", vm_templates_dir()]
