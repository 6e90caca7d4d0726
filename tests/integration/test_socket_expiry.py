"""Sockets opened with a user token end when the token does: a token is checked
where it is used, and an open socket keeps using it (close code 4401)."""

from __future__ import annotations

import json
import time
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
                    assert json.loads(await ws.get_message())["type"] == "initial_state"
                    assert json.loads(await ws.get_message())["type"] == "command_progress"
                assert await _closed_with(ws) == (4401, "token_expired")


async def test_a_protected_live_view_closes_when_its_token_expires() -> None:
    with ServerProcess(["--protect-reads", "true"]) as server:
        token = server.user_token(fresh("viewer"), fresh("tenant"), "VIEWER", ttl=TTL)
        url = server.base_url.replace("http://", "ws://") + f"/api/v1/ws?view=hosts&token={token}"
        async with open_websocket_url(url) as ws:
            assert await _closed_with(ws) == (4401, "token_expired")


async def _renew(ws: Any, token: str) -> dict[str, Any]:
    """Send ``token`` on the socket; its answer (pings on the way answered, views passed over)."""
    await ws.send_message(json.dumps({"type": "auth", "token": token}))
    with trio.fail_after(10):
        while (message := json.loads(await ws.get_message()))["type"] not in ("auth", "error"):
            if message["type"] == "ping":
                await ws.send_message(json.dumps({"type": "pong"}))
    return dict(message)


async def _open_until(ws: Any, at: float) -> None:
    """Answer the server's pings until the wall-clock time ``at``."""
    while (left := at - time.time()) > 0:
        with trio.move_on_after(left):
            if json.loads(await ws.get_message())["type"] == "ping":
                await ws.send_message(json.dumps({"type": "pong"}))


@pytest.mark.parametrize("path", ["live view", "user events"])
async def test_a_socket_renewed_with_a_newer_token_outlives_the_first(path: str) -> None:
    """The pipeline seed's "handle token refresh": a client sends a newer token of
    the same user on the open socket, which then lasts until that one expires;
    a token of another user (or an invalid one) is refused on the socket and
    changes nothing: it still closes when the first token expires."""
    with ServerProcess(["--protect-reads", "true", "--ws-ping-interval", "1s"]) as server:
        user, tenant = fresh("viewer"), fresh("tenant")
        first = server.user_token(user, tenant, "VIEWER", ttl=TTL)
        expires = time.time() + TTL
        base = server.base_url.replace("http://", "ws://")
        url = f"{base}/api/v1/ws?view=hosts&token={first}" if path == "live view" else f"{base}/ws/user/{user}"
        async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{first}"]) as ws:
            renewed = await _renew(ws, server.user_token(user, tenant, "VIEWER"))
            assert renewed["type"] == "auth" and renewed["payload"]["expires_at"].endswith("Z")
            await _open_until(ws, expires + 1)  # past the first token's expiry: still open, and answering
            assert (await _renew(ws, server.user_token(user, tenant, "VIEWER")))["type"] == "auth"
        second = server.user_token(user, tenant, "VIEWER", ttl=TTL)
        async with open_websocket_url(url.replace(first, second),
                                      subprotocols=["trioscope", f"bearer.{second}"]) as ws:
            for token in (server.user_token(fresh("other"), tenant, "VIEWER"), "not-a-token",
                          server.user_token(user, tenant, "ADMIN")):
                refused = await _renew(ws, token)
                assert (refused["type"], refused["payload"]["code"]) == ("error", "invalid_token")
            assert await _closed_with(ws) == (4401, "token_expired")
