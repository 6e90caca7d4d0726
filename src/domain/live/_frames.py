"""The text frames clients are sent, built once and shared by every client
they go to (``SharedFrame``, ``PreFramed``), and the small messages
(``ping``/``pong``, ``error``, ``report_update``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson


class PreFramed:
    """A large text frame (a big view's first view: the processes of 2,000
    hosts are 159 MB) made from its pieces straight into the WebSocket frame
    the transport sends (``wire``), never a ``str``: joining the pieces,
    decoding them to a ``str`` and framing its encoding took three passes
    over it on the event loop (~0.1 s each at that size) and held two copies
    while clients read it. Sent as it is to every client it is queued for;
    ``str()`` decodes it (for tests and logs)."""

    __slots__ = ("wire", "nbytes", "__weakref__")

    def __init__(self, pieces: list[bytes]) -> None:
        self.nbytes = sum(map(len, pieces))
        """Bytes of its text (its UTF-8: what orjson wrote)."""
        self.wire = b"".join([text_frame_header(self.nbytes), *pieces])
        """The whole WebSocket frame: its header, then its text."""

    def __len__(self) -> int:
        return self.nbytes

    def __str__(self) -> str:
        return str(memoryview(self.wire)[len(self.wire) - self.nbytes:], "utf-8")

    def __repr__(self) -> str:
        return f"<PreFramed: {self.nbytes} bytes of text>"


def text_frame_header(length: int) -> bytes:
    """The header of a server's whole text frame of ``length`` payload bytes
    (RFC 6455 5.2: FIN, opcode 1, no mask; the length in 7, 16 or 64 bits),
    as wsproto writes it (``tests/http/test_websocket_frames.py`` compares them)."""
    if length <= 125:
        return bytes((0x81, length))
    if length <= 0xFFFF:
        return bytes((0x81, 126)) + length.to_bytes(2, "big")
    return bytes((0x81, 127)) + length.to_bytes(8, "big")


Frame = str | PreFramed
"""A text frame: browsers hand binary frames to scripts as Blobs, not strings.
Built (and decoded, unless ``PreFramed``) once, then shared by every client it goes to."""


class SharedFrame(str):
    """A text frame built once and sent to many clients (diffs, resets, pings).

    Sent as a plain ``str``, every client's send would encode it to UTF-8 and
    copy it into a WebSocket frame again (wsproto makes four copies): for the
    reset of a 1,000-host view, 0.9 MB of work and memory per client, held
    until that client has read it. The WebSocket transport
    (``trioscope.http``) instead frames it once, keeps the frame's bytes in
    ``wire`` and hands every client the same bytes.

    orjson refuses ``str`` subclasses: parse ``str(frame)``."""

    wire: bytes | None = None
    """The whole WebSocket frame, set by the transport on first send."""
    encoded: bytes | None = None
    """Its UTF-8 encoding until the transport has framed it (``shared`` keeps
    the bytes it was made of): framed as they are, not encoded again (a
    processes view's first view is 100 MB and more)."""
    nbytes: int = 0
    """Bytes of its UTF-8 encoding (what the access log counts per client,
    without encoding it per client)."""


def shared(data: bytes) -> SharedFrame:
    """The frame whose UTF-8 encoding is ``data``."""
    frame = SharedFrame(data.decode())
    frame.encoded = data
    frame.nbytes = len(data)
    return frame


def message(kind: str, payload: Any) -> Frame:
    return shared(orjson.dumps({"type": kind, "payload": payload}))


def error_frame(code: str, text: str) -> Frame:
    return message("error", {"code": code, "message": text})


PING = message("ping", {})
PONG = message("pong", {})


def report_frame(agent_id: str, hostname: str, timestamp: str, summary: Mapping[str, float]) -> Frame:
    return message("report_update", {"agent_id": agent_id, "hostname": hostname, "timestamp": timestamp,
                                     "summary": dict(summary)})
