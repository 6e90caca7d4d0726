"""A ``tls://`` bus URL means TLS or no connection.

nats-py takes ``tls://`` only as a wish: it upgrades the connection when the
server's INFO says ``tls_required``, and otherwise goes on in plaintext, the
URL's user and password included in its CONNECT. A replica pointed at
``tls://user:pass@host`` whose server (or whatever answers on that port) does
not do TLS so sent the password in the clear. ``TlsOnlyClient`` refuses such
a server at the point where nats-py would write CONNECT, before anything is
sent: nats-py treats the refusal as a failed attempt (its ``error_cb`` hears
it, and it tries again, at the first connection as at every reconnection),
so a server reconfigured with TLS is reached once it is.

Not ``tls_handshake_first``: nats-server reads a TLS handshake first only from
2.10.4, and only when configured so; 2.9 servers send INFO in plaintext first,
and a client that starts with its handshake never reaches them.
"""

from __future__ import annotations

import nats.errors
from nats.aio.client import Client


class PlaintextRefused(nats.errors.Error):
    """The server at a ``tls://`` URL does not require TLS: the connection is
    closed before the client sends anything (its credentials included)."""

    def __init__(self, address: str) -> None:
        super().__init__()
        self.address = address
        """``host:port`` of the server that answered (no credentials)."""

    def __str__(self) -> str:
        return (f"the NATS server at {self.address} does not do TLS (its INFO has no tls_required), but the bus "
                f"URL says tls://: not connecting, so that no credential goes over the network in plaintext")


class TlsOnlyClient(Client):
    """nats-py's client, refusing to go on in plaintext with a server reached
    by a ``tls://`` URL (see the module docstring)."""

    def _connect_command(self) -> bytes:
        # nats-py builds CONNECT right after it read the server's INFO and,
        # when that INFO said ``tls_required``, upgraded the connection
        # (and only then); raising here sends nothing at all.
        server = self._current_server
        if server is not None and server.uri.scheme == "tls" and not self._server_info.get("tls_required"):
            raise PlaintextRefused(f"{server.uri.hostname}:{server.uri.port}")
        return super()._connect_command()
