"""Deployments and agents across replicas: an agent enrolled or decommissioned
through one replica is accepted or refused by the other, and a replica started
later holds the open commands and their deadlines."""

from __future__ import annotations

import signal

import attrs
import httpx
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.cluster import events_until, held_polls, on, operator_on, user_events
from tests.replicas.conftest import replica
from tests.server_process import ServerProcess
from tests.waiting import eventually


async def test_an_agent_decommissioned_on_a_is_refused_on_b_and_its_poll_there_ends(
        replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        admin = attrs.evolve(operator, role="ADMIN")
        held: list[httpx.Response] = []

        async def hold_on_b() -> None:
            held.append(await on(agent, b).wait(client, timeout=60))

        async with user_events(b, admin) as heard_on_b, trio.open_nursery() as nursery:
            nursery.start_soon(hold_on_b)
            await eventually(lambda: held_polls(client, b))
            response = await client.post(admin.url(agent.deployment_hash, f"/agents/{agent.agent_id}/decommission"),
                                         headers=admin.auth)
            assert response.status_code == 200, response.text
            # Its poll on B may have said it online first (that event can come after the socket opened).
            events = await events_until(heard_on_b, lambda e: e["type"] == "agent_status"
                                        and e["enrollment_status"] != "active")
            await eventually(lambda: _answered(held), deadline=10)  # well before the poll's 60 s
        assert (events[-1]["agent_id"], events[-1]["status"], events[-1]["enrollment_status"]) == (
            agent.agent_id, "offline", "decommissioned")
        assert held[0].status_code == 410, held[0].text
        again = await on(agent, b).wait(client, timeout=1)
        assert again.status_code == 410 and again.json()["error"]["code"] == "agent_decommissioned"


async def test_a_replica_started_later_holds_the_open_commands_and_fires_their_deadlines(
        postgres_url: str) -> None:
    async with httpx.AsyncClient(timeout=30) as client:
        with replica(postgres_url) as a:
            operator = Operator(a, fresh("user"), fresh("tenant"))
            agent = await enroll(client, a, operator)
            created = await operator.command(client, agent.deployment_hash, timeout_seconds=3)
            polled = await agent.poll(client, timeout=10)
            assert polled is not None and polled.command_id == created["command_id"]
            with replica(postgres_url) as b:  # started after the command was delivered
                a.stop(signal.SIGKILL)
                via_b = operator_on(operator, b)

                async def timed_out() -> bool:
                    command = await via_b.get(client, agent.deployment_hash, created["command_id"])
                    return command["status"] == "failed"

                await eventually(timed_out)
                command = await via_b.get(client, agent.deployment_hash, created["command_id"])
        assert command["error"] == "timed out"
        assert [h["status"] for h in command["history"]] == ["queued", "sent", "failed"]


async def _answered(answered: list[httpx.Response]) -> bool:
    return bool(answered)
