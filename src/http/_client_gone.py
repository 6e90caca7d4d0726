"""A client that has gone ends its handler by cancellation alone, whichever
Quart is installed: Quart 0.22 with Quart-Trio 0.12 (Python 3.11 and 3.12),
or Quart 0.23 with Quart-Trio 0.13, which need Python 3.13 and so are what
pip installs there.

Quart-Trio ends the handler of a client that disconnected by cancelling it.
With 0.22 that cancellation was all a handler met: a send after the client
had gone was dropped by Hypercorn. With 0.23, Quart-Trio first shuts the
socket's message queue and the request's body, in the same step as it
cancels, so a handler waiting on ``websocket.receive()`` or on a body's next
chunk is woken by Quart's ``ClientDisconnectedError`` before the
cancellation reaches it, and a send raises it too. It went to the app's
error handler as an unexpected error: an incident logged (a traceback) for
every client that left (for a request, its 500 answer raised it again,
which Hypercorn logged too), and the error, handled rather than raised,
kept the handler's frames, and through them the whole connection, in
reference cycles that only the cyclic collector frees, which the server
runs rarely (tests/http/test_closed_connections.py).

Here that error is dropped where Quart raises it: a receive waits for the
cancellation Quart-Trio has already made (it comes at once), a send is
dropped as Hypercorn drops one after the close (the cancellation ends the
handler at its next checkpoint). Dropped in its ``except`` block, nothing of
it outlives it."""

from __future__ import annotations

from typing import cast

import quart.wrappers.base
import trio
from quart_trio.wrappers import TrioWebsocket
from quart_trio.wrappers.request import TrioBody, TrioRequest


class _NeverRaised(Exception):
    """Stands for Quart's ``ClientDisconnectedError`` where Quart has none (0.22)."""


CLIENT_GONE = cast("type[Exception]", getattr(quart.wrappers.base, "ClientDisconnectedError", _NeverRaised))
"""What Quart 0.23 raises to a handler whose client has gone (0.22: nothing)."""


class Websocket(TrioWebsocket):
    """Quart-Trio's WebSocket, whose client's leaving only cancels its handler."""

    async def receive(self) -> str | bytes:
        try:
            return await super().receive()
        except CLIENT_GONE:
            pass
        await trio.sleep_forever()  # nothing more comes: Quart-Trio's cancellation, already made, ends it

    async def send(self, data: str | bytes) -> None:
        try:
            if isinstance(data, str):  # one type at a time: Quart-Trio 0.12 types it AnyStr
                await super().send(data)
            else:
                await super().send(data)
        except CLIENT_GONE:
            pass  # dropped, as Hypercorn drops a send after the close


class _Body(TrioBody):
    """Quart-Trio's request body, whose client's leaving only cancels the
    handler reading it (``async for chunk in request.body``)."""

    async def __anext__(self) -> bytes:
        try:
            return await super().__anext__()
        except CLIENT_GONE:
            pass
        await trio.sleep_forever()  # the rest never comes: Quart-Trio's cancellation, already made, ends it


class Request(TrioRequest):
    """Quart-Trio's request, with a body that ends as ``_Body`` says."""

    body_class = _Body
