"""A connection whose peer went away without a word is ended by the kernel
once what was sent to it stays unacknowledged for ``server.write_timeout``."""

from __future__ import annotations

import socket

import pytest

from trioscope.http._tcp_server import _give_up_on_silent_peers


@pytest.mark.skipif(not hasattr(socket, "TCP_USER_TIMEOUT"), reason="TCP_USER_TIMEOUT is Linux's")
def test_an_accepted_connection_gives_up_on_a_silent_peer_after_the_write_timeout() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()):
        accepted, _ = server.accept()
        with accepted:
            _give_up_on_silent_peers(accepted, 30.0)
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT) == 30_000


def test_a_unix_socket_is_left_as_it_is() -> None:
    left, right = socket.socketpair()
    with left, right:
        _give_up_on_silent_peers(left, 30.0)  # no TCP option there: nothing raised
