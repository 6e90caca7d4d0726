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
