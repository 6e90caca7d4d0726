"""A WebSocket that has closed is freed by reference counting: nothing of it
waits for the cyclic collector, which the server runs rarely (see
``server.tune_interpreter``), so memory returns when clients leave."""

from __future__ import annotations

import gc
import weakref
from collections.abc import Iterator
from typing import Any

import attrs
import pytest
import trio
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
from trioscope.server import _serve_http, hypercorn_config, listen
from trioscope.store import open_writer
from trioscope.system import database_path, supervision_tree

TRACKED = (GuardedTCPServer, BoundedWSStream, FrameProtocol, ClientLink, ClientActor)


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


async def test_a_closed_websocket_leaves_nothing_for_the_cyclic_collector(settings: Settings,
                                                                           alive: weakref.WeakSet[Any]) -> None:
    settings = attrs.evolve(settings, server=attrs.evolve(settings.server, host="127.0.0.1", port=0))
    open_writer(database_path(settings)).close()
    config = hypercorn_config(settings)
    sockets = listen(config)
    stop = trio.Event()
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(_serve_http, app, config, sockets, stop)
            url = binds[0].replace("http://", "ws://", 1) + "/api/v1/ws?view=hosts"
            for _ in range(3):
                async with open_websocket_url(url) as ws:
                    await ws.get_message()  # the first view: every part of the connection exists
                    assert {type(o) for o in alive} == set(TRACKED)

            async def all_freed() -> bool:
                return not list(alive)

            try:
                await eventually(all_freed, deadline=10)
            except trio.TooSlowError:
                pytest.fail(f"still alive after the clients left: {sorted(type(o).__name__ for o in alive)}")
            stop.set()
