"""What the probe takes of a server's answers: at most ``MAX_ANSWER_BYTES``,
never compressed, and JSON whose nesting cannot stop it.

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

MAX_ANSWER_BYTES = 4 * 1024 * 1024
"""Most bytes of one answer (the largest a trioscope server sends a probe is a
command of at most 256 KiB)."""


def client(server: str, *, verify: ssl.SSLContext | bool = True,
           transport: httpx.AsyncBaseTransport | None = None) -> httpx.AsyncClient:
    """An ``httpx.AsyncClient`` of ``server`` whose answers are bounded
    (``BoundedTransport`` around ``transport``, None: the network, verifying TLS with ``verify``)."""
    inner = transport if transport is not None else httpx.AsyncHTTPTransport(verify=verify)
    return httpx.AsyncClient(base_url=server, timeout=10.0, transport=BoundedTransport(inner),
                             headers={"Accept-Encoding": "identity"})


class BoundedTransport(httpx.AsyncBaseTransport):
    """``inner``, whose answers are refused when compressed or once more than
    ``MAX_ANSWER_BYTES`` of them came (``httpx.RemoteProtocolError``)."""

    def __init__(self, inner: httpx.AsyncBaseTransport) -> None:
        self.inner = inner

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self.inner.handle_async_request(request)
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
                              stream=_Bounded(response, request), extensions=response.extensions)

    async def aclose(self) -> None:
        await self.inner.aclose()


class _Bounded(httpx.AsyncByteStream):
    def __init__(self, response: httpx.Response, request: httpx.Request) -> None:
        self.response = response
        self.request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        taken = 0
        stream = self.response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        async for chunk in stream:
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
