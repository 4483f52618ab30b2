"""Validators for every name that reaches a path, an LV or unit name, or a command line.

A new VM's or a disk's name is a safe identifier: a lower-case letter, then lower-case letters,
digits and `-`. No `_`: it separates VM and disk in LV names (`web_data`). A VM adopted from the
original KISScluster keeps the name it has on the nodes, which may also have capitals and `_`
(the inventory allows that only to a VM its cache already holds): so the check every name meets on
its way into a path, unit or command (`validate_vm_name`) takes those too. Either is unambiguous in
LV names, since disk names have no `_`. The length bounds keep the derived names inside every
limit they meet: LV names (127 bytes), DRBD resource names, systemd unit names (255 bytes) and the
unix socket paths under /run/kvm (108 bytes with `.monitor`/`.qmp` suffixes).
"""

import re

MAX_VM_NAME = 32
MAX_DISK_NAME = 16
MAX_MEMBER_NAME = 63
MAX_BRIDGE_NAME = 15  # IFNAMSIZ - 1

_IDENTIFIER = re.compile(r"[a-z][a-z0-9-]*\Z")
_ADOPTED_VM = re.compile(r"[A-Za-z][A-Za-z0-9_-]*\Z")
_MEMBER = re.compile(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?\Z")
_BRIDGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")


def _identifier(kind: str, value: object, limit: int) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{kind} must be a string, got {value!r}")
    if not _IDENTIFIER.match(value) or value.endswith("-"):
        raise ValueError(
            f"{kind} {value!r} is not a safe identifier: use a lower-case letter, then lower-case "
            "letters, digits and '-' (no '_', no trailing '-')"
        )
    if len(value) > limit:
        raise ValueError(f"{kind} {value!r} is longer than {limit} characters")
    return value


def validate_cluster_name(value: object) -> str:
    """The cluster name names `vm-config/<cluster>/` and the cache file."""
    return _identifier("cluster name", value, MAX_VM_NAME)


def validate_new_vm_name(value: object) -> str:
    """The name a VM the cache does not hold yet may take."""
    return _identifier("VM name", value, MAX_VM_NAME)


def validate_vm_name(value: object) -> str:
    """Any VM's name: a new VM's, or one an adopted site's VM kept (capitals and `_` allowed)."""
    if isinstance(value, str) and _ADOPTED_VM.match(value) and not value.endswith("-"):
        if len(value) > MAX_VM_NAME:
            raise ValueError(f"VM name {value!r} is longer than {MAX_VM_NAME} characters")
        return value
    return validate_new_vm_name(value)


def validate_disk_name(value: object) -> str:
    return _identifier("disk name", value, MAX_DISK_NAME)


def validate_member_name(value: object) -> str:
    """A cluster member is a host name label (it is also the node's Salt minion id)."""
    if not isinstance(value, str) or len(value) > MAX_MEMBER_NAME or not _MEMBER.match(value):
        raise ValueError(
            f"member name {value!r} is not a host name label: lower-case letters, digits and '-', "
            f"at most {MAX_MEMBER_NAME} characters"
        )
    return value


def validate_bridge_name(value: object) -> str:
    if not isinstance(value, str) or len(value) > MAX_BRIDGE_NAME or not _BRIDGE.match(value):
        raise ValueError(
            f"bridge name {value!r} is not an interface name: letters, digits, '_', '.', '-', "
            f"at most {MAX_BRIDGE_NAME} characters"
        )
    return value
