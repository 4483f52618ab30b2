"""Where the product's Salt tree lives: beside the package in a checkout, else under share/."""

import sysconfig
from pathlib import Path

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
