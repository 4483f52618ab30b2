"""Who this node is, where its site repository lives, and how it reaches its peer.

A node's identity is its Salt minion id (from the minion config it uses), which must be the name of
a cluster member. The primary is the first member. The peer is reached through a remote-command
prefix from the pillar (`kiss:cluster:lookup:remote_command`); its parts may name the peer as
`{name}` and `{stor_addr}`. Everything appended to that prefix is checked to be shell-inert,
because ssh hands its arguments to the peer's shell as one string. The minion option
`kiss_lookup` overrides lookup keys on one node only (two nodes sharing one machine in the tests
differ in their `root`).
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kisscluster import names, paths
from kisscluster import pillar as pillar_mod

DEFAULT_CONFIG_DIR = Path("/etc/salt")
DEFAULT_SITE = paths.SITE_DIR
# The keep-alives end a session whose peer went silent (its link down, the node hung) within
# 30 s, where TCP alone would wait a quarter of an hour.
DEFAULT_REMOTE_COMMAND = (
    "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
    "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=6", "{stor_addr}",
)  # fmt: skip
DEFAULT_SECRET_FILE = paths.HEARTBEAT_SECRET_FILE

_INERT_ARGUMENT = re.compile(r"[A-Za-z0-9_./=:@%+,-]+\Z")


class NodeError(Exception):
    """This node cannot take part: wrong identity, missing config, unusable remote command."""


def config_dir_from_environment() -> Path:
    """The minion config dir: `SALT_CONFIG_DIR` as salt-call reads it, else /etc/salt."""
    return Path(os.environ.get("SALT_CONFIG_DIR") or DEFAULT_CONFIG_DIR)


@dataclass(frozen=True)
class Node:
    """This machine as a cluster member: its minion config, id and site working copy."""

    config_dir: Path
    minion_id: str
    site: Path
    lookup_overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def bare(self) -> Path:
        """The node's bare repository: the working copy's path with `.git` appended."""
        return self.site.with_name(self.site.name + ".git")

    def cluster(self, site: Path | None = None) -> "Cluster":
        """The cluster of this node's site (or of `site`), with this node's `kiss_lookup`
        overrides applied."""
        cluster = Cluster.from_pillar(pillar_mod.build(site or self.site))
        return Cluster(
            name=cluster.name,
            members=cluster.members,
            lookup={**cluster.lookup, **self.lookup_overrides},
            heartbeat=cluster.heartbeat,
        )


def load_node(config_dir: Path | None = None) -> Node:
    """Read the minion config (`<dir>/minion` and `minion.d/`) for the id and the site path."""
    import salt.config  # slow import: only the commands that read a minion config pay for it

    config_dir = Path(config_dir or config_dir_from_environment())
    config_file = config_dir / "minion"
    if not config_file.is_file():
        raise NodeError(f"{config_file}: no Salt minion config; install salt/minion.example there")
    opts = salt.config.minion_config(str(config_file))
    try:
        minion_id = names.validate_member_name(opts.get("id"))
    except ValueError as exc:
        raise NodeError(f"{config_file}: field id: {exc}") from exc
    site = Path(opts.get("kiss_site") or DEFAULT_SITE)
    if not site.is_absolute():
        raise NodeError(f"{config_file}: field kiss_site: {site} is not an absolute path")
    overrides = opts.get("kiss_lookup") or {}
    if not isinstance(overrides, dict):
        raise NodeError(f"{config_file}: field kiss_lookup: must be a mapping, got {overrides!r}")
    return Node(config_dir, minion_id, site, overrides)


@dataclass(frozen=True)
class Cluster:
    """The parts of the `kiss` pillar that the rollout needs."""

    name: str
    members: tuple[dict[str, Any], ...]
    lookup: dict[str, Any]
    heartbeat: dict[str, Any]

    @classmethod
    def from_pillar(cls, kiss: dict[str, Any]) -> "Cluster":
        cluster = kiss["cluster"]
        return cls(
            name=cluster["name"],
            members=tuple(cluster["members"]),
            lookup=dict(cluster.get("lookup") or {}),
            heartbeat=dict(cluster.get("heartbeat") or {}),
        )

    @property
    def primary(self) -> str:
        return self.members[0]["name"]

    def member(self, name: str) -> dict[str, Any]:
        for member in self.members:
            if member["name"] == name:
                return member
        known = ", ".join(m["name"] for m in self.members)
        raise NodeError(
            f"this node's minion id {name!r} is not a member of cluster {self.name!r} ({known}): "
            "set `id` in the minion config to the member name"
        )

    def is_primary(self, name: str) -> bool:
        """Whether the member `name` is the primary (NodeError if it is no member)."""
        return self.member(name)["name"] == self.primary

    def peer_of(self, name: str) -> dict[str, Any]:
        self.member(name)
        return next(m for m in self.members if m["name"] != name)

    def root(self) -> Path:
        """The prefix the states put before every absolute path (empty on a real node)."""
        return Path(self.lookup.get("root") or "/")

    def secret_file(self) -> Path:
        configured = self.heartbeat.get("secret_file") or DEFAULT_SECRET_FILE
        return self.root() / str(configured).lstrip("/")

    def remote_command(self, peer: dict[str, Any], *arguments: str) -> list[str]:
        """The argument list that runs `arguments` on `peer` through the remote-command prefix."""
        template = self.lookup.get("remote_command") or DEFAULT_REMOTE_COMMAND
        if isinstance(template, str) or not all(isinstance(part, str) for part in template):
            raise NodeError(
                "pillar kiss:cluster:lookup:remote_command must be a list of strings, "
                f"got {template!r}"
            )
        prefix = [
            part.replace("{name}", peer["name"]).replace("{stor_addr}", peer["stor_addr"])
            for part in template
        ]
        for argument in arguments:
            if not _INERT_ARGUMENT.match(argument):
                raise NodeError(f"refusing to pass {argument!r} to the peer's shell")
        return [*prefix, *arguments]
