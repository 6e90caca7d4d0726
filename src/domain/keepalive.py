"""Whether the peer of a socket the server pings is still there: the live
views', the user events' and the agents' sockets alike.

The server sends ``{"type": "ping"}`` every ``websocket.ping_interval``. A
peer that has answered one with ``{"type": "pong"}`` speaks that protocol:
two pings in a row without a pong or any other message from it, and it is
taken to be gone (the socket closes, 1008). A peer that never answered one is
not held to it: the seeds' clients do not answer (their JavaScript client
sends one ``ping`` when it opens, then only reads; their agents send
``heartbeat`` messages), and closing them every third ping interval cut the
seed's own client off after 90 s. Such a peer is judged by what the socket
shows anyway: a socket that stops taking the server's frames is closed as
too slow, one whose agent does not acknowledge a command as not reaching it,
and a peer gone without a word is let go once what the server sent it
(its pings, at least) went unacknowledged for ``server.write_timeout``
(``TCP_USER_TIMEOUT`` on every connection: ``http._tcp_server``)."""

from __future__ import annotations

import attrs
import orjson

UNANSWERED = 2
"""Pings in a row without a word from a peer that answers pings, after which it is taken to be gone."""
GONE = "no pong to two pings"
"""The reason a socket whose peer is taken to be gone is closed with (1008)."""


PING = '{"type":"ping"}'
"""The ping the server sends an agent's socket and a user's events socket (a
live view's carries a ``payload``: ``domain.live.PING``)."""
PONG = '{"type":"pong"}'
"""The answer to a client's ping on the user events' socket."""
MAX_PING_BYTES = 256


def is_ping(data: str | bytes) -> bool:
    """Whether a client's message is ``{"type": "ping"}`` (anything else in it
    ignored); one longer than ``MAX_PING_BYTES`` is not read as one."""
    return _typed(data) == "ping"


def is_pong(data: str | bytes) -> bool:
    """Whether a client's message is ``{"type": "pong"}``, as ``is_ping`` reads a ping."""
    return _typed(data) == "pong"


def _typed(data: str | bytes) -> object:
    if len(data) > MAX_PING_BYTES:
        return None
    try:
        message = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    return message.get("type") if isinstance(message, dict) else None


@attrs.define
class Keepalive:
    unanswered: int = 0
    """Pings sent since the peer's last message."""
    answers: bool = False
    """The peer answered a ping once: it is held to answering them."""

    def heard(self) -> None:
        """Any message from the peer: it is there."""
        self.unanswered = 0

    def pong(self) -> None:
        self.answers = True
        self.unanswered = 0

    def ping(self) -> bool:
        """A ping is due: True if it is to be sent, False if the peer is taken
        to be gone (it answers pings, and ``UNANSWERED`` went unanswered)."""
        if self.answers and self.unanswered >= UNANSWERED:
            return False
        self.unanswered += 1
        return True
