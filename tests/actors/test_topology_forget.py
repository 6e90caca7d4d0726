"""An agent forgotten to make room for another (``ForgetAgent``) takes its
nodes' metric history with it, also when its nodes were removed as stale
before; what another agent's nodes still are (a service spanning hosts, a host
reported under another agent id) keeps its history."""

from __future__ import annotations

import time

import orjson

from tests.synthetic import host_report
from trioscope.actors.roster import ReportArrived
from trioscope.actors.topology import ExpireStale, ForgetAgent, GetNodeDetails, GetStats
from trioscope.domain.agents import PackedReport
from trioscope.domain.topology import host_id, process_id
from trioscope.runtime import open_actor_system
from trioscope.system import ROSTER, TOPOLOGY, supervision_tree
from trioscope.wire import decode_report

SHAPE = {"containers": 4, "processes": 5, "connections": 0}
"""Containers in pods, in services other hosts' containers are in too, and processes in groups."""
SERVICE = "service:prod/web-0"
"""A service the containers of every host of ``host_report`` are in."""


async def deliver(system, index: int, *, at: float, agent_prefix: str = "agent") -> None:
    document = host_report(index, timestamp=at, agent_prefix=agent_prefix, **SHAPE)
    await system.lookup(ROSTER).ask(ReportArrived(decode_report(document), PackedReport.pack(orjson.dumps(document)),
                                                  at))


async def series(system) -> int:
    stats = await system.lookup(TOPOLOGY).ask(GetStats())
    return int(stats["storage"]["metric_series"])


async def history_points(system, node_id: str) -> int:
    details = await system.lookup(TOPOLOGY).ask(GetNodeDetails(node_id, 3600))
    return len(details["metrics_history"]["points"])


async def test_a_forgotten_agents_series_go_and_a_service_other_hosts_are_in_keeps_its_own(settings) -> None:
    now = time.time()
    async with open_actor_system(supervision_tree(settings)) as system:
        await deliver(system, 2, at=now)
        alone = await series(system)
        await deliver(system, 1, at=now)
        assert await series(system) > alone
        system.lookup(TOPOLOGY).tell(ForgetAgent("agent-1"))
        assert await series(system) == alone  # they stayed for max_data_age
        assert await history_points(system, SERVICE) == 1


async def test_an_agent_removed_as_stale_keeps_its_series_until_it_is_forgotten(settings) -> None:
    """Removed as stale, an agent still holds its place (its actor lives on for
    ``max_data_age``) and its series with it: back by then it finds them. Once
    forgotten for a new agent, they go (they stayed: the agents forgotten at
    ``max_agents`` are mostly the stale ones, their nodes removed already)."""
    now = time.time()
    stale = settings.agents.stale_threshold
    async with open_actor_system(supervision_tree(settings)) as system:
        await deliver(system, 2, at=now)
        alone = await series(system)
        await deliver(system, 1, at=now - stale - 60)
        with_it = await series(system)
        assert with_it > alone
        assert await system.lookup(TOPOLOGY).ask(ExpireStale()) is None
        assert await series(system) == with_it
        system.lookup(TOPOLOGY).tell(ForgetAgent("agent-1"))
        assert await series(system) == alone


async def test_a_host_another_agent_id_reports_keeps_its_history(settings) -> None:
    """The same host under a new agent id (a probe installed again): forgetting
    the old id leaves the host's and its processes' history, which the new id
    writes on."""
    now = time.time()
    async with open_actor_system(supervision_tree(settings)) as system:
        await deliver(system, 1, at=now - 30)
        await deliver(system, 1, at=now, agent_prefix="again")
        host, process = host_id("host-1"), process_id("host-1", 1000)
        assert await history_points(system, host) == 2
        system.lookup(TOPOLOGY).tell(ForgetAgent("agent-1"))
        assert await history_points(system, host) == 2
        assert await history_points(system, process) >= 1
