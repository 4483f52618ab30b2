"""The fast reader of a cache file exactly as the inventory writes it.

Reading a 1,000-VM cache with YAML takes longer than reading every VM file. A cache that
kiss-inventory wrote has one layout, so this reader takes it line by line and accepts only text
that is, byte for byte, the header plus `yaml.dump` of the data it returns (every scalar in the
one form the dumper gives it); anything else, such as a hand-edited or an original-format cache,
it leaves to YAML. So a run that changes nothing knows the file already holds what it would
write, without writing it out again.
"""

import re
from collections.abc import Callable
from typing import Any

from yaml.nodes import ScalarNode
from yaml.resolver import Resolver

HEADER = (
    "# The allocation cache of kisscluster, written by kiss-inventory: every VM this cluster has\n"
    "# known and the DRBD minors it owns. Commit it; never edit or delete it by hand.\n"
)
#: The settings a VM file gives a record, in the cache's order; written only when known.
OPTIONAL_VM_KEYS = (
    "primary_on",
    "template",
    "cpus",
    "ram_megs",
    "network_bridge",
    "root_disk_size",
    "install_iso",
)

_INT = re.compile(r"(0|[1-9][0-9]*)\Z")
# Strings the dumper writes plain (unquoted): no character YAML treats specially, and not a word
# that YAML would read as another type (yes, null, 1.5, 0x10, 2024-01-01, …).
_PLAIN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*\Z")
_STR_TAG = "tag:yaml.org,2002:str"
_RESOLVER = Resolver()


class _NotExact(Exception):
    pass


def _int(text: str) -> int:
    if not _INT.match(text):
        raise _NotExact
    return int(text)


def _bool(text: str) -> bool:
    if text not in ("true", "false"):
        raise _NotExact
    return text == "true"


def _str(text: str) -> str:
    if not _PLAIN.match(text) or _RESOLVER.resolve(ScalarNode, text, (True, False)) != _STR_TAG:
        raise _NotExact
    return text


#: (key, parse, optional) in the order the cache writes them; a parse of None is a list of disks.
_Fields = tuple[tuple[str, Callable[[str], Any] | None, bool], ...]
_DISK: _Fields = (
    ("name", _str, False),
    ("size", _str, True),
    ("drbd_volume", _int, False),
    ("drbd_minor", _int, False),
)
_OPTIONAL_KINDS = {"cpus": _int, "ram_megs": _int}
_VM: _Fields = (
    ("name", _str, False),
    ("drbd_minor", _int, False),
    ("disabled", _bool, False),
    *((key, _OPTIONAL_KINDS.get(key, _str), True) for key in OPTIONAL_VM_KEYS),
    ("more_disks", None, False),
    ("retired_disks", None, True),
)


class _Lines:
    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        self.at = 0

    def starts(self, prefix: str) -> bool:
        return self.at < len(self.lines) and self.lines[self.at].startswith(prefix)

    def take(self, prefix: str) -> str:
        """The rest of the next line, which must start with `prefix`."""
        if not self.starts(prefix):
            raise _NotExact
        self.at += 1
        return self.lines[self.at - 1][len(prefix) :]

    def mapping(self, first: str, indent: str, fields: _Fields) -> dict[str, Any]:
        """A mapping whose first line starts with `first` and whose others with `indent`."""
        out: dict[str, Any] = {}
        for key, parse, optional in fields:
            prefix = (indent if out else first) + key + ":"
            if optional and not self.starts(prefix):
                continue
            rest = self.take(prefix)
            if parse is None:
                out[key] = self.sequence(rest, indent, _DISK)
            elif rest.startswith(" "):
                out[key] = parse(rest[1:])
            else:
                raise _NotExact
        return out

    def sequence(self, rest: str, indent: str, fields: _Fields) -> list[dict[str, Any]]:
        """A list of mappings: ` []` after its key, or nothing and one item or more below."""
        if rest == " []":
            return []
        if rest or not self.starts(indent + "- "):
            raise _NotExact
        items = []
        while self.starts(indent + "- "):
            items.append(self.mapping(indent + "- ", indent + "  ", fields))
        return items


def read(text: str) -> dict[str, Any] | None:
    """The data of a cache file written by the inventory, or None for any other text."""
    if not text.startswith(HEADER) or not text.endswith("\n"):
        return None
    lines = _Lines(text[len(HEADER) : -1].split("\n"))
    try:
        data = {
            "cluster": _str(lines.take("cluster: ")),
            "next_minor": _int(lines.take("next_minor: ")),
            "vms": lines.sequence(lines.take("vms:"), "", _VM),
        }
    except _NotExact:
        return None
    return data if lines.at == len(lines.lines) else None
