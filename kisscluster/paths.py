"""Where the product's Salt tree lives: beside the package in a checkout, else under share/."""

import sys
from pathlib import Path

_CHECKOUT = Path(__file__).resolve().parent.parent


def product_root() -> Path:
    """The directory holding `salt/`, `orchestrate/`, `pillar/` and `vm-config/` of this install."""
    if (_CHECKOUT / "salt" / "states").is_dir():
        return _CHECKOUT
    return Path(sys.prefix) / "share" / "kisscluster"


def salt_root() -> Path:
    return product_root() / "salt"


def vm_templates_dir() -> Path:
    """The qemu parameter templates a VM's `template` key may name (`<name>.conf.jinja`)."""
    return salt_root() / "states" / "kiss" / "templates" / "vm"
