"""``kill -9`` of one replica in the middle of load: every command it
acknowledged is in the database with a consistent status, and the agents'
polls carry on through the other replica."""

from __future__ import annotations

import collections
import itertools
import signal
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import trio

from tests.integration.test_commands import Operator, enroll, fresh
from tests.replicas.cluster import on, operator_on
from tests.replicas.conftest import two_replicas
from tests.server_process import ServerProcess
from tests.status_agent import StatusAgent
from tests.waiting import eventually
from trioscope.domain.commands import TRANSITIONS, CommandStatus

DEPLOYMENTS = 6
POLLS_PER_AGENT = 4
BEFORE_KILL = 60
AFTER_KILL = 60
UNLIMITED = ("--rate-per-address", "1000000", "--rate-per-agent", "1000000", "--rate-per-user", "1000000")
TIMEOUT_SECONDS = 3
"""A command whose poll died with its replica is failed by the other (timed out) rather than wait 300 s."""


@pytest.fixture
def busy_replicas(request: pytest.FixtureRequest, postgres_url: str) -> Iterator[tuple[ServerProcess, ServerProcess]]:
    with two_replicas(request, postgres_url, *UNLIMITED) as both:
        yield both


def _legal(statuses: list[str]) -> bool:
    """Whether a history's statuses are a path through the state machine."""
    steps = zip(statuses, statuses[1:], strict=False)
    return all(CommandStatus(after) in TRANSITIONS[CommandStatus(before)].values() for before, after in steps)


async def test_kill_9_of_one_replica_mid_load_loses_nothing_and_polls_carry_on(
        busy_replicas: tuple[ServerProcess, ServerProcess]) -> None:
    a, b = busy_replicas
    limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
    async with httpx.AsyncClient(timeout=30, limits=limits) as client:
        teams: list[tuple[Operator, StatusAgent]] = []
        for _ in range(DEPLOYMENTS):
            operator = Operator(a, fresh("user"), fresh("tenant"))
            teams.append((operator, await enroll(client, a, operator)))
        acknowledged: dict[str, tuple[Operator, StatusAgent]] = {}
        delivered: collections.Counter[str] = collections.Counter()
        reported: set[str] = set()
        a_gone = trio.Event()

        async def keep_polling(agent: StatusAgent, first: ServerProcess) -> None:
            """As an agent behind a load balancer: its replica, then the other once that one is gone."""
            current = on(agent, first)
            while True:
                try:
                    polled = await current.poll(client, timeout=5)
                    if polled is None:
                        continue
                    delivered[polled.command_id] += 1
                    answer = await current.report(client, polled.command_id, "success", result={})
                    if answer.status_code == 200:
                        reported.add(polled.command_id)
                except httpx.TransportError:
                    await a_gone.wait()
                    current = on(agent, b)

        async def create(count: int, servers: tuple[ServerProcess, ...]) -> None:
            for n, (operator, agent) in zip(range(count), itertools.cycle(teams), strict=False):
                via = operator_on(operator, servers[n % len(servers)])
                try:
                    response = await client.post(via.url(agent.deployment_hash, "/commands"), headers=via.auth,
                                                 json={"type": "restart", "timeout_seconds": TIMEOUT_SECONDS})
                except httpx.TransportError:
                    continue  # never acknowledged: nothing is promised
                if response.status_code == 202:
                    acknowledged[response.json()["command_id"]] = (operator, agent)

        async with trio.open_nursery() as polls:
            for _, agent in teams:
                for n in range(POLLS_PER_AGENT):
                    polls.start_soon(keep_polling, agent, (a, b)[n % 2])
            async with trio.open_nursery() as creators:
                creators.start_soon(create, BEFORE_KILL, (a, b))
                await eventually(lambda: _at_least(len(acknowledged), BEFORE_KILL // 2))
                a.stop(signal.SIGKILL)  # in the middle of creating, delivering, reporting
                a_gone.set()
            await create(AFTER_KILL, (b,))

            # Every acknowledged command ends: reported through B, or failed by B's
            # deadline if its poll or report died with A.
            async def all_finished() -> bool:
                for command_id, (operator, agent) in acknowledged.items():
                    command = await operator_on(operator, b).get(client, agent.deployment_hash, command_id)
                    if not CommandStatus(command["status"]).terminal:
                        return False
                return True
            await eventually(all_finished, deadline=60)
            polls.cancel_scope.cancel()

        finals: collections.Counter[str] = collections.Counter()
        for command_id, (operator, agent) in acknowledged.items():
            command: dict[str, Any] = await operator_on(operator, b).get(client, agent.deployment_hash, command_id)
            statuses = [h["status"] for h in command["history"]]
            assert _legal(statuses), (command_id, statuses)
            assert statuses.count("sent") <= 2  # delivered once (again only after a poll closed before delivery)
            finals[command["status"]] += 1
            if command["status"] == "completed":
                assert command_id in delivered
            else:
                assert (command["status"], command["error"]) == ("failed", "timed out"), command
        assert finals["completed"] >= AFTER_KILL, finals  # the agents carried on through B
        assert set(finals) <= {"completed", "failed"}, finals


async def _at_least(value: int, wanted: int) -> bool:
    return value >= wanted
