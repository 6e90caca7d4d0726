"""What the replica tests share: agents and users talking to one replica or
the other, and reading what a replica holds from its /metrics."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import httpx
import trio
from trio_websocket import WebSocketConnection, open_websocket_url

from tests.integration.test_commands import Operator
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent

_WAITING = re.compile(r"^app_command_polls_waiting (\S+)$", re.M)


def on(agent: StatusAgent, server: ServerProcess) -> StatusAgent:
    """The same agent (same credentials), talking to another replica."""
    return attrs.evolve(agent, base_url=server.base_url)


def operator_on(operator: Operator, server: ServerProcess) -> Operator:
    """The same user, talking to another replica (the replicas share the token secret)."""
    return attrs.evolve(operator, server=server)


async def held_polls(client: httpx.AsyncClient, server: ServerProcess) -> int:
    """Long-polls the replica holds now."""
    text = (await client.get(f"{server.base_url}/metrics")).text
    found = _WAITING.search(text)
    return int(float(found.group(1))) if found else 0


@asynccontextmanager
async def user_events(server: ServerProcess, operator: Operator) -> AsyncIterator[WebSocketConnection]:
    """The user's ``/ws/user`` socket on ``server``, past its ``initial_state`` (the
    deployments as this replica knows them): its events from then on."""
    token = operator.auth["Authorization"].removeprefix("Bearer ")
    url = server.base_url.replace("http://", "ws://") + f"/ws/user/{operator.user_id}?token={token}"
    async with open_websocket_url(url) as ws:
        with trio.fail_after(20):
            first = json.loads(await ws.get_message())
        assert first["type"] == "initial_state", first
        yield ws


async def events_until(ws: WebSocketConnection, done: Any, deadline: float = 20.0) -> list[dict[str, Any]]:
    """Events from ``ws`` until ``done(event)`` holds for one (included)."""
    events: list[dict[str, Any]] = []
    with trio.fail_after(deadline):
        while True:
            event = json.loads(await ws.get_message())
            if event.get("type") in ("ping", "pong"):
                continue
            events.append(event)
            if done(event):
                return events
