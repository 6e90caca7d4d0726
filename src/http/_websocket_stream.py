"""Hypercorn's WebSocket stream, with what a client sends bounded.

Hypercorn 0.18 (``hypercorn/protocol/ws_stream.py``) assembles each message in a
buffer and checks ``websocket_max_message_size`` after appending a frame. Past
the limit it sends a close (1009) and stops handling that batch of frames, but
keeps reading the connection: every later frame of a message that never
finishes (continuation frames without FIN) is appended again, so the buffer
grew with whatever a client sent (400 MiB in under 3 s, unauthenticated, on
``/api/v1/ws``). And the buffer outlived the connection: a finished WebSocket
stream stays in a reference cycle with the frames of its cancelled ASGI task
(Quart-Trio ends a WebSocket handler by cancelling it, and the
``Cancelled`` group's traceback holds those frames) until the cyclic collector
visits it, and with ``server.tune_garbage_collector``'s thresholds a stream that
lived a little while is in a generation visited rarely.

``BoundedWSStream`` ends the stream as soon as a message is over the limit: the
buffer is dropped and the stream closed, which closes the connection (HTTP/1.1)
or the stream (HTTP/2), so nothing more is read. What is left in the cycle is
small, like that of any closed WebSocket.
"""

from __future__ import annotations

import hypercorn.protocol.h2
import hypercorn.protocol.h11
from hypercorn.protocol.events import StreamClosed
from hypercorn.protocol.ws_stream import WSStream


class BoundedWSStream(WSStream):
    """A ``WSStream`` that closes its connection once a message is over
    ``config.websocket_max_message_size`` instead of reading on."""

    async def _handle_events(self) -> None:
        await super()._handle_events()
        # Hypercorn counts a frame into the buffer before it checks the limit,
        # so a buffer over it means the limit was hit and the 1009 close sent.
        if self.buffer.length > self.buffer.max_length:
            self.buffer.clear()
            await self.send(StreamClosed(stream_id=self.stream_id))


def install_bounded_websockets() -> None:
    """Make Hypercorn's HTTP/1.1 and HTTP/2 protocols use ``BoundedWSStream``
    for every WebSocket (each names ``WSStream`` in its own module, and no
    setting chooses the class). Idempotent; HTTP/3 is not served."""
    hypercorn.protocol.h11.WSStream = BoundedWSStream  # type: ignore[misc]
    hypercorn.protocol.h2.WSStream = BoundedWSStream  # type: ignore[misc]
