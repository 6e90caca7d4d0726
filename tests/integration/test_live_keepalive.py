"""The live views' pings against a real server: the seed's own JavaScript
client (task21-quick-start: one ``ping`` when it opens, then it only reads)
keeps its socket, and a client that answered pings and stopped is closed."""

from __future__ import annotations

import time

import pytest
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.integration.test_live import next_message, post, ws_url
from tests.server_process import ServerProcess


async def test_the_seeds_client_that_answers_no_pings_keeps_its_view() -> None:
    with ServerProcess(["--ws-ping-interval", "1s"]) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await ws.send_message('{"type": "ping"}')
            await next_message(ws, "topology_update")
            for _ in range(4):  # two unanswered pings closed it before
                await next_message(ws, "ping")
            await post(server, 1, time.time())
            update = await next_message(ws, "topology_update")
            assert update["payload"]["add"]["nodes"], update  # still served: the new host's diff


async def test_a_client_that_answered_pings_and_stopped_is_closed() -> None:
    with ServerProcess(["--ws-ping-interval", "1s"]) as server:
        async with open_websocket_url(ws_url(server)) as ws:
            await next_message(ws, "ping")
            await ws.send_message('{"type": "pong"}')
            pings = 0
            with pytest.raises(ConnectionClosed) as closed:
                while True:
                    await next_message(ws, "ping")
                    pings += 1
            assert pings == 2, pings  # the two unanswered: closed at the third's time
            assert (closed.value.reason.code, closed.value.reason.reason) == (1008, "no pong to two pings")
