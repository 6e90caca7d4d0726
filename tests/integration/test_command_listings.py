"""Reads that stay small whatever agents send: command listings carry summaries
within a byte budget, a command's large result or error is capped and read in
pages, and a deployment lists its retired agents (without their system info)
only on request, a page at a time, also after a restart.

An attack test once listed 100 commands with 9 MiB results: 900 MiB in one
answer and 2.27 GB of server memory; and 1,000 re-enrolments with 60 KiB of
system info each made every GET of the deployment 57 MiB.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from typing import Any

import attrs
import httpx
import orjson
import pytest

from tests.integration.test_commands import Operator, setup
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent

MIB = 1024 * 1024
LISTING_BUDGET = MIB
"""What a page of a listing may weigh (the documented budget)."""
INLINE_LIMIT = MIB
"""The largest result or error a command's GET carries in itself."""


pytestmark = pytest.mark.usefixtures("database")  # every test on each store backend (integration/conftest.py)


@pytest.fixture(scope="module")
def server(database: str) -> Iterator[ServerProcess]:
    with ServerProcess() as process:
        yield process


async def finish(client: httpx.AsyncClient, operator: Operator, agent: StatusAgent, *, result: Any = None,
                 error: str | None = None, **command: Any) -> str:
    """Create a command and have the agent report it done (failed when ``error``)."""
    created = await operator.command(client, agent.deployment_hash, **command)
    polled = await agent.poll(client, timeout=5)
    assert polled is not None and polled.command_id == created["command_id"]
    status = "failed" if error is not None else "success"
    answer = await agent.report(client, polled.command_id, status, result=result, error=error)
    assert answer.status_code == 200, answer.text
    return polled.command_id


async def pages_of(client: httpx.AsyncClient, server: ServerProcess, operator: Operator, path: str) -> bytes:
    """Every page of a command's result or error, following ``X-Next-Offset``."""
    parts: list[bytes] = []
    offset: int | None = 0
    while offset is not None:
        response = await client.get(server.base_url + path, params={"offset": offset}, headers=operator.auth)
        assert response.status_code == 200, response.text
        assert len(response.content) <= INLINE_LIMIT
        parts.append(response.content)
        total = int(response.headers["X-Total-Bytes"])
        following = response.headers.get("X-Next-Offset")
        offset = int(following) if following is not None else None
        assert offset is None or offset == sum(map(len, parts)) < total
    joined = b"".join(parts)
    assert len(joined) == total
    return joined


async def test_a_listing_carries_summaries_without_results(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator, agent = await setup(server, client)
        big = {"log": "x" * (3 * MIB)}
        ids = [await finish(client, operator, agent, result=big) for _ in range(4)]
        listing = await client.get(operator.url(agent.deployment_hash, "/commands"), params={"limit": 100},
                                   headers=operator.auth)
        assert listing.status_code == 200
        assert len(listing.content) <= LISTING_BUDGET
        body = listing.json()
        assert [c["command_id"] for c in body["commands"]] == ids[::-1]
        assert (body["count"], body["total"], body["next_offset"], body["truncated"]) == (4, 4, None, False)
        for item in body["commands"]:
            assert "result" not in item and "history" not in item
            assert item["status"] == "completed" and item["result_bytes"] == len(orjson.dumps(big))
            # Each item says where the rest is: the command's own GET.
            single = await client.get(server.base_url + item["links"]["self"], headers=operator.auth)
            assert single.status_code == 200 and single.json()["command_id"] == item["command_id"]


async def test_a_listing_stops_at_its_byte_budget_and_says_where_to_go_on(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator, agent = await setup(server, client)
        parameters = {"blob": "p" * (60 * 1024)}  # just under the 64 KiB parameters limit
        ids = [(await operator.command(client, agent.deployment_hash, parameters=parameters))["command_id"]
               for _ in range(24)]
        seen: list[str] = []
        offset: int | None = 0
        pages = 0
        while offset is not None:
            response = await client.get(operator.url(agent.deployment_hash, "/commands"),
                                        params={"limit": 100, "offset": offset}, headers=operator.auth)
            assert response.status_code == 200 and len(response.content) <= LISTING_BUDGET
            body = response.json()
            assert body["offset"] == offset and body["count"] == len(body["commands"]) > 0
            seen.extend(c["command_id"] for c in body["commands"])
            assert body["commands"][0]["parameters"] == parameters
            offset = body["next_offset"]
            assert body["truncated"] is (offset is not None)  # only the budget ends a page before `limit`
            assert offset is None or offset == len(seen)
            pages += 1
        assert seen == ids[::-1] and pages >= 2
        # `limit` still bounds a page that fits its budget.
        small = await client.get(operator.url(agent.deployment_hash, "/commands"), params={"limit": 3, "offset": 1},
                                 headers=operator.auth)
        body = small.json()
        assert [c["command_id"] for c in body["commands"]] == ids[::-1][1:4]
        assert (body["next_offset"], body["truncated"]) == (4, False)


async def test_a_large_result_is_capped_in_its_command_and_read_exactly_in_pages(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator, agent = await setup(server, client)
        big = {"log": "é" * (MIB + 123), "exit_code": 0, "lines": list(range(1000))}
        large = await finish(client, operator, agent, result=big)
        small = await finish(client, operator, agent, result={"state": "running"})

        command = await operator.get(client, agent.deployment_hash, large)
        encoded = orjson.dumps(big)
        assert command["result"] is None and command["result_truncated"] is True
        assert command["result_bytes"] == len(encoded) > INLINE_LIMIT
        assert [h["status"] for h in command["history"]] == ["queued", "sent", "completed"]
        paged = await pages_of(client, server, operator, command["links"]["result"])
        assert orjson.loads(paged) == big and len(paged) == len(encoded)

        inline = await operator.get(client, agent.deployment_hash, small)
        assert inline["result"] == {"state": "running"} and inline["result_truncated"] is False
        assert await pages_of(client, server, operator, inline["links"]["result"]) == b'{"state":"running"}'

        # A page from the middle, of a chosen length.
        middle = await client.get(server.base_url + command["links"]["result"],
                                  params={"offset": 1000, "length": 5000}, headers=operator.auth)
        assert middle.content == paged[1000:6000] and middle.headers["X-Next-Offset"] == "6000"
        for bad in ({"offset": len(encoded) + 1}, {"length": 0}, {"length": INLINE_LIMIT + 1}, {"offset": "-1"}):
            refused = await client.get(server.base_url + command["links"]["result"], params=bad,
                                       headers=operator.auth)
            assert refused.status_code == 400, refused.text
            assert refused.json()["error"]["details"]["field"] == next(iter(bad))
        stranger = Operator(server, "someone", "another-tenant")
        hidden = await client.get(server.base_url + command["links"]["result"].replace(
            f"/users/{operator.user_id}/", "/users/someone/"), headers=stranger.auth)
        assert hidden.status_code == 404


async def test_a_large_error_is_capped_in_listings_commands_and_their_history(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=60) as client:
        operator, agent = await setup(server, client)
        error = "E" * (2 * MIB)
        failed = await finish(client, operator, agent, error=error)
        listing = (await client.get(operator.url(agent.deployment_hash, "/commands"), headers=operator.auth)).json()
        (item,) = listing["commands"]
        assert item["error"] is None and item["error_truncated"] is True
        assert item["error_bytes"] == len(orjson.dumps(error))
        response = await client.get(operator.url(agent.deployment_hash, f"/commands/{failed}"), headers=operator.auth)
        assert len(response.content) < INLINE_LIMIT
        command = response.json()
        assert command["status"] == "failed" and command["error"] is None and command["error_truncated"] is True
        assert command["history"][-1]["detail_truncated"] is True and "detail" not in command["history"][-1]
        assert orjson.loads(await pages_of(client, server, operator, command["links"]["error"])) == error


# ---- retired agents -------------------------------------------------------------------------

SYSTEM_INFO = {"blob": "s" * 60_000}


async def enroll_again(client: httpx.AsyncClient, server: ServerProcess, operator: Operator,
                       deployment_hash: str, times: int) -> list[StatusAgent]:
    """Enroll ``times`` agents one after the other: each retires the one before."""
    agents = []
    for _ in range(times):
        fresh = await client.post(operator.url(deployment_hash, "/enrollment"), headers=operator.auth)
        assert fresh.status_code == 201, fresh.text
        response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
            "deployment_hash": deployment_hash, "enrollment_token": fresh.json()["enrollment_token"],
            "capabilities": ["docker"], "system_info": SYSTEM_INFO, "agent_version": "1.0"})
        assert response.status_code == 201, response.text
        body = response.json()
        agents.append(StatusAgent(server.base_url, body["agent_id"], body["agent_token"], deployment_hash))
    return agents


async def retired_pages(client: httpx.AsyncClient, operator: Operator, deployment_hash: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    offset = 0
    while True:
        response = await client.get(operator.url(deployment_hash), headers=operator.auth,
                                    params={"retired": "true", "retired_limit": 7, "retired_offset": offset})
        assert response.status_code == 200, response.text
        page = response.json()["retired_agents"]
        assert len(page) <= 7
        found.extend(page)
        if len(page) < 7:
            return found
        offset += len(page)


async def test_retired_agents_are_listed_on_request_in_pages_without_system_info() -> None:
    # 21 enrolments from one address in a few seconds: more than its budget allows.
    with ServerProcess(["--registrations-per-address", "10000"]) as server:
        async with httpx.AsyncClient(timeout=30) as client:
            operator, first = await setup(server, client)
            h = first.deployment_hash
            agents = [first, *await enroll_again(client, server, operator, h, 20)]
            newest = agents[-1]

            async def check() -> None:
                response = await client.get(operator.url(h), headers=operator.auth)
                assert response.status_code == 200
                assert len(response.content) < 2 * len(orjson.dumps(SYSTEM_INFO))  # one agent's system info
                body = response.json()
                assert [a["agent_id"] for a in body["agents"]] == [newest.agent_id]
                assert body["agents"][0]["system_info"] == SYSTEM_INFO
                assert body["retired_agents_count"] == 20 and "retired_agents" not in body
                retired = await retired_pages(client, operator, h)
                assert [a["agent_id"] for a in retired] == [a.agent_id for a in reversed(agents[:-1])]
                assert all(a["enrollment_status"] == "decommissioned" and a["status"] == "offline"
                           and not a.get("system_info") for a in retired)
                for old in (agents[0], agents[-2]):
                    refused = await attrs.evolve(old, base_url=server.base_url).wait(client, timeout=1)
                    assert refused.status_code == 410 and refused.json()["error"]["code"] == "agent_decommissioned"
                assert (await attrs.evolve(newest, base_url=server.base_url).wait(client, timeout=1)).status_code == 204

            await check()
            bad = await client.get(operator.url(h), params={"retired": "true", "retired_limit": 501},
                                   headers=operator.auth)
            assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "retired_limit"
            bad = await client.get(operator.url(h), params={"retired": "maybe"}, headers=operator.auth)
            assert bad.status_code == 400 and bad.json()["error"]["details"]["field"] == "retired"

            assert server.stop(signal.SIGTERM) == 0
            server.start()
            await check()  # loaded again from the store: the same, and no system info came back


async def test_a_decommissioned_agent_is_retired_without_its_system_info(server: ServerProcess) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        operator, _ = await setup(server, client)
        deployment = await operator.create_deployment(client)
        h = deployment["deployment_hash"]
        response = await client.post(f"{server.base_url}/api/v1/agent/register", json={
            "deployment_hash": h, "enrollment_token": deployment["enrollment_token"], "system_info": SYSTEM_INFO})
        agent_id = response.json()["agent_id"]
        admin = attrs.evolve(operator, role="ADMIN")
        gone = await client.post(admin.url(h, f"/agents/{agent_id}/decommission"), headers=admin.auth)
        assert gone.status_code == 200 and not gone.json().get("system_info")
        body = (await client.get(operator.url(h), headers=operator.auth)).json()
        assert body["agents"] == [] and body["retired_agents_count"] == 1
