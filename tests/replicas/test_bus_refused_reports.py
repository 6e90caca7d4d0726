"""A report the report bus did not take (503 ``bus_unavailable``) leaves no
trace on the replica that refused it: no actor for its agent, no agent
forgotten to make room for it. A probe is admitted (and room made for it)
only as every replica reads its report from the stream, so the replicas keep
the same agents."""

from __future__ import annotations

import time

import httpx
import trio
import pytest

from tests.bus_server import own_nats_server
from tests.replicas.conftest import two_replicas
from tests.replicas.test_report_bus import SMALL, bus_args, get, ready
from tests.server_process import ServerProcess
from tests.synthetic import host_report
from tests.waiting import eventually


async def _agents(client: httpx.AsyncClient, server: ServerProcess) -> set[str]:
    return {row["agent_id"] for row in (await get(client, server, "/api/v1/agents/list"))["agents"]}


async def test_a_report_the_bus_refused_starts_no_agent_and_forgets_none_and_the_replicas_agree(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    """At ``--max-agents 2``, both places held from 127.0.0.1: a new probe from
    127.0.0.2 would take the place of agent-1 (see ``AgentRoster.reclaimable``).
    With the bus down its report is refused, and A keeps agent-1 and starts
    nothing for agent-3 (it used to forget agent-1 and hold agent-3, which B
    never heard of). Once the bus is back, its report makes room on both."""
    with own_nats_server() as bus, \
            two_replicas(request, postgres_url, *bus_args(bus.url, "refusals"), "--max-agents", "2") as (a, b):
        async with httpx.AsyncClient(timeout=30) as client, \
                httpx.AsyncClient(timeout=30, transport=httpx.AsyncHTTPTransport(local_address="127.0.0.2")) as other:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            for index in (1, 2):
                report = host_report(index, timestamp=time.time(), **SMALL)
                assert (await client.post(f"{a.base_url}/api/v1/reports", json=report)).status_code == 202
            held = {"agent-1", "agent-2"}

            async def b_has(expected: set[str]) -> bool:
                return await _agents(client, b) == expected

            await eventually(lambda: b_has(held))

            bus.stop()
            for _ in range(3):  # each refusal of a new probe used to push out one more agent
                response = await other.post(f"{a.base_url}/api/v1/reports",
                                            json=host_report(3, timestamp=time.time(), **SMALL))
                assert response.status_code == 503, response.text
                assert response.json()["error"]["code"] == "bus_unavailable"
                assert response.headers["Retry-After"] == "2"
                assert await _agents(client, a) == held
            assert "forgot agent" not in a.stderr()
            assert (await client.get(f"{a.base_url}/api/v1/query/agents/agent-3/timeseries")).status_code == 404

            bus.start()

            async def resent() -> bool:
                response = await other.post(f"{a.base_url}/api/v1/reports",
                                            json=host_report(3, timestamp=time.time(), **SMALL))
                return response.status_code == 202

            await eventually(resent)
            now_held = {"agent-2", "agent-3"}
            await eventually(lambda: b_has(now_held))

            async def a_has() -> bool:
                return await _agents(client, a) == now_held

            await eventually(a_has)


async def test_a_burst_of_new_agents_past_max_agents_gets_503_for_those_no_replica_keeps(
        request: pytest.FixtureRequest, postgres_url: str) -> None:
    """At ``--max-agents 3`` with two places held, four new probes post at once
    to A: each was admitted when asked (none read back yet), and all four were
    answered 202 while every replica kept one of them. Now the three left out
    get 503 ``too_many_agents`` (as without a bus) and the one answered 202 is
    the one both replicas list."""
    with own_nats_server() as bus, \
            two_replicas(request, postgres_url, *bus_args(bus.url, "burst"), "--max-agents", "3") as (a, b):
        async with httpx.AsyncClient(timeout=30) as client:
            await eventually(lambda: ready(client, a))
            await eventually(lambda: ready(client, b))
            for index in (1, 2):
                report = host_report(index, timestamp=time.time(), **SMALL)
                assert (await client.post(f"{a.base_url}/api/v1/reports", json=report)).status_code == 202
            statuses: dict[str, int] = {}

            async def post(index: int) -> None:
                response = await client.post(f"{a.base_url}/api/v1/reports",
                                             json=host_report(index, timestamp=time.time(), **SMALL))
                statuses[f"agent-{index}"] = response.status_code
                if response.status_code == 503:
                    assert response.json()["error"]["code"] == "too_many_agents", response.text

            async with trio.open_nursery() as nursery:
                for index in range(3, 7):
                    nursery.start_soon(post, index)
            accepted = {agent for agent, status in statuses.items() if status == 202}
            assert sorted(statuses.values()) == [202, 503, 503, 503], statuses
            kept = {"agent-1", "agent-2", *accepted}

            async def both_keep() -> bool:
                return await _agents(client, a) == kept and await _agents(client, b) == kept

            await eventually(both_keep)
