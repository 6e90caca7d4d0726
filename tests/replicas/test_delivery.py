"""Commands across two replicas: created on one, delivered to a poll held on
the other, exactly once."""

from __future__ import annotations

import attrs
import httpx
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent


def on(agent: StatusAgent, server: ServerProcess) -> StatusAgent:
    """The same agent, talking to another replica."""
    return attrs.evolve(agent, base_url=server.base_url)


async def test_a_command_created_on_a_reaches_a_poll_held_on_b(replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = replicas
    async with httpx.AsyncClient(timeout=30) as client:
        operator = Operator(a, fresh("user"), fresh("tenant"))
        agent = await enroll(client, a, operator)
        agent_b = on(agent, b)
        polled: list[object] = []

        async def poll() -> None:
            polled.append(await agent_b.poll(client, timeout=20))

        async with trio.open_nursery() as nursery:
            nursery.start_soon(poll)
            await trio.sleep(0.5)  # TODO: wait for the poll held
            created = await operator.command(client, agent.deployment_hash, type="restart")
        assert len(polled) == 1 and polled[0] is not None
        assert polled[0].command_id == created["command_id"]
