"""Compressed responses, when the client asks (``Accept-Encoding``): br
(brotli) and gzip (zlib), whole for cached bodies, piece by piece for streamed
ones. Both libraries release the GIL while they compress."""

from __future__ import annotations

import zlib
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Protocol

import brotli
import trio
from quart import Response, request

from ._responses import JSON

ENCODINGS = ("br", "gzip")
"""What we offer, preferred first when the client likes both as much: br
compresses a listing better than gzip for half the CPU or less (measured on a
78 MB processes view: brotli quality 1, 5.9 MB in 0.09-0.1 s; gzip level 1,
7.1 MB in 0.2-0.4 s)."""

MIN_SIZE = 1024
"""Smaller bodies are sent as they are: compressing saves nothing worth a round of work."""

STREAM_LEVELS = {"br": 1, "gzip": 1}
"""Per request, per piece of a streamed listing: the fastest levels (the
ratio barely improves above them on listings, the CPU does not stay flat)."""

CACHED_LEVELS = {"br": 5, "gzip": 6}
"""Once per version for the cached views (at most 25,000 nodes and edges,
about 1 MB): the ratio is worth more there."""

INLINE_BYTES = 1024 * 1024
"""A cached body up to this size is compressed in the request, at ``STREAM_LEVELS``
(the hosts view of 1,000 hosts, 865 KB: brotli 0.7 ms, gzip 1.6 ms), not in a
worker thread at ``CACHED_LEVELS`` (4.2-4.5 ms there): under report load nearly
every read finds a new version, and the thread's round trip costs the request
two passes of a busy event loop."""

MAX_KEPT = 16 * 1024 * 1024
"""Streamed whole views, compressed, kept with one version for its next
readers: at most this many bytes in all (a 100,000-process view is 6-8 MB
compressed, against 80 MB as it is: two of them per version)."""


class Compressor(Protocol):
    def compress(self, data: bytes) -> bytes: ...

    def flush(self) -> bytes: ...


class _Brotli:
    """brotli's streaming compressor under zlib's names."""

    def __init__(self, quality: int) -> None:
        self._compressor = brotli.Compressor(mode=brotli.MODE_TEXT, quality=quality)

    def compress(self, data: bytes) -> bytes:
        return self._compressor.process(data)  # type: ignore[no-any-return]  # brotli has no types

    def flush(self) -> bytes:
        return self._compressor.finish()  # type: ignore[no-any-return]  # brotli has no types


def compressor(encoding: str, level: int) -> Compressor:
    if encoding == "br":
        return _Brotli(level)
    return zlib.compressobj(level, zlib.DEFLATED, 31)  # 31: the gzip format


def compressed(data: bytes, encoding: str, levels: dict[str, int] = CACHED_LEVELS) -> bytes:
    """``data`` whole, at the level for cached bodies (or ``levels``)."""
    whole = compressor(encoding, levels[encoding])
    return whole.compress(data) + whole.flush()


def accepted_encoding() -> str | None:
    """The encoding the request asks for among ``ENCODINGS`` (quality values
    and ``*`` as RFC 9110 says), or None: send the body as it is."""
    return request.accept_encodings.best_match(ENCODINGS)


def headers(encoding: str | None) -> dict[str, str]:
    """What says a body's encoding, and that it depends on ``Accept-Encoding``
    (so that no cache hands a compressed body to a client that did not ask)."""
    return {"Vary": "Accept-Encoding", **({"Content-Encoding": encoding} if encoding else {})}


async def json_body_response(body: bytes) -> Response:
    """``body`` (JSON, made once for this request) compressed as the client
    asks when it is worth it: inline up to ``INLINE_BYTES``, in a worker
    thread beyond (a host's latest report of 40,000 sockets, 8 MB, was sent
    whole whatever the client accepted)."""
    encoding = accepted_encoding() if len(body) >= MIN_SIZE else None
    if encoding is not None:
        if len(body) <= INLINE_BYTES:
            body = compressed(body, encoding, STREAM_LEVELS)
        else:
            body = await trio.to_thread.run_sync(compressed, body, encoding, STREAM_LEVELS)
    return Response(body, content_type=JSON, headers=headers(encoding))


def streamed_response(pieces: Iterator[bytes], encoding: str | None,
                      extra_headers: dict[str, str] | None = None,
                      sent: Callable[[bytes], object] | None = None) -> Response:
    """A JSON body sent as ``pieces`` come, compressed piece by piece if
    ``encoding``. Each piece is computed, compressed and sent before the next
    is asked for, and the event loop serves others in between: sending a
    piece waits on the socket, and a piece the compressor keeps for later
    passes through a checkpoint instead.

    ``sent``: called with the whole (compressed) body once all of it was sent
    (to keep it for the next readers); for a compressed body only."""

    async def body() -> AsyncIterator[bytes]:
        squeeze = compressor(encoding, STREAM_LEVELS[encoding]) if encoding else None
        copy: list[bytes] | None = [] if sent is not None and squeeze is not None else None
        for raw in pieces:
            piece = squeeze.compress(raw) if squeeze is not None else raw
            if piece:
                if copy is not None:
                    copy.append(piece)
                yield piece
            else:
                await trio.lowlevel.checkpoint()
        if squeeze is not None:
            tail = squeeze.flush()
            yield tail
            if copy is not None and sent is not None:
                sent(b"".join(copy) + tail)

    return Response(body(), content_type=JSON, headers={**headers(encoding), **(extra_headers or {})})
