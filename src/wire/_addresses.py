"""How the addresses and protocols in a report are read: which are loopback,
which are wildcards, and one spelling per IPv4 address.

Here and not in the topology because the memory budget counts the addresses a
report's listening sockets are reachable on (``MemoryBudget``), and the probe
fits its reports to that count: both sides read addresses by these rules."""

from __future__ import annotations

WILDCARDS = frozenset({"0.0.0.0", "::", "*", ""})
"""A socket bound to one of these listens on every address of its host or container."""


def is_loopback(address: str) -> bool:
    """Whether ``address`` is reachable only from its own host."""
    # A string test, not ipaddress: this runs for every connection of every report.
    return address.startswith(("127.", "::ffff:127.")) or address in ("::1", "localhost")


def normal_address(address: str) -> str:
    """IPv4-mapped IPv6 (``::ffff:10.0.0.1``) is the IPv4 address."""
    if address.startswith("::ffff:") and "." in address:
        return address[7:]
    return address


def protocol_family(protocol: str) -> str:
    """``tcp`` or ``udp``: an IPv6 socket (``tcp6``) that listens on ``::`` also accepts IPv4."""
    return "udp" if protocol.startswith("udp") else "tcp"
