"""Who the client is behind reverse proxies: the address a trusted proxy says
it forwarded for, never what a client says of itself.

Each proxy appends the address it received the request from to the header
(``X-Forwarded-For: client, proxy1``; RFC 7239 ``Forwarded: for=client,
for=proxy1``). Read from the right, entries written by proxies we trust can
be believed; the first address that is not a trusted proxy is the client.
Everything left of it was written by the client, or by proxies nobody here
vouches for, and is ignored. A connection that does not come from a trusted
proxy is its own client, whatever headers it sends. Pure: no request, no I/O.
"""

from __future__ import annotations

import functools
import ipaddress
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
MAX_HOPS = 32
"""Entries read from the right at most: a longer chain is a client's invention."""


def _address(text: str) -> IPAddress | None:
    """An address as proxies write it: ``192.0.2.1``, ``192.0.2.1:4711``,
    ``[2001:db8::1]:4711`` or ``2001:db8::1``; None for ``unknown``,
    obfuscated ids (``_hidden``) and anything else. An IPv6 zone id
    (``fe80::1%eth0``) is left out: it names an interface of the host that
    wrote it, nothing of the client, and ``ipaddress`` takes any text there
    (spaces, ``=``, escape sequences), which the access and audit logs would
    keep as the client's address."""
    text = text.strip().strip('"')
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            # An IPv4 client or proxy as a dual-stack listener (``--host ::``)
            # sees it: ``::ffff:127.0.0.1`` is in no IPv4 network, so a proxy
            # listed as ``127.0.0.1/32`` was never trusted there.
            return address.ipv4_mapped
        if address.scope_id is not None:
            return ipaddress.IPv6Address(text.partition("%")[0])
    return address


_MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def _unmapped(network: IPNetwork) -> IPNetwork:
    """A network of IPv4-mapped addresses (``::ffff:10.0.0.0/104``) as the IPv4
    network it is: peers and hops are compared unmapped (``_address``), and
    such a network, the way round a dual-stack listener's mapped peers before,
    would have matched none of them."""
    if isinstance(network, ipaddress.IPv6Network) and network.subnet_of(_MAPPED):
        return ipaddress.IPv4Network((int(network.network_address) & 0xFFFFFFFF, network.prefixlen - 96))
    return network


@functools.lru_cache(maxsize=4096)
def _peer(peer: str) -> str:
    """The connection's peer as the logs, the audit and the limits name it:
    an IPv4 client of a dual-stack listener as IPv4 (``127.0.0.1``, not
    ``::ffff:127.0.0.1``), anything else as the server gives it."""
    address = _address(peer) if peer.startswith("::ffff:") else None
    return str(address) if isinstance(address, ipaddress.IPv4Address) else peer


IPV6_SOURCE_PREFIX = 64
"""Bits of an IPv6 address that name one client for per-address limits: a
host on one SLAAC link has 2^64 addresses to rotate through, and limits per
address would bound nothing (an ISP hands a customer a /64 or more)."""
_HOST_BITS = (1 << (128 - IPV6_SOURCE_PREFIX)) - 1
_NAT64 = (ipaddress.IPv6Network("64:ff9b::/96"), ipaddress.IPv6Network("64:ff9b:1::/48"))
"""RFC 6052's well-known prefix and RFC 8215's local-use one: an IPv4 client
reaching an IPv6-only server through NAT64 or SIIT, its address in the last 32
bits (a /96 translator prefix, the common layout; other layouts and
network-specific prefixes count as their /64)."""


@functools.lru_cache(maxsize=4096)
def source_of(address: str) -> str:
    """The client ``address`` counts as for per-address limits (rate budgets,
    sockets, first views, places among ``--max-agents``): an IPv6 address's
    /64 (``2001:db8:1:2::/64``); the IPv4 client inside an IPv4-mapped, NAT64,
    Teredo or 6to4 address (every IPv4 client of an IPv6-only server would
    otherwise be one); anything else itself. The audit and access logs keep
    the address itself."""
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address
    if isinstance(ip, ipaddress.IPv4Address):
        return address
    if ip.ipv4_mapped is not None:
        return str(ip.ipv4_mapped)
    if any(ip in prefix for prefix in _NAT64):
        return str(ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF))
    if ip.teredo is not None:
        return str(ip.teredo[1])
    if ip.sixtofour is not None:  # one IPv4 host's 2^16 /64s
        return str(ip.sixtofour)
    return f"{ipaddress.IPv6Address(int(ip) & ~_HOST_BITS)}/{IPV6_SOURCE_PREFIX}"


def forwarded_for(values: Iterable[str]) -> list[str]:
    """The ``for=`` values of RFC 7239 ``Forwarded`` header lines, in order
    (``Forwarded: for=192.0.2.60;proto=https, for="[2001:db8::1]"``)."""
    found = []
    for value in values:
        for element in value.split(","):
            for pair in element.split(";"):
                name, _, token = pair.partition("=")
                if name.strip().lower() == "for":
                    found.append(token.strip())
    return found


def x_forwarded_for(values: Iterable[str]) -> list[str]:
    """The entries of ``X-Forwarded-For`` header lines, in order."""
    return [entry.strip() for value in values for entry in value.split(",") if entry.strip()]


@attrs.frozen
class TrustedProxies:
    """The reverse proxies whose forwarded header is believed, and which header
    they set (``x-forwarded-for`` or ``forwarded``)."""

    networks: tuple[IPNetwork, ...] = ()
    header: str = "x-forwarded-for"

    @classmethod
    def parse(cls, networks: Sequence[str], header: str) -> TrustedProxies:
        """From checked configuration (``server.trusted_proxies``, ``server.forwarded_header``)."""
        return cls(tuple(_unmapped(ipaddress.ip_network(network, strict=False)) for network in networks), header)

    def trusts(self, address: IPAddress | None) -> bool:
        return address is not None and any(address in network for network in self.networks)

    def trusts_peer(self, peer: str) -> bool:
        """Whether the connection's peer (as the ASGI scope gives it) is a trusted proxy."""
        return bool(self.networks) and self.trusts(_address(peer))

    def client(self, peer: str, header_values: Iterable[str]) -> str:
        """The client's address.

        Args:
            peer: the address the connection comes from.
            header_values: the lines of the configured header, in order.

        Returns:
            ``peer`` unless it is a trusted proxy; else the rightmost forwarded
            address that is not a trusted proxy (the leftmost, when all are;
            the nearest trusted hop, when an entry is not an address).
        """
        if not self.networks or not self.trusts(_address(peer)):
            return peer
        entries = forwarded_for(header_values) if self.header == "forwarded" else x_forwarded_for(header_values)
        client = peer
        for entry in reversed(entries[-MAX_HOPS:]):
            address = _address(entry)
            if address is None:
                return client  # "unknown" or an obfuscated id: nothing further left is vouched for
            client = str(address)
            if not self.trusts(address):
                return client
        return client

    def client_of(self, scope: Mapping[str, Any]) -> str:
        """The client's address for an ASGI connection ``scope`` (HTTP or
        WebSocket): its peer, through the configured header only. The one
        reading of it: the access log (which sees the scope before Quart
        does) and the request handlers (limits, audit) must agree."""
        peer = _peer(str((scope.get("client") or ("unknown",))[0] or "unknown"))
        if not self.networks:
            return peer
        wanted = self.header.encode()
        return self.client(peer, [bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if k.lower() == wanted])
