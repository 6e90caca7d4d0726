"""What any client makes as many of as it likes (WebSocket connections, probe
ids, connections it stops reading) does not make the server's log grow with
it: its actors' starts and stops are at debug level, and the rest is said
once a minute with a count."""

from __future__ import annotations

import time
from typing import Any

import httpx
from trio_websocket import open_websocket_url

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually

CONNECTIONS = 60
PROBES = 30
LINES = 10
"""Lines the whole churn may add: a few said once (the first probes forgotten), none per client."""


def _report(probe: str) -> dict[str, Any]:
    document = host_report(0, timestamp=time.time(), containers=0, processes=1, connections=0)
    document["agent_id"] = probe
    return document


async def test_clients_and_probes_that_come_and_go_do_not_grow_the_log() -> None:
    with ServerProcess(["--max-agents", "6", "--stale-node-threshold", "5m", "--rate-per-agent", "100000"]) as server:
        async with httpx.AsyncClient(base_url=server.base_url, timeout=30) as client:
            agent = await enroll(client, server, Operator(server, fresh("user"), fresh("tenant")))
            lines = len(server.stderr().splitlines())
            ws_url = server.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
            for _ in range(CONNECTIONS):
                async with open_websocket_url(ws_url) as ws:
                    await ws.get_message()  # its first view: the client's actor is running
            # Each made-up id an enrolled agent signs takes the place of the one before (forgotten).
            for probe in (fresh("made-up") for _ in range(PROBES)):
                assert (await agent.signed_post(client, "/api/v1/reports", _report(probe))).status_code == 202

            async def every_client_gone() -> bool:
                exposition = (await client.get("/metrics")).text
                return "\napp_websocket_clients 0.0\n" in exposition

            await eventually(every_client_gone)
        added = server.stderr().splitlines()[lines:]
        assert len(added) <= LINES, "\n".join(added)
        assert any("to make room for a new one" in line for line in added)  # said, once
