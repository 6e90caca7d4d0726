"""A port nothing listens on now, for a server or a client a test starts (never
a fixed one: tests run side by side, and never 8080, the server's default)."""

from __future__ import annotations

import socket


def free_port(address: str = "127.0.0.1") -> int:
    """A port free on ``address`` when asked (``0.0.0.0``: on every address, as
    an engine publishing a container's port takes it): bound and let go, so
    another process may take it first, which a test then sees fail to listen."""
    with socket.socket(socket.AF_INET6 if ":" in address else socket.AF_INET) as taken:
        taken.bind((address, 0))
        return int(taken.getsockname()[1])
