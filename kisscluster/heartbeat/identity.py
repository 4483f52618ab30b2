"""Which cluster member this host is: the one whose storage (else production) address is
configured here; and the socket options that bind to an address before it is up."""

import socket
from dataclasses import dataclass

from kisscluster.heartbeat.config import Address, Config, ConfigError

IP_FREEBIND = 15  # <linux/in.h>: bind to an address not (yet) configured on this host
IPV6_FREEBIND = 78  # <linux/in6.h>


@dataclass(frozen=True)
class Identity:
    """Which member this host is, and the addresses on each net."""

    index: int  # position in the config's address lists (cluster order)
    own: dict[str, Address]
    peer: dict[str, Address]


def _is_local(address: Address) -> bool:
    family = socket.AF_INET if address.version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((str(address), 0))
        except OSError:
            return False
    return True


def identify(config: Config) -> Identity:
    """This node is the member whose storage (else production) address is configured here."""
    for key, pair in (("stor_addrs", config.stor_addrs), ("prod_addrs", config.prod_addrs)):
        local = [index for index, address in enumerate(pair) if _is_local(address)]
        if len(local) == 2:
            raise ConfigError(f"{config.source}: both {key} ({pair[0]}, {pair[1]}) are local")
        if local:
            index = local[0]
            return Identity(
                index=index,
                own={"stor": config.stor_addrs[index], "prod": config.prod_addrs[index]},
                peer={"stor": config.stor_addrs[1 - index], "prod": config.prod_addrs[1 - index]},
            )
    raise ConfigError(
        f"{config.source}: none of stor_addrs ({config.stor_addrs[0]} {config.stor_addrs[1]}) "
        f"or prod_addrs is configured on this host: is this a cluster member, is the net up?"
    )
