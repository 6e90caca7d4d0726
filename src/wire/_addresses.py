"""How the addresses and protocols in a report are read: which are loopback,
which are wildcards, and one spelling per address.

Here and not in the topology because the memory budget counts the addresses a
report's listening sockets are reachable on (``MemoryBudget``), and the probe
fits its reports to that count: both sides read addresses by these rules."""

from __future__ import annotations

from functools import lru_cache
from ipaddress import IPv6Address, ip_address

WILDCARDS = frozenset({"0.0.0.0", "::", "*", ""})
"""A socket bound to one of these listens on every address of its host or container."""


def is_loopback(address: str) -> bool:
    """Whether ``address`` is reachable only from its own host."""
    # A string test, not ipaddress: this runs for every connection of every report.
    return address.startswith(("127.", "::ffff:127.")) or address in ("::1", "localhost")


def normal_address(address: str) -> str:
    """One spelling per address: IPv4 as it is, IPv4-mapped IPv6
    (``::ffff:10.0.0.1``) as the IPv4 address, other IPv6 in its compressed
    form (``2001:0db8:0000::0002`` is ``2001:db8::2``), as ``ipaddress`` writes
    it; text that is no address (``*``, a host name) as it is."""
    # This runs for every connection of every report: IPv4 (no colon) and the
    # usual mapped form are sliced by hand, the rest parsed once per spelling.
    if ":" not in address:
        return address
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return _normal_ipv6(address)


_IPV6_SPELLINGS = 4096
"""Distinct IPv6 spellings whose normal form is remembered: a host's peers
repeat from report to report; a spelling beyond them is parsed again."""


@lru_cache(maxsize=_IPV6_SPELLINGS)
def _normal_ipv6(address: str) -> str:
    try:
        parsed = ip_address(address)
    except ValueError:
        return address
    if isinstance(parsed, IPv6Address) and parsed.ipv4_mapped is not None:
        return str(parsed.ipv4_mapped)
    return str(parsed)


def protocol_family(protocol: str) -> str:
    """``tcp`` or ``udp``: an IPv6 socket (``tcp6``) that listens on ``::`` also accepts IPv4."""
    return "udp" if protocol.startswith("udp") else "tcp"


def is_listener(protocol: str, state: str, remote_address: str) -> bool:
    """A socket that takes connections: TCP in ``LISTEN``, or UDP bound with no peer."""
    return state.upper() == "LISTEN" or (protocol.startswith("udp") and not remote_address)


def is_connected(protocol: str, state: str, remote_address: str) -> bool:
    """A socket with a peer: an ``ESTABLISHED`` TCP connection, or a UDP socket
    connected to one (``connect()``; it has no state, the probe says "")."""
    return bool(remote_address) and (protocol.startswith("udp") or state.upper() == "ESTABLISHED")


def socket_namespace(netns: int | None, own: int | None) -> int | None:
    """The network namespace of a report's socket: its own ``netns`` (the
    wire's ``Connection.netns``), else the probe's (``NetworkInfo.netns``).
    None where the report says none (a probe from before they were sent):
    then no socket's is known, a ``netns`` without the probe's own included
    (it cannot be told from the host's)."""
    return None if own is None else netns or own


class ListeningPorts:
    """The (protocol family, port)s a report's listeners hold, and on which
    addresses: whether a connected socket is the server side of a connection
    (its client reports the edge). By port alone, a client that happened to
    have the port of a listener on another address as its own was dropped;
    by port and address alone, one that had the port of a listener in another
    network namespace (a container's, on its own 0.0.0.0): so each is keyed by
    its namespace too, where the report says it (``socket_namespace``)."""

    def __init__(self) -> None:
        self._addresses: dict[tuple[str, int, int | None], set[str]] = {}

    def add(self, protocol: str, port: int, local_address: str, namespace: int | None = None) -> None:
        key = (protocol_family(protocol), port, namespace)
        self._addresses.setdefault(key, set()).add(normal_address(local_address))

    def serves(self, protocol: str, port: int, local_address: str, namespace: int | None = None) -> bool:
        """Whether the connected socket at ``local_address:port`` (in
        ``namespace``) is one a listener accepted."""
        found = self._addresses.get((protocol_family(protocol), port, namespace))
        if found is None:
            return False
        return not found.isdisjoint(WILDCARDS) or normal_address(local_address) in found
