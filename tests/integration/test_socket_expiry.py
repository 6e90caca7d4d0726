"""Sockets opened with a user token end when the token does: a token is checked
where it is used, and an open socket keeps using it (close code 4401)."""

from __future__ import annotations

import json
from typing import Any

import httpx
import pytest
import trio
from trio_websocket import ConnectionClosed, open_websocket_url

from tests.integration.test_commands import fresh, setup
from tests.server_process import ServerProcess

TTL = 3.0


async def _closed_with(ws: Any) -> tuple[int | None, str | None]:
    with trio.fail_after(TTL + 20):
        with pytest.raises(ConnectionClosed) as closed:
            while True:
                await ws.get_message()
    return closed.value.reason.code, closed.value.reason.reason


async def test_a_user_socket_closes_when_its_token_expires() -> None:
    with ServerProcess() as server:
        async with httpx.AsyncClient() as client:
            operator, agent = await setup(server, client)
            token = server.user_token(operator.user_id, operator.tenant, "OPERATOR", ttl=TTL)
            url = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}"
            async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{token}"]) as ws:
                await operator.command(client, agent.deployment_hash)
                with trio.fail_after(10):
                    assert json.loads(await ws.get_message())["type"] == "command_progress"
                assert await _closed_with(ws) == (4401, "token_expired")


async def test_a_protected_live_view_closes_when_its_token_expires() -> None:
    with ServerProcess(["--protect-reads", "true"]) as server:
        token = server.user_token(fresh("viewer"), fresh("tenant"), "VIEWER", ttl=TTL)
        url = server.base_url.replace("http://", "ws://") + f"/api/v1/ws?view=hosts&token={token}"
        async with open_websocket_url(url) as ws:
            assert await _closed_with(ws) == (4401, "token_expired")
