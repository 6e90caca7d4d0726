"""``--protect-reads``: the topology, queries, agent list, live stream and
metrics need a user token; reports, probe requests and health stay open."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
import trio
from trio_websocket import ConnectionRejected, open_websocket_url

from tests.server_process import ServerProcess
from tests.synthetic import host_report

READS = ["/api/v1/query/topology", "/api/v1/query/topology?view=hosts", "/api/v1/query/stats",
         "/api/v1/query/nodes/host:host-0", "/api/v1/query/agents/agent-0/latest",
         "/api/v1/query/agents/agent-0/timeseries", "/api/v1/agents/list", "/metrics"]


@pytest.fixture(scope="module")
def server() -> Iterator[ServerProcess]:
    with ServerProcess(["--protect-reads", "true", "--show-unassigned-agents", "true"]) as process:
        yield process


def test_reads_need_a_user_token_and_writes_of_probes_do_not(server: ServerProcess) -> None:
    with httpx.Client(base_url=server.base_url, timeout=10) as client:
        report = host_report(0, timestamp=time.time(), containers=1, processes=2, connections=0)
        assert client.post("/api/v1/reports", json=report).status_code == 202
        assert client.get("/health").status_code == 200
        viewer = {"Authorization": f"Bearer {server.user_token('vic', 'acme', 'VIEWER')}"}
        for path in READS:
            refused = client.get(path)
            assert refused.status_code == 401, path
            assert refused.json()["error"]["code"] == "missing_token", path
            assert client.get(path, headers={"Authorization": "Bearer nonsense"}).status_code == 401, path
            assert client.get(path, headers=viewer).status_code == 200, path


async def test_the_live_stream_takes_the_token_as_a_subprotocol_in_the_query_or_as_a_header(server: ServerProcess) -> None:
    url = server.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
    token = server.user_token("vic", "acme", "VIEWER")
    with pytest.raises(ConnectionRejected) as rejected:
        async with open_websocket_url(url):
            pass
    assert rejected.value.status_code == 401
    async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{token}"]) as ws:
        assert ws.subprotocol == "trioscope"
        with trio.fail_after(10):
            first = json.loads(await ws.get_message())
        assert first["type"] == "topology_update" and first["payload"]["reset"] is True
    async with open_websocket_url(f"{url}&token={token}") as ws:
        with trio.fail_after(10):
            assert json.loads(await ws.get_message())["type"] == "topology_update"
    async with open_websocket_url(url, extra_headers=[(b"Authorization", f"Bearer {token}".encode())]) as ws:
        with trio.fail_after(10):
            assert json.loads(await ws.get_message())["type"] == "topology_update"


async def test_a_tenants_user_is_told_its_own_live_views_not_the_servers(server: ServerProcess) -> None:
    """``websocket_clients`` of ``/api/v1/query/stats`` was the server's count:
    a user of another tenant read 0, then 5 while acme held 5 live views."""
    url = server.base_url.replace("http://", "ws://") + "/api/v1/ws?view=hosts"
    acme = server.user_token("vic", "acme", "VIEWER")
    other = {"Authorization": f"Bearer {server.user_token('olga', 'other', 'VIEWER')}"}
    mine = {"Authorization": f"Bearer {acme}"}
    async with httpx.AsyncClient(base_url=server.base_url, timeout=10) as client:
        async def told(headers: dict[str, str]) -> int:
            return int((await client.get("/api/v1/query/stats", headers=headers)).json()["websocket_clients"])

        async with open_websocket_url(url, subprotocols=["trioscope", f"bearer.{acme}"]) as a, \
                open_websocket_url(url, subprotocols=["trioscope", f"bearer.{acme}"]) as b:
            for ws in (a, b):
                with trio.fail_after(10):
                    await ws.get_message()  # served: counted
            assert await told(mine) == 2
            assert await told(other) == 0
