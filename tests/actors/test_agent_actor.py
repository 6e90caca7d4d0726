"""Agent actors: liveness status and removal after max_data_age, on a fake clock."""

from __future__ import annotations

import attrs
import trio

from trioscope.actors.agent import Describe, Heartbeat, agent_spec
from trioscope.config import Settings
from trioscope.runtime import SupervisorSpec, dynamic_supervisor, open_actor_system


async def test_an_agent_turns_stale_then_is_forgotten(autojump_clock):
    defaults = Settings.defaults()
    settings = attrs.evolve(
        defaults,
        storage=attrs.evolve(defaults.storage, max_data_age=120.0, cleanup_interval=10.0),
        agents=attrs.evolve(defaults.agents, stale_threshold=30.0),
    )
    wall = [1_000_000.0]

    def clock() -> float:
        return wall[0] + trio.current_time()

    tree = SupervisorSpec(name="root", children=[dynamic_supervisor("agents")])
    async with open_actor_system(tree) as system:
        agents = system.lookup("/root/agents")
        ref = await agents.start_child(agent_spec("agent-1", settings, clock))
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
