"""Answers of a hostile server (or of anyone on an http:// path): the probe
neither inflates them, nor reads them beyond ``MAX_ANSWER_BYTES``, nor stops
on JSON nested too deep; it takes the server as out of reach and asks again."""

from __future__ import annotations

import gzip
import logging
from typing import Any

import httpx
import pytest
import trio

from tests.synthetic import host_report
from trioscope.wire import decode_report
from trioscope_probe._answers import MAX_ANSWER_BYTES, client, json_of
from trioscope_probe._transport import Signer, run_publisher

DEEP = b"[" * 100_000 + b"]" * 100_000


async def test_a_compressed_or_too_long_answer_is_refused_before_it_is_read_whole() -> None:
    bomb = gzip.compress(b"{" + b" " * (64 * 1024**2) + b"}")  # 64 MiB inflated from ~64 KB

    def server(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/gzip":
            return httpx.Response(200, content=bomb, headers={"Content-Encoding": "gzip"})
        if request.url.path == "/long":
            return httpx.Response(200, content=b"x" * (MAX_ANSWER_BYTES + 1))
        async def chunks() -> Any:  # no Content-Length: counted as it comes
            for _ in range(MAX_ANSWER_BYTES // 65536 + 2):
                yield b"y" * 65536
        return httpx.Response(200, stream=httpx.ByteStream(b"") if request.url.path == "/empty" else _Stream(chunks))

    async with client("http://server", transport=httpx.MockTransport(server)) as probe:
        for path, says in (("/gzip", "Content-Encoding 'gzip'"), ("/long", "more than the probe takes"),
                           ("/chunked", "longer than the probe takes")):
            with pytest.raises(httpx.RemoteProtocolError, match=says):
                await probe.get(path)
        assert (await probe.get("/empty")).content == b""


class _Stream(httpx.AsyncByteStream):
    def __init__(self, chunks: Any) -> None:
        self.chunks = chunks

    async def __aiter__(self) -> Any:
        async for chunk in self.chunks():
            yield chunk


def test_json_nested_too_deep_is_a_value_error_not_a_recursion_error() -> None:
    with pytest.raises(ValueError, match="nested too deeply"):
        json_of(httpx.Response(200, content=DEEP))
    assert json_of(httpx.Response(200, content=b'{"a": [1]}')) == {"a": [1]}


async def test_a_publisher_answered_only_with_deep_json_goes_on_asking(
        autojump_clock: Any, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    """Nested 100,000 deep, every answer ended the probe (exit status 1) within seconds."""
    caplog.set_level(logging.INFO, logger="trioscope_probe")
    asked: list[str] = []

    def server(request: httpx.Request) -> httpx.Response:
        asked.append(request.url.path)
        status = 200 if request.url.path.startswith("/api/v1/agents/config") else 400
        return httpx.Response(status, content=DEEP, headers={"Content-Type": "application/json"})

    async def inline(function: Any, *args: Any, **_: Any) -> Any:
        return function(*args)  # the mock clock would jump while a worker thread collects

    monkeypatch.setattr(trio.to_thread, "run_sync", inline)
    report = decode_report(host_report(1, timestamp=1_800_000_000.0, processes=5, connections=5, peers=[2]))
    with trio.move_on_after(600):
        await run_publisher("http://server", "probe-1", "host", 15.0, 40, lambda: report,
                            signer=Signer("agent-1", "t"), transport=httpx.MockTransport(server))
    assert asked.count("/api/v1/reports") > 5, asked  # still reporting after ten minutes
