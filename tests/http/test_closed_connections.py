"""A WebSocket that has closed, or a request whose client left while it sent
the body, is freed by reference counting: nothing of it waits for the cyclic
collector, which the server runs rarely (see ``server.tune_interpreter``), so
memory returns when clients leave (on Python 3.12 and later too, where a
socket error is in a cycle with its frames: ``_tcp_server._forget``). Nor is
a client's leaving an error the server logs (``http._client_gone``: Quart
0.23, which Python 3.13 gets, raised it to the handler)."""

from __future__ import annotations

import contextlib
import gc
import logging
import weakref
from collections.abc import AsyncIterator, Iterator
from typing import Any

import attrs
import httpx
import pytest
import trio
from quart_trio.wrappers import TrioRequest
from trio_websocket import open_websocket_url
from wsproto.frame_protocol import FrameProtocol

from tests.waiting import eventually
from trioscope.actors.client import ClientActor
from trioscope.actors.client_link import ClientLink
from trioscope.config import Settings
from trioscope.http import create_app
from trioscope.http._tcp_server import GuardedTCPServer
from trioscope.http._websocket_stream import BoundedWSStream
from trioscope.runtime import open_actor_system
from trioscope.listening import listen
from trioscope.server import _serve_http, hypercorn_config
from trioscope.store import open_writer
from trioscope.system import database_path, supervision_tree

TRACKED = (GuardedTCPServer, BoundedWSStream, FrameProtocol, ClientLink, ClientActor, TrioRequest)
"""What the server makes for a connection: its WebSocket's, and its requests' (``TrioRequest``)."""
WEBSOCKET = set(TRACKED) - {TrioRequest}


@pytest.fixture
def alive(monkeypatch: pytest.MonkeyPatch) -> Iterator[weakref.WeakSet[Any]]:
    """Every instance of ``TRACKED`` the server makes from now on, for as long
    as it lives; the cyclic collector is off meanwhile."""
    instances: weakref.WeakSet[Any] = weakref.WeakSet()
    for cls in TRACKED:
        original = cls.__init__

        def tracked(self: Any, *args: Any, __original: Any = original, **kwargs: Any) -> None:
            __original(self, *args, **kwargs)
            if not (isinstance(self, FrameProtocol) and self.client):  # the test's own client's is not the server's
                instances.add(self)

        monkeypatch.setattr(cls, "__init__", tracked)
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield instances
    finally:
        if was_enabled:
            gc.enable()


async def test_a_closed_websocket_leaves_nothing_for_the_cyclic_collector(
        settings: Settings, alive: weakref.WeakSet[Any], caplog: pytest.LogCaptureFixture) -> None:
    async with _serving(settings) as bind:
        url = bind.replace("http://", "ws://", 1) + "/api/v1/ws?view=hosts"
        for _ in range(3):
            async with open_websocket_url(url) as ws:
                await ws.get_message()  # the first view: every part of the connection exists
                assert {type(o) for o in alive} == WEBSOCKET
        await _all_freed(alive)
    _no_error_logged(caplog)


async def test_a_request_whose_client_left_in_its_body_leaves_nothing_for_the_cyclic_collector(
        settings: Settings, alive: weakref.WeakSet[Any], caplog: pytest.LogCaptureFixture) -> None:
    async with _serving(settings) as bind:
        host, port = bind.removeprefix("http://").rsplit(":", 1)
        for _ in range(3):
            stream = await trio.open_tcp_stream(host, int(port))
            await stream.send_all(f"POST /api/v1/reports HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json"
                                  "\r\nContent-Length: 1000\r\n\r\n".encode() + b" " * 500)

            async def reading() -> bool:  # its handler has the first half, and waits for the rest
                return await _receiving(bind) == 500

            await eventually(reading, deadline=10)
            await stream.aclose()
        await _all_freed(alive)
    _no_error_logged(caplog)


@contextlib.asynccontextmanager
async def _serving(settings: Settings) -> AsyncIterator[str]:
    """A server on a free port of 127.0.0.1: its URL."""
    settings = attrs.evolve(settings, server=attrs.evolve(settings.server, host="127.0.0.1", port=0))
    open_writer(database_path(settings)).close()
    config = hypercorn_config(settings)
    sockets = listen(config)
    stop = trio.Event()
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(_serve_http, app, config, sockets, stop)
            yield binds[0]
            stop.set()


async def _receiving(bind: str) -> float:
    """Bytes of request bodies the server counts as being received (/metrics)."""
    async with httpx.AsyncClient(base_url=bind, timeout=10) as client:
        metrics = (await client.get("/metrics")).text
    return sum(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith("app_request_body_bytes "))


async def _all_freed(alive: weakref.WeakSet[Any]) -> None:
    async def freed() -> bool:
        return not list(alive)

    try:
        await eventually(freed, deadline=10)
    except trio.TooSlowError:
        pytest.fail(f"still alive after the clients left: {sorted(type(o).__name__ for o in alive)}")


def _no_error_logged(caplog: pytest.LogCaptureFixture) -> None:
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, errors
