"""Which names the server answers to in ``Host`` (``server.allowed_hosts``):
the defence against DNS rebinding.

A web page the operator opens can have its own name pointed at the server's
address after it loaded (DNS rebinding): its scripts then read the server as
their own origin (same-origin requests, and WebSockets whose ``Origin`` is the
``Host`` they were sent to), whatever address the server listens on, a
loopback one included. What tells it apart is the name it asks for: a name
the server is not known by. So a request naming any other host than an IP
address, ``localhost`` or one of ``server.allowed_hosts`` is refused (421),
before anything else reads it. Without a list, a server listening on a
loopback address answers those alone (whoever else can reach it is a page
rebinding a name), and one listening elsewhere any name (it has names of its
own that only its operator knows: list them to close it too). Programs that
send no ``Host`` (HTTP/1.0) are not concerned. Without a list, neither are
connections from a trusted proxy (``server.trusted_proxies``), which passes
on the name a browser sent as it sent it, a name this server cannot know; with
one, they are checked too: nginx's first ``server`` block on a port answers
any name (its default server), and the proxy's own machine is trusted, so the
exemption let a rebound name through the proxy, and any page on that machine
straight to the server.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Sequence

import attrs

from ._access_log import ROUTE_KEY, App, Receive, Scope, Send
from ._errors import send_refusal
from ._forwarded import TrustedProxies

log = logging.getLogger(__name__)

MISDIRECTED = 421
"""RFC 9110: the server is not able to answer for this URI's authority."""


@attrs.frozen
class HostPolicy:
    """The names answered (pure): exact names and, with a leading dot, domains."""

    names: frozenset[str] = frozenset()
    domains: tuple[str, ...] = ()
    any_name: bool = True
    listed: bool = False
    """The names were listed (``server.allowed_hosts``), not the loopback default:
    what a trusted proxy passes on is checked too."""

    @classmethod
    def parse(cls, allowed: Sequence[str], listening_on: str) -> HostPolicy:
        """From checked configuration and the address the server listens on."""
        if "*" in allowed or (not allowed and not loopback(listening_on)):
            return cls()
        return cls(frozenset(n for n in allowed if not n.startswith(".")),
                   tuple(n for n in allowed if n.startswith(".")), any_name=False, listed=bool(allowed))

    def allows(self, host: str) -> bool:
        """Whether ``host`` (a ``Host`` header: a name or address, maybe with a port) is answered."""
        if self.any_name:
            return True
        name = _without_port(host).lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost") or name in self.names:
            return True
        if any(name.endswith(domain) or name == domain[1:] for domain in self.domains):
            return True
        try:
            ipaddress.ip_address(name.strip("[]"))
        except ValueError:
            return False
        return True  # an address: no name to rebind


def _without_port(host: str) -> str:
    if host.startswith("["):
        return host.partition("]")[0] + "]"
    return host.rpartition(":")[0] if host.count(":") == 1 else host


def loopback(address: str) -> bool:
    """Whether listening on ``address`` (``server.host``) is listening on this
    machine only: ``localhost`` or a loopback address (a host name may resolve to anything)."""
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address.strip("[]")).is_loopback
    except ValueError:
        return False


class HostCheck:
    """ASGI middleware refusing requests whose ``Host`` a ``HostPolicy`` does not answer."""

    def __init__(self, app: App, policy: HostPolicy, proxies: TrustedProxies) -> None:
        self.app = app
        self.policy = policy
        self.proxies = proxies
        self._proxy_refused_said = False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self.policy.any_name or scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        host = next((bytes(v).decode("latin-1") for k, v in scope.get("headers", ()) if bytes(k).lower() == b"host"),
                    None)
        if host is None or self.policy.allows(host):
            await self.app(scope, receive, send)
            return
        if self.proxies.trusts_peer(str((scope.get("client") or ("",))[0])):
            if not self.policy.listed:
                await self.app(scope, receive, send)
                return
            if not self._proxy_refused_said:
                # A proxy that names its upstream (nginx's default Host is $proxy_host) is refused on
                # every request once names are listed: said once, so that it is found at once.
                self._proxy_refused_said = True
                log.warning("a trusted proxy asked for %r, which is none of --allowed-hosts: refused 421 (have it "
                            "pass the Host the browser sent, nginx's proxy_set_header Host $http_host, or list "
                            "the name)", host[:200], extra={"event": "proxy_host_not_allowed"})
        scope[ROUTE_KEY] = "(Host refused)"
        await send_refusal(scope, send, MISDIRECTED, "host_not_allowed", (
            f"this server does not answer for the name {host[:200]!r}; ask for it by an IP address or localhost, "
            "or have its operator add the name to server.allowed_hosts (--allowed-hosts)"))
