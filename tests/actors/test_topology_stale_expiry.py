"""A silent agent's nodes leave the topology at about ``agents.stale_threshold``,
when the agent list starts showing it stale, not at the next cleanup minutes
later; an agent still reporting keeps its nodes. The topology actor alone, its
wall clock and timers both on a mock clock."""

from __future__ import annotations

import time
from typing import Any

import attrs
import pytest
import trio

from tests.synthetic import host_report
from trioscope.actors.topology import (
    GetNodeDetails, GetSnapshot, MergeReport, Subscribe, TopologyActor, TopologyPublished, stale_check_period,
)
from trioscope.config import Settings
from trioscope.domain.topology import View, host_id
from trioscope.runtime import Actor, ActorRef, ActorSpec, Strategy, SupervisorSpec, open_actor_system
from trioscope.wire import decode_report

T0 = time.time()
STALE = 30.0
CLEANUP = 3600.0
"""Far longer than the threshold: the nodes must not wait for it."""


def with_threshold(settings: Settings) -> Settings:
    return attrs.evolve(settings, agents=attrs.evolve(settings.agents, stale_threshold=STALE),
                        storage=attrs.evolve(settings.storage, cleanup_interval=CLEANUP))


def wall() -> float:
    """The actor's wall clock, moving with the mock clock."""
    return T0 + trio.current_time()


def tree(settings: Settings) -> SupervisorSpec:
    return SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="topology", factory=lambda: TopologyActor(settings, clock=wall)),
    ])


def merge(index: int) -> MergeReport:
    now = wall()
    document = host_report(index, timestamp=now, containers=1, processes=2, connections=0)
    return MergeReport(decode_report(document), received_at=now)


async def hosts(topology: ActorRef) -> set[str]:
    snapshot = await topology.ask(GetSnapshot())
    return {node.id for node in snapshot.nodes(View.HOSTS)}


async def test_a_silent_agents_nodes_go_at_the_threshold_and_a_reporting_agents_stay(settings, autojump_clock):
    settings = with_threshold(settings)
    assert stale_check_period(settings) == 3.0
    silent, reporting = host_id("host-1"), host_id("host-2")
    async with open_actor_system(tree(settings)) as system:
        topology = system.lookup("/root/topology")
        await topology.ask(merge(1))
        await topology.ask(merge(2))
        assert await hosts(topology) == {silent, reporting}
        started = trio.current_time()
        for _ in range(2):  # host-2 reports at 10 s and 20 s; host-1 never again
            await trio.sleep(10)
            await topology.ask(merge(2))
        await trio.sleep(STALE - 5 - (trio.current_time() - started))
        assert await hosts(topology) == {silent, reporting}  # not stale yet
        await trio.sleep(STALE + stale_check_period(settings) + 1 - (trio.current_time() - started))
        assert trio.current_time() - started < CLEANUP
        assert await hosts(topology) == {reporting}
        # Its nodes are gone, not merely hidden: no details either.
        assert await topology.ask(GetNodeDetails(silent, 3600)) is None


class Listener(Actor):
    """A live client as the topology sees it: records what it is told."""

    def __init__(self, got: list[TopologyPublished]) -> None:
        self.got = got

    async def handle(self, message: Any) -> Any:
        if isinstance(message, TopologyPublished):
            self.got.append(message)
            return None
        return await super().handle(message)


async def test_the_version_without_them_reaches_subscribers_without_a_read(settings, autojump_clock):
    """Published by the actor's own timers: live clients see the host go, not
    only the next reader (a read publishes what is pending itself)."""
    settings = with_threshold(settings)
    got: list[TopologyPublished] = []
    spec = tree(settings)
    spec = attrs.evolve(spec, children=[*spec.children, ActorSpec(name="listener", factory=lambda: Listener(got))])
    async with open_actor_system(spec) as system:
        topology = system.lookup("/root/topology")
        await topology.ask(Subscribe(system.lookup("/root/listener")))
        await topology.ask(merge(1))
        await trio.sleep(1)
        assert got and {n.id for n in got[-1].snapshot.nodes(View.HOSTS)} == {host_id("host-1")}
        await trio.sleep(STALE + stale_check_period(settings))
        assert [n.id for n in got[-1].snapshot.nodes(View.HOSTS)] == []


@pytest.mark.parametrize("step", [600.0, -600.0])
async def test_the_servers_clock_set_makes_no_agent_stale_and_keeps_none(settings, autojump_clock, step):
    """The wall clock set 10 s in, by ``step``: forward, every agent's nodes
    went at the next look (a reporting agent's came back with its report, the
    live views churning); back, a silent agent's stayed for as long."""
    settings = with_threshold(settings)
    stepped = [0.0]

    def stepped_wall() -> float:
        return wall() + stepped[0]

    def merge_now(index: int) -> MergeReport:
        now = stepped_wall()
        return MergeReport(decode_report(host_report(index, timestamp=now, containers=1, processes=2,
                                                     connections=0)), received_at=now)

    silent, reporting = host_id("host-1"), host_id("host-2")
    spec = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="topology", factory=lambda: TopologyActor(settings, clock=stepped_wall,
                                                                 monotonic=trio.current_time)),
    ])
    async with open_actor_system(spec) as system:
        topology = system.lookup("/root/topology")
        await topology.ask(merge_now(1))
        await topology.ask(merge_now(2))
        started = trio.current_time()
        await trio.sleep(10)
        stepped[0] = step
        await topology.ask(merge_now(2))  # host-2 reports at 10 s and 20 s; host-1 never again
        await trio.sleep(2 * stale_check_period(settings))
        # Received after the step, not moved with those before it (set back,
        # host-2 was removed as silent at the next look).
        assert await hosts(topology) == {silent, reporting}
        await trio.sleep(10 - 2 * stale_check_period(settings))
        await topology.ask(merge_now(2))
        await trio.sleep(STALE - 5 - (trio.current_time() - started))
        assert await hosts(topology) == {silent, reporting}  # not stale yet
        await trio.sleep(STALE + stale_check_period(settings) + 1 - (trio.current_time() - started))
        assert await hosts(topology) == {reporting}


async def test_with_a_bus_the_streams_receive_times_are_not_moved_by_one_replicas_step(settings, autojump_clock):
    """With a bus every receive time is the stream's, stamped by whichever
    replica took the report: a replica whose clock was 10 minutes behind
    and is set right agrees with the others now. Moved by its step, an agent
    silent since the step stayed on its graph for 10 minutes longer than on
    the others'."""
    settings = attrs.evolve(with_threshold(settings), bus=attrs.evolve(settings.bus, url="nats://127.0.0.1:4222"))
    behind = [-600.0]

    def replica_b() -> float:  # this replica's clock, 10 minutes behind until set right
        return wall() + behind[0]

    spec = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="topology", factory=lambda: TopologyActor(settings, clock=replica_b,
                                                                 monotonic=trio.current_time)),
    ])
    async with open_actor_system(spec) as system:
        topology = system.lookup("/root/topology")
        now = wall()  # stamped by replica A, whose clock is right
        await topology.ask(MergeReport(decode_report(host_report(1, timestamp=now, containers=0, processes=1,
                                                                 connections=0)), received_at=now))
        await trio.sleep(1)
        behind[0] = 0.0  # set right
        await topology.ask(GetSnapshot())  # a message: the step is seen
        await trio.sleep(STALE + stale_check_period(settings) + 1)
        assert await hosts(topology) == set()
