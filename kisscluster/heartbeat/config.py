"""The kissclusterd configuration file: INI, one section, identical on both nodes.

Format (`/etc/kisscluster/kissclusterd.conf`; rendered by kiss.node from the pillar)::

    [kissclusterd]
    # Both members' addresses, in cluster order. A daemon finds out which node it is by which
    # storage address (or, failing that, production address) is configured on this host.
    stor_addrs = 10.99.0.1 10.99.0.2
    prod_addrs = 192.0.2.11 192.0.2.12
    # Their names, in the same order: a member named in the placement file's maintenance list
    # (placement_file, default /var/lib/kisscluster/placement.json; kisscluster/placement.py)
    # ranks below a live peer. Without names, maintenance is not known here.
    members = node1 node2
    placement_file = /var/lib/kisscluster/placement.json
    # The switch on the production net: quorum comes from its ping replies.
    ping_addr = 192.0.2.1
    # UDP port of the heartbeats, on both nets (default 694).
    port = 694
    # Shared secret of the HMAC-SHA256 on every heartbeat: identical on both nodes, owned by the
    # daemon's user, mode 0600 or stricter, at least 16 bytes (leading/trailing whitespace is
    # ignored). Default /etc/kisscluster/kissclusterd.secret.
    secret_file = /etc/kisscluster/kissclusterd.secret
    # Priorities: start at base_priority, lose priority_penalty for each of no storage
    # heartbeat, no production heartbeat, no switch reply, 3 * priority_penalty + 1 more in
    # maintenance, and 3 * priority_penalty + 2 more while a VM's copy here cannot run
    # (defaults 100 and 10; base_priority - 9 * priority_penalty - 3 must stay >= 0).
    base_priority = 100
    priority_penalty = 10
    # Seconds, fractions allowed: heartbeat and ping every `interval`; a heartbeat or ping reply
    # counts for `dead_time`, which must be at least twice the interval (defaults 1 and 3).
    interval = 1
    dead_time = 3
    # Seconds after start-up before a peer never heard is taken for dead (at least dead_time;
    # default 60): when both nodes boot together, the first one up waits for the other.
    init_dead = 60
    # Run on every state change, as an argument list (split like a shell would, never run by
    # one); {state} becomes all-vms, primary-vms or no-vms. Default:
    action = systemctl start {state}.target
    # DRBD's fence-peer handler (`kissclusterd fence-peer`) asks the peer to outdate its copy for
    # up to fence_timeout seconds (default 5). If the peer stays silent on both nets,
    # peer_silent decides: `takeover` (default) takes it for dead, `freeze` keeps I/O frozen
    # and promotions refused until it answers (see kisscluster/heartbeat/fence.py).
    fence_timeout = 5
    peer_silent = takeover
    # A peer that answers "not yet" (its DRBD has not noticed the lost link: that takes its
    # ping interval, 10 s by default) is asked again for up to fence_patience seconds.
    fence_patience = 60
    # The DRBD 8.4 front end the handlers run (default drbdadm).
    drbdadm = /usr/lib/drbd/drbdadm-84
    # Optional witness on the production net (`kissclusterd witness` on a third host, TCP):
    # when the peer is silent on both nets, the node holding its lease keeps or takes the VMs
    # and the other gives them up (kisscluster/heartbeat/witness.py). Empty: no witness.
    witness_addr = 192.0.2.5
    witness_port = 694
    # Optional power fencing, per member in cluster order: a fence agent and its name=value
    # options (kisscluster/heartbeat/power.py); the peer's device is used before its VMs are
    # taken over. Secrets go into fence_secret_file (name=value lines, mode 0600), never here.
    fence1 = fence_ipmilan ip=10.0.0.11 username=admin lanplus=1
    fence2 = fence_ipmilan ip=10.0.0.12 username=admin lanplus=1
    fence_secret_file = /etc/kisscluster/fence.secret

Only stor_addrs, prod_addrs and ping_addr are required. Unknown keys are errors, so a typo
never silently falls back to a default. The nodes' clocks must agree within `dead_time` (NTP):
heartbeats stamped further off are dropped.
"""

import configparser
import ipaddress
import os
import shlex
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from kisscluster import names, paths
from kisscluster.heartbeat.core import Rules
from kisscluster.heartbeat.power import Device, FenceConfigError, parse_device

SECTION = "kissclusterd"
DEFAULT_PATH = Path(paths.KISSCLUSTERD_CONF)
DEFAULT_SECRET_FILE = paths.HEARTBEAT_SECRET_FILE
DEFAULT_ACTION = "systemctl start {state}.target"
DEFAULT_FENCE_SECRET_FILE = paths.FENCE_SECRET_FILE
MIN_SECRET_BYTES = 16
MIN_INTERVAL = 0.05
MAX_INTERVAL = 60.0

Address = ipaddress.IPv4Address | ipaddress.IPv6Address

KEYS = (
    "stor_addrs",
    "prod_addrs",
    "members",
    "placement_file",
    "ping_addr",
    "port",
    "secret_file",
    "base_priority",
    "priority_penalty",
    "interval",
    "dead_time",
    "init_dead",
    "action",
    "fence_timeout",
    "fence_patience",
    "peer_silent",
    "drbdadm",
    "witness_addr",
    "witness_port",
    "fence1",
    "fence2",
    "fence_secret_file",
)
PEER_SILENT = ("takeover", "freeze")


class ConfigError(ValueError):
    """A bad configuration: the message names the file, the key and what is wrong."""


@dataclass(frozen=True)
class Config:
    stor_addrs: tuple[Address, Address]
    prod_addrs: tuple[Address, Address]
    ping_addr: Address
    port: int
    secret_file: Path
    rules: Rules
    action: tuple[str, ...]  # argument list with "{state}" placeholders
    source: Path
    fence_timeout: float = 5.0
    fence_patience: float = 60.0
    peer_silent: str = "takeover"
    drbdadm: str = "drbdadm"
    witness: tuple[str, int] | None = None
    fence: tuple[Device | None, Device | None] = (None, None)  # by member, in cluster order
    fence_secret_file: Path = Path(DEFAULT_FENCE_SECRET_FILE)
    members: tuple[str, str] | None = None  # names, in cluster order
    placement_file: Path = Path(paths.PLACEMENT_FILE)

    def action_argv(self, state: str) -> list[str]:
        return [arg.replace("{state}", state) for arg in self.action]


def _address(where: str, text: str) -> Address:
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not an IP address") from None


def _pair(where: str, text: str) -> tuple[Address, Address]:
    words = text.split()
    if len(words) != 2:
        raise ConfigError(f"{where}: give both members' addresses in cluster order, got {text!r}")
    first, second = (_address(where, w) for w in words)
    if first == second:
        raise ConfigError(f"{where}: the two members' addresses must differ, got {text!r}")
    if first.version != second.version:
        raise ConfigError(f"{where}: mixes IPv4 and IPv6 ({text!r})")
    return first, second


def _integer(where: str, text: str, low: int, high: int) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a whole number") from None
    if not low <= value <= high:
        raise ConfigError(f"{where}: {value} is outside {low}..{high}")
    return value


def _seconds(where: str, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"{where}: {text!r} is not a number of seconds") from None
    if not MIN_INTERVAL <= value <= MAX_INTERVAL * 10:
        raise ConfigError(f"{where}: {value} s is outside {MIN_INTERVAL}..{MAX_INTERVAL * 10} s")
    return value


def _absolute(where: str, text: str) -> Path:
    path = Path(text.strip())
    if not path.is_absolute():
        raise ConfigError(f"{where}: must be an absolute path, got {str(path)!r}")
    return path


def _action(where: str, text: str) -> tuple[str, ...]:
    try:
        argv = tuple(shlex.split(text))
    except ValueError as exc:
        raise ConfigError(f"{where}: cannot split {text!r} into arguments: {exc}") from None
    if not argv:
        raise ConfigError(f"{where}: is empty")
    if not any("{state}" in arg for arg in argv):
        raise ConfigError(f"{where}: must contain {{state}} (the target to start), got {text!r}")
    return argv


def _section(text: str, source: Path) -> dict[str, str]:
    """The keys of the one section, refusing other sections and unknown keys."""
    parser = configparser.ConfigParser(interpolation=None, default_section="\0none")
    try:
        parser.read_string(text, source=str(source))
    except configparser.Error as exc:
        raise ConfigError(f"{source}: {exc}") from None
    extra = [s for s in parser.sections() if s != SECTION]
    if extra:
        raise ConfigError(f"{source}: unknown section(s) {extra}; only [{SECTION}] is allowed")
    if not parser.has_section(SECTION):
        raise ConfigError(f"{source}: missing section [{SECTION}]")
    values = dict(parser.items(SECTION))
    unknown = sorted(set(values) - set(KEYS))
    if unknown:
        raise ConfigError(f"{source}: [{SECTION}] unknown key(s) {unknown}; known: {list(KEYS)}")
    return values


def _networks(
    values: dict[str, str], where: Callable[[str], str]
) -> tuple[tuple[Address, Address], tuple[Address, Address], Address]:
    """Both members' storage and production addresses, and the switch's."""
    for key in ("stor_addrs", "prod_addrs", "ping_addr"):
        if not values.get(key, "").strip():
            raise ConfigError(f"{where(key)}: missing (required)")
    stor = _pair(where("stor_addrs"), values["stor_addrs"])
    prod = _pair(where("prod_addrs"), values["prod_addrs"])
    if set(stor) & set(prod):
        raise ConfigError(f"{where('prod_addrs')}: must differ from the storage addresses")
    ping = _address(where("ping_addr"), values["ping_addr"].strip())
    if ping in stor or ping in prod:
        raise ConfigError(f"{where('ping_addr')}: must be the switch, not a member's address")
    return stor, prod, ping


def _rules(values: dict[str, str], where: Callable[[str], str]) -> Rules:
    """Priorities and timing of the decision core, checked against each other."""
    base = _integer(where("base_priority"), values.get("base_priority", "100"), 1, 65535)
    penalty = _integer(where("priority_penalty"), values.get("priority_penalty", "10"), 1, 65535)
    if base - 9 * penalty - 3 < 0:
        raise ConfigError(
            f"{where('priority_penalty')}: base_priority - 9 * priority_penalty - 3 must be >= 0 "
            f"(got {base} - 9 * {penalty} - 3)"
        )
    interval = _seconds(where("interval"), values.get("interval", "1"))
    if interval > MAX_INTERVAL:
        raise ConfigError(f"{where('interval')}: {interval} s is more than {MAX_INTERVAL} s")
    dead_time = _seconds(where("dead_time"), values.get("dead_time", "3"))
    if dead_time < 2 * interval:
        raise ConfigError(
            f"{where('dead_time')}: {dead_time} s must be at least twice the interval "
            f"({interval} s), or one lost heartbeat would count as a dead peer"
        )
    init_dead = _seconds(where("init_dead"), values.get("init_dead", "60"))
    if init_dead < dead_time:
        raise ConfigError(
            f"{where('init_dead')}: {init_dead} s must be at least the dead time ({dead_time} s)"
        )
    return Rules(base, penalty, interval, dead_time, init_dead)


def _witness(values: dict[str, str], where: Callable[[str], str]) -> tuple[str, int] | None:
    text = values.get("witness_addr", "").strip()
    port = _integer(where("witness_port"), values.get("witness_port", "694"), 1, 65535)
    return None if not text else (str(_address(where("witness_addr"), text)), port)


def _fence(values: dict[str, str], where: Callable[[str], str]) -> tuple[Device | None, ...]:
    devices = []
    for key in ("fence1", "fence2"):
        try:
            devices.append(parse_device(values.get(key, "")))
        except FenceConfigError as exc:
            raise ConfigError(f"{where(key)}: {exc}") from None
    return tuple(devices)


def _members(where: str, text: str) -> tuple[str, str] | None:
    words = text.split()
    if not words:
        return None
    if len(words) != 2 or words[0] == words[1]:
        raise ConfigError(f"{where}: give both members' names in cluster order, got {text!r}")
    try:
        first, second = (names.validate_member_name(w) for w in words)
    except ValueError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    return first, second


def parse(text: str, source: Path) -> Config:
    """Parse and validate the text of a config file (without touching the secret file)."""
    values = _section(text, source)

    def where(key: str) -> str:
        return f"{source}: [{SECTION}] {key}"

    stor, prod, ping = _networks(values, where)
    secret = _absolute(where("secret_file"), values.get("secret_file", DEFAULT_SECRET_FILE))
    peer_silent = values.get("peer_silent", "takeover").strip()
    if peer_silent not in PEER_SILENT:
        raise ConfigError(f"{where('peer_silent')}: {peer_silent!r} is not one of {PEER_SILENT}")
    drbdadm = values.get("drbdadm", "drbdadm").strip()
    if not drbdadm or any(c.isspace() for c in drbdadm):
        raise ConfigError(f"{where('drbdadm')}: one program name or path, got {drbdadm!r}")
    return Config(
        stor_addrs=stor,
        prod_addrs=prod,
        ping_addr=ping,
        port=_integer(where("port"), values.get("port", "694"), 1, 65535),
        secret_file=secret,
        rules=_rules(values, where),
        action=_action(where("action"), values.get("action", DEFAULT_ACTION)),
        source=source,
        fence_timeout=_seconds(where("fence_timeout"), values.get("fence_timeout", "5")),
        fence_patience=_seconds(where("fence_patience"), values.get("fence_patience", "60")),
        peer_silent=peer_silent,
        drbdadm=drbdadm,
        witness=_witness(values, where),
        fence=_fence(values, where),  # type: ignore[arg-type]
        fence_secret_file=_absolute(
            where("fence_secret_file"),
            values.get("fence_secret_file", DEFAULT_FENCE_SECRET_FILE),
        ),
        members=_members(where("members"), values.get("members", "")),
        placement_file=_absolute(
            where("placement_file"), values.get("placement_file", paths.PLACEMENT_FILE)
        ),
    )


def load(path: Path) -> Config:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    return parse(text, path)


def read_secret(path: Path) -> bytes:
    """The shared secret; refuses a file others may read or write, or one owned by someone else."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot open the secret file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        info = os.fstat(handle.fileno())
        if not stat.S_ISREG(info.st_mode):
            raise ConfigError(f"{path}: the secret file must be a regular file")
        if info.st_mode & 0o077:
            raise ConfigError(
                f"{path}: mode {stat.S_IMODE(info.st_mode):04o} lets others read it; "
                f"run: chmod 0600 {path}"
            )
        if info.st_uid != os.geteuid():
            raise ConfigError(f"{path}: owned by uid {info.st_uid}, not by this daemon's user")
        secret = handle.read().strip()
    if len(secret) < MIN_SECRET_BYTES:
        raise ConfigError(f"{path}: the secret is shorter than {MIN_SECRET_BYTES} bytes")
    return secret
