"""What ``trioscope serve`` listens on: each address of ``server.host``.

An address (``127.0.0.1``, ``::``) is bound as given. A name is bound to each
address it resolves to, ``localhost`` (and ``*.localhost``) to both loopback
addresses, 127.0.0.1 and ::1, as RFC 6761 has it, whatever /etc/hosts says;
an IPv6 address only where IPv6 works on this machine. Hypercorn binds what
its text gives, so a name was bound to its first IPv4 address only: with
``--host localhost`` a client trying ::1 first (curl, browsers, the probe)
was refused, and the banner did not say which address was served.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from collections.abc import Iterable

import hypercorn
from hypercorn.config import Sockets

log = logging.getLogger(__name__)

LOOPBACK = ("127.0.0.1", "::1")
"""What ``localhost`` names (RFC 6761 §6.3), IPv4 first as its resolver gives it here."""


def is_address(host: str) -> bool:
    """Whether ``host`` is an IP address (``::1``, ``[::1]``, ``127.0.0.1``) rather than a name."""
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def is_localhost(host: str) -> bool:
    """``localhost`` or a name under it (RFC 6761: always this machine's loopback)."""
    name = host.lower().rstrip(".")
    return name == "localhost" or name.endswith(".localhost")


def to_bind(addresses: Iterable[str], *, ipv6: bool) -> tuple[list[str], list[str]]:
    """The addresses of a name to bind, each once in the resolver's order,
    and those left out: its IPv6 ones where IPv6 does not work (``ipv6``
    false), unless it has no other (then binding them says why it fails)."""
    unique = list(dict.fromkeys(addresses))
    if ipv6:
        return unique, []
    kept = [a for a in unique if ":" not in a]
    return (kept, [a for a in unique if ":" in a]) if kept else (unique, [])


def resolve(host: str) -> list[str]:
    """The addresses ``host`` stands for: itself if it is one, else what it
    resolves to (``LOOPBACK`` for ``localhost``).

    Raises:
        socket.gaierror: the name does not resolve.
    """
    if is_address(host):
        return [host.strip("[]")]
    if is_localhost(host):
        return list(LOOPBACK)
    found = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    return [str(sockaddr[0]) for family, _, _, _, sockaddr in found if family in (socket.AF_INET, socket.AF_INET6)]


def ipv6_works() -> bool:
    """Whether an IPv6 socket can be bound on this machine (its loopback, ::1):
    not where the kernel has no IPv6 or it is disabled."""
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as probe:
            probe.bind(("::1", 0))
    except OSError:
        return False
    return True


def bind_text(address: str, port: int) -> str:
    """``address`` and ``port`` as Hypercorn's ``bind`` takes them (``[::1]:8000``)."""
    return f"[{address}]:{port}" if ":" in address else f"{address}:{port}"


def _host_port(bind: str) -> tuple[str, int]:
    """A Hypercorn ``bind`` text (``host:port``, ``[v6]:port``) as its host and port."""
    host, _, port = bind.rpartition(":")
    return host.strip("[]"), int(port)


def listen(config: hypercorn.Config) -> Sockets:
    """Bind and listen on each address of each of ``config.bind``, all on one
    port (with port 0, the one the kernel gave the first), and set
    ``config.bind`` to what was bound.

    Raises:
        OSError: a name does not resolve, or an address is in use, not local,
            or not allowed (its message names the address when a name has several).
    """
    sockets = Sockets(secure_sockets=[], insecure_sockets=[], quic_sockets=[])
    bound: list[str] = []
    asked, config.bind = list(config.bind), []
    try:
        for bind in asked:
            host, port = _host_port(bind)
            addresses = resolve(host)
            ipv6 = ipv6_works() if any(":" in a for a in addresses) else True
            addresses, left_out = to_bind(addresses, ipv6=ipv6)
            if left_out:
                log.warning("server.host %s: not listening on its IPv6 address%s %s, IPv6 does not work on this "
                            "machine (no IPv6 socket can be bound to ::1); listening on %s", host,
                            "es" if len(left_out) > 1 else "", ", ".join(left_out), ", ".join(addresses),
                            extra={"event": "ipv6_left_out"})
            for address in addresses:
                config.bind = [bind_text(address, port)]
                try:
                    made = config.create_sockets()
                except OSError as exc:
                    if len(addresses) == 1:
                        raise
                    raise OSError(exc.errno, f"{exc.strerror or exc} ({bind_text(address, port)})") from exc
                sockets.secure_sockets.extend(made.secure_sockets)
                sockets.insecure_sockets.extend(made.insecure_sockets)
                sockets.quic_sockets.extend(made.quic_sockets)
                # Hypercorn's worker_serve listens only on sockets it creates itself; ours
                # (TLS ones included, which it wraps in trio.SSLListener) are listened on here.
                for sock in (*made.secure_sockets, *made.insecure_sockets):
                    sock.listen(config.backlog)
                    port = port or sock.getsockname()[1]
                bound.append(bind_text(address, port))
    except BaseException:
        close_sockets(sockets)
        config.bind = asked
        raise
    config.bind = bound
    return sockets


def close_sockets(sockets: Sockets) -> None:
    for sock in (*sockets.secure_sockets, *sockets.insecure_sockets, *sockets.quic_sockets):
        sock.close()
