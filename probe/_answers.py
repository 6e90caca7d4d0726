"""What the probe takes of a server's answers: at most ``MAX_ANSWER_BYTES``,
never compressed, whole within a deadline (``ANSWER_GRACE``), and JSON whose
nesting cannot stop it.

The probe talks to whatever answers at ``--server`` (over http:// anyone on the
path): an answer read whole and inflated as httpx does took it to 3 GB from a
1 MiB gzip body, and JSON nested 100,000 deep raised ``RecursionError`` out of
its loops, which ended the probe. Its server's answers are small (a command,
its limits, an error), so a larger or compressed one is taken as the server
being out of reach (``httpx.TransportError``: backed off and asked again)."""

from __future__ import annotations

import json
import ssl
from collections.abc import AsyncIterator
from typing import Any

import httpx
import trio

MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Most bytes of one answer (the largest a trioscope server sends a probe is a
command of at most 256 KiB)."""


TIMEOUT = 10.0
"""Seconds each step of a request (connect, write, read) may take, unless the request says."""
ANSWER_GRACE = 50.0
"""Seconds a whole request, its answer read, may take beyond its read timeout
(which bounds each read alone): a server that sent a byte every 5 s held the
probe's request, and every report after it, for as long as it kept that up."""


class AnswerOverdue(httpx.ReadTimeout):
    """An answer not read whole within its deadline (``ANSWER_GRACE``)."""


def client(server: str, *, verify: ssl.SSLContext | bool = True,
           transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` of ``server`` whose answers are bounded
    (``BoundedTransport`` around ``transport``, None: the network, verifying TLS with ``verify``)."""
    inner = transport if transport is not None else httpx.AsyncHTTPTransport(verify=verify)
    return httpx.AsyncClient(base_url=server, timeout=TIMEOUT, transport=BoundedTransport(inner),
                             headers={"Accept-Encoding": "identity"})


class BoundedTransport(httpx.AsyncBaseTransport):
    """``inner``, whose answers are refused when compressed or once more than
    ``MAX_ANSWER_BYTES`` of them came (``httpx.RemoteProtocolError``), or not
    whole by the request's read timeout and ``ANSWER_GRACE`` (``AnswerOverdue``)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        read = request.extensions.get("timeout", {}).get("read")
        seconds = (read if isinstance(read, int | float) else TIMEOUT) + ANSWER_GRACE
        deadline = trio.current_time() + seconds
        answered: httpx.Response | None = None
        with trio.move_on_at(deadline):
            answered = await self.inner.handle_async_request(request)
        if answered is None:
            raise AnswerOverdue(f"no whole answer within {seconds:g} s", request=request)
        response = answered
        encoding = response.headers.get("Content-Encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            await response.aclose()
            raise httpx.RemoteProtocolError(f"the server answered with Content-Encoding {encoding[:40]!r}, "
                                            "which the probe did not ask for", request=request)
        length = response.headers.get("Content-Length", "")
        if length.isdigit() and int(length) > MAX_ANSWER_BYTES:
            await response.aclose()
            raise httpx.RemoteProtocolError(f"the server's answer is {length} bytes, more than the probe takes "
                                            f"({MAX_ANSWER_BYTES})", request=request)
        return httpx.Response(response.status_code, headers=response.headers,
                              stream=_Bounded(response, request, deadline, seconds), extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Bounded(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, request: httpx.Request, deadline: float, seconds: float) -> None:
        self.response = response
        self.request = request
        self.deadline = deadline
        self.seconds = seconds

    async def __aiter__(self) -> AsyncIterator[bytes]:
        taken = 0
        stream = self.response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        chunks = stream.__aiter__()
        while True:
            chunk: bytes | None = None
            with trio.move_on_at(self.deadline):  # never around the yield: a generator must not hold a scope open
                try:
                    chunk = await chunks.__anext__()
                except StopAsyncIteration:
                    return
            if chunk is None:
                raise AnswerOverdue(f"no whole answer within {self.seconds:g} s", request=self.request)
            taken += len(chunk)
            if taken > MAX_ANSWER_BYTES:
                raise httpx.RemoteProtocolError(f"the server's answer is longer than the probe takes "
                                                f"({MAX_ANSWER_BYTES} bytes)", request=self.request)
            yield chunk

    async def aclose(self) -> None:
        await self.response.aclose()


def json_of(response: httpx.Response) -> Any:
    """``response``'s JSON. Raises ``ValueError`` for what is not JSON, and for
    JSON nested too deep to read (``RecursionError`` would end the probe)."""
    try:
        return json.loads(response.content)
    except RecursionError:
        raise ValueError("the answer's JSON is nested too deeply") from None
