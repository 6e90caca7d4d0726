"""Whether a pinged socket's peer is still there (``domain.keepalive``)."""

from __future__ import annotations

from trioscope.domain.keepalive import Keepalive


def test_a_peer_that_never_answered_is_pinged_on_and_never_taken_to_be_gone() -> None:
    keepalive = Keepalive()
    assert all(keepalive.ping() for _ in range(100))


def test_a_peer_that_answered_once_is_gone_after_two_pings_without_a_word() -> None:
    keepalive = Keepalive()
    keepalive.pong()
    assert keepalive.ping() and keepalive.ping()
    assert not keepalive.ping()


def test_any_message_counts_as_an_answer() -> None:
    keepalive = Keepalive()
    keepalive.pong()
    for _ in range(10):
        assert keepalive.ping() and keepalive.ping()
        keepalive.heard()  # a heartbeat, a subscribe: the peer is there
