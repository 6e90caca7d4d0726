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
visits it, and with ``server.tune_interpreter``'s thresholds a stream that
lived a little while is in a generation visited rarely.

``BoundedWSStream`` ends the stream as soon as a message is over the limit: the
buffer is dropped and the stream closed, which closes the connection (HTTP/1.1)
or the stream (HTTP/2), so nothing more is read. What is left in the cycle is
small, like that of any closed WebSocket.

Two more holes of the same stream are closed here:

* permessage-deflate is declined. Hypercorn accepts it whenever a client
  offers it, and wsproto inflates each read (64 KiB) in one call before any
  limit is looked at: 0.5 MB of compressed zeros (512 MiB inflated) added
  500 MiB to Hypercorn's buffer, and still took the server from 54 to 247 MiB
  (64 MiB of it kept) once the limit held. Without it a message costs what
  it weighs on the wire. (Compression also cost CPU per client for every
  broadcast, whose bytes are encoded once for all clients.)
* Frames that arrive before the handshake is answered: Hypercorn answers
  400 and ignores the connection from then on, but the application was
  already started and was never told the connection ended (its handler and
  client actor stayed for good, counted against ``websocket.max_clients``);
  and if the application had begun to refuse the handshake with its own
  HTTP answer, the second answer raised in h11 and the error stopped the
  whole server (three such requests to ``/ws/user/x`` without a token did it).
  Now the stream ends and the application is told.
* A handshake Hypercorn refuses itself (no ``Sec-WebSocket-Key``, another
  version, HTTP/1.0: 400): it answered with ``connection: close`` and then
  never closed the connection, which counted for good against its address's
  connections (20 such requests locked an address out at
  ``--max-connections-per-address 20``). Now the stream ends, and the answer
  carries the JSON error every other refusal does.

A closed stream also leaves no reference cycle behind: wsproto's
``FrameProtocol`` keeps its frame parser as a generator whose frame holds the
protocol (``self._parse_more = self._parse_more_gen()``), so each protocol,
with its buffers, waited for the cyclic collector's oldest generation (where a
connection that lived a while is). Scattered over memory allocated while the
clients were connected, they kept Python's allocator from giving those arenas
back (at 2,000 clients gone, 34 MiB). The parser is closed once the stream is
over, and after each frame ``wire_frame`` builds.

And one cost is taken off the send path: a text message sent to many clients
(``trioscope.domain.live.SharedFrame``: a live view's diffs and first view) is
framed once (``wire_frame``) and every client is handed the same frame bytes;
a large view's first view comes framed already (``PreFramed``).
Hypercorn would encode and copy it per client (wsproto makes four copies of
the payload per send), which for the first view of a 1,000-host view was
0.9 MB of copying per connecting client, held until that client had read it.
"""

from __future__ import annotations

import time

import hypercorn.protocol.h2
import hypercorn.protocol.h11
from hypercorn.protocol.events import Body, Data, EndBody, Event, Request, Response, StreamClosed
from hypercorn.protocol.ws_stream import ASGIWebsocketState, WSStream
from hypercorn.typing import ASGISendEvent, WebsocketAcceptEvent
from wsproto.connection import ConnectionState
from wsproto.frame_protocol import CloseReason, FrameProtocol

from trioscope.domain.live import PreFramed, SharedFrame, text_frame_header

from ._access_log import headers_below
from ._errors import error_wire


class BoundedWSStream(WSStream):
    """A ``WSStream`` that closes its connection once a message is over
    ``config.websocket_max_message_size`` instead of reading on, takes no
    compressed messages, and ends the application when it refuses frames
    sent before the handshake."""

    async def handle(self, event: Event) -> None:
        if isinstance(event, (Body, Data)) and not self.closed and not self.handshake.accepted:
            await self._refuse_early_frames()
        else:
            await super().handle(event)
            if isinstance(event, Request) and self.closed and self.app_put is None:
                await self.send(StreamClosed(stream_id=self.stream_id))  # refused before the application ran
        if isinstance(event, StreamClosed) and hasattr(self, "connection"):
            _close_parser(self.connection._proto)  # the cycle (the module's docstring)

    async def _refuse_early_frames(self) -> None:
        """Frames before the handshake was answered (a client that did not
        wait for the 101): end the stream, and the application with it.

        Hypercorn answers 400 here even when the application has started its
        own HTTP answer (a refused handshake: 401, 503...); h11 then raises,
        and the error ended the whole server. And it never tells the
        application, whose handler then waited for good."""
        if self.state is ASGIWebsocketState.HANDSHAKE and not hasattr(self, "response"):
            await self._send_error_response(400)
        # else the application's answer is on its way, and is cut short.
        self.closed = True
        if self.app_put is not None:
            await self.app_put({"type": "websocket.disconnect", "code": CloseReason.PROTOCOL_ERROR.value})
        await self.send(StreamClosed(stream_id=self.stream_id))

    async def _send_error_response(self, status_code: int) -> None:
        """Hypercorn's own refusals (a handshake it finds invalid, a close
        before the accept), with the JSON error body of every other answer."""
        code, message = _REFUSALS.get(status_code, ("websocket_refused", "the WebSocket was refused"))
        body, content = error_wire(code, message)
        await self.send(Response(stream_id=self.stream_id, status_code=status_code,
                                 headers=[*content, *headers_below(self.scope), (b"connection", b"close")]))
        await self.send(Body(stream_id=self.stream_id, data=body))
        await self.send(EndBody(stream_id=self.stream_id))
        await self.config.log.access(self.scope, {"status": status_code, "headers": []}, time.time() - self.start_time)

    async def app_send(self, message: ASGISendEvent | None) -> None:
        wire = _framed(message) if self.state == ASGIWebsocketState.CONNECTED and not self.closed else None
        if wire is None:
            await super().app_send(message)
        elif self.connection.state is ConnectionState.OPEN:  # else wsproto refuses, and Hypercorn ignores it
            await self.send(Data(stream_id=self.stream_id, data=wire))

    async def _accept(self, message: WebsocketAcceptEvent) -> None:
        self.handshake.extensions = None  # decline permessage-deflate, whatever was offered
        await super()._accept(message)

    async def _handle_events(self) -> None:
        await super()._handle_events()
        # Hypercorn counts a frame into the buffer before it checks the limit,
        # so a buffer over it means the limit was hit and the 1009 close sent.
        if self.buffer.length > self.buffer.max_length:
            self.buffer.clear()
            await self.send(StreamClosed(stream_id=self.stream_id))


_REFUSALS = {
    400: ("invalid_websocket_handshake", "not a WebSocket handshake this server takes: HTTP/1.1 with Upgrade: "
          "websocket, Connection: Upgrade, a Sec-WebSocket-Key and Sec-WebSocket-Version: 13 (RFC 6455)"),
    403: ("websocket_refused", "the WebSocket was refused before it was accepted"),
    404: ("not_found", "no such host name here"),
    500: ("internal_error", "the WebSocket's handler ended before it answered the handshake"),
}


def _framed(message: ASGISendEvent | None) -> bytes | None:
    """The frame bytes of a message framed here or before (a ``SharedFrame``,
    or a ``PreFramed`` that Quart hands on as bytes, being no ``str``); None
    for any other message, which Hypercorn sends."""
    if message is None or message["type"] != "websocket.send":
        return None
    framed: object = message.get("bytes")  # typed bytes, which a PreFramed is not
    text = message.get("text")
    if isinstance(framed, PreFramed):
        return framed.wire
    return wire_frame(text) if isinstance(text, SharedFrame) else None


def wire_frame(text: SharedFrame) -> bytes:
    """The whole WebSocket frame of ``text`` (a server's: unmasked, one
    frame, no extension, as every stream here is), framed on first use and
    kept on it: one frame for every client it is sent to. Its encoding
    (``SharedFrame.encoded``) is copied once, after the header: wsproto's
    ``send_data`` encodes and copies a payload five times over (0.45 s for a
    100 MB first view, all on the event loop)."""
    wire = text.wire
    if wire is None:
        payload = text.encoded if text.encoded is not None else text.encode()
        wire = text.wire = b"".join((text_frame_header(len(payload)), payload))
        text.encoded = None
    return wire


def _close_parser(protocol: FrameProtocol) -> None:
    """End ``protocol``'s frame parser, a generator holding ``protocol``: the
    protocol is then freed as soon as nothing else refers to it. Nothing is
    parsed after this (``received_frames`` yields nothing)."""
    protocol._parse_more.close()


def install_bounded_websockets() -> None:
    """Make Hypercorn's HTTP/1.1 and HTTP/2 protocols use ``BoundedWSStream``
    for every WebSocket (each names ``WSStream`` in its own module, and no
    setting chooses the class). Idempotent; HTTP/3 is not served."""
    hypercorn.protocol.h11.WSStream = BoundedWSStream  # type: ignore[attr-defined]  # replacing a name the module does not export, on purpose
    hypercorn.protocol.h2.WSStream = BoundedWSStream  # type: ignore[attr-defined]  # (see above)
