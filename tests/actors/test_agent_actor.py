"""Agent actors: liveness status and removal after max_data_age, on a fake clock."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import orjson
import trio

from tests.synthetic import host_report
from trioscope.actors.agent import Describe, Heartbeat, LatestReport, ReportReceived, Timeseries, agent_spec
from trioscope.domain.agents import PackedReport
from trioscope.wire import decode_report
from trioscope.config import Settings
from trioscope.runtime import ActorRef, SupervisorSpec, dynamic_supervisor, open_actor_system


def short_lived() -> Settings:
    """A history of 2 minutes, cleaned every 10 s; stale after 30 s."""
    defaults = Settings.defaults()
    return attrs.evolve(
        defaults,
        storage=attrs.evolve(defaults.storage, max_data_age=120.0, cleanup_interval=10.0),
        agents=attrs.evolve(defaults.agents, stale_threshold=30.0),
    )


@asynccontextmanager
async def one_agent(wall: list[float]) -> AsyncIterator[tuple[ActorRef, ActorRef]]:
    """The agents' supervisor and one agent's actor, its wall clock ``wall`` plus the (mock) clock."""
    def clock() -> float:
        return wall[0] + trio.current_time()

    tree = SupervisorSpec(name="root", children=[dynamic_supervisor("agents")])
    async with open_actor_system(tree) as system:
        agents = system.lookup("/root/agents")
        yield agents, await agents.start_child(agent_spec("agent-1", short_lived(), clock))


async def test_an_agent_turns_stale_then_is_forgotten(autojump_clock):
    wall = [1_000_000.0]
    async with one_agent(wall) as (agents, ref):
        await ref.ask(Heartbeat())
        assert (await ref.ask(Describe()))["status"] == "healthy"
        await trio.sleep(31)
        assert (await ref.ask(Describe()))["status"] == "stale"
        await ref.ask(Heartbeat())
        assert (await ref.ask(Describe()))["status"] == "healthy"
        started = trio.current_time()
        await ref.wait_stopped()
        silent_for = trio.current_time() - started
        assert 120 < silent_for <= 130  # removed at the first cleanup tick after max_data_age
        assert agents.child("agent-1") is None


async def test_the_servers_clock_set_forward_is_no_silence_and_set_back_hides_none(autojump_clock):
    """Set forward by more than ``max_data_age``, an agent heard from 5 s
    before was stale, and forgotten with its registration at the next tick;
    set back, one silent since looked healthy for as long as the step."""
    wall = [1_000_000.0]
    async with one_agent(wall) as (agents, ref):
        await ref.ask(Heartbeat())
        await trio.sleep(5)
        wall[0] += 2 * 3600.0  # a VM resumed, NTP setting a clock that was behind
        assert (await ref.ask(Describe()))["status"] == "healthy"
        await trio.sleep(11)  # a cleanup tick
        assert agents.child("agent-1") is not None
        await ref.ask(Heartbeat())
        wall[0] -= 4 * 3600.0  # set back
        await trio.sleep(31)
        assert (await ref.ask(Describe()))["status"] == "stale"


class Poison:
    """A message the agent's actor does not understand: handling it raises."""


async def test_a_crash_loses_neither_the_latest_report_nor_the_history():
    """The state outlives the actor: it used to restart empty, and a topology
    rebuilt after that from the agents' latest reports left the agent out."""
    settings = Settings.defaults()
    now = time.time()
    tree = SupervisorSpec(name="root", children=[dynamic_supervisor("agents")])
    async with open_actor_system(tree) as system:
        agents = system.lookup("/root/agents")
        ref = await agents.start_child(agent_spec("agent-7", settings))
        for age in (60, 0):
            document = host_report(7, timestamp=now - age, containers=0, processes=1, connections=0)
            await ref.ask(ReportReceived(decode_report(document), PackedReport.pack(orjson.dumps(document)), now - age))
        latest, points = await ref.ask(LatestReport()), await ref.ask(Timeseries(300))
        assert latest is not None and len(points) == 2
        ref.tell(Poison())
        assert await ref.ask(LatestReport()) == latest  # answered by the restarted actor
        assert await ref.ask(Timeseries(300)) == points
        supervisor = next(c for c in system.snapshot().root.children if c.path == "/root/agents")
        assert [c.restarts for c in supervisor.children] == [1]
