"""Whether a pinged socket's peer is still there (``domain.keepalive``)."""

from __future__ import annotations

from trioscope.domain.keepalive import MAX_PING_BYTES, Keepalive, is_ping


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


def test_a_ping_is_a_small_json_object_of_type_ping() -> None:
    assert is_ping('{"type": "ping"}') and is_ping(b'{"type":"ping","at":1}')
    assert not is_ping('{"type": "pong"}') and not is_ping('["ping"]') and not is_ping("ping")
    assert not is_ping('{"type": "ping", "pad": "' + "x" * MAX_PING_BYTES + '"}')
