"""The live hub under a burst of joining clients: one question to the topology
for all of them, one shared first update, and updates to everyone else go on
while the topology is slow to answer. A stand-in topology and a mock clock."""

from __future__ import annotations

import time
from typing import Any

import pytest
import trio

from tests.synthetic import host_report
from trioscope.actors.hub import HubActor, Join, LiveUpdate, ReportSeen, ReportUpdate, WantReports
from trioscope.actors.topology import GetSnapshot, Subscribe, TopologyPublished
from trioscope.domain.agents import host_metrics
from trioscope.domain.topology import TopologyGraph, View
from trioscope.runtime import Actor, ActorSpec, Strategy, SupervisorSpec, open_actor_system
from trioscope.wire import decode_report

T0 = time.time()


class SlowTopology(Actor):
    """Answers ``GetSnapshot`` after ``delay`` seconds (busy merging), counting
    the questions. Versions are published by the test (``publish``)."""

    def __init__(self, graph: TopologyGraph, delay: float) -> None:
        self.graph = graph
        self.snapshot, _ = graph.publish(T0)
        self.delay = delay
        self.asked = 0

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Subscribe):
            return self.snapshot
        if isinstance(message, GetSnapshot):
            self.asked += 1
            await trio.sleep(self.delay)
            return self.snapshot
        return await super().handle(message)

    def publish(self, host: int) -> TopologyPublished:
        """A report from ``host`` merged and published: what the hub is told."""
        self.graph.apply(decode_report(host_report(host, timestamp=T0 + host, containers=1, processes=1,
                                                   connections=0)), T0 + host)
        self.snapshot, diff = self.graph.publish(T0 + host)
        assert diff is not None
        return TopologyPublished(self.snapshot, diff)


class Listener(Actor):
    """A client actor as the hub sees it: records what it is told."""

    def __init__(self, got: list[Any]) -> None:
        self.got = got

    async def handle(self, message: Any) -> Any:
        self.got.append(message)


async def hub_with(delay: float, listeners: int):  # type: ignore[no-untyped-def]
    graph = TopologyGraph(T0)
    graph.apply(decode_report(host_report(1, timestamp=T0, containers=1, processes=1, connections=0)), T0)
    topology = SlowTopology(graph, delay)
    got: list[list[Any]] = [[] for _ in range(listeners)]
    tree = SupervisorSpec(name="root", strategy=Strategy.ONE_FOR_ONE, children=[
        ActorSpec(name="topology", factory=lambda: topology),
        ActorSpec(name="hub", factory=lambda: HubActor("/root/topology", max_rate=100)),
        *[ActorSpec(name=f"client-{i}", factory=lambda i=i: Listener(got[i])) for i in range(listeners)],
    ])
    return tree, topology, got


async def test_a_burst_of_joiners_shares_one_topology_question_and_one_first_update(autojump_clock):
    tree, topology, got = await hub_with(delay=0.5, listeners=50)
    async with open_actor_system(tree) as system:
        hub = system.lookup("/root/hub")
        for i in range(50):
            hub.tell(Join(system.lookup(f"/root/client-{i}")))
        await trio.sleep(2)
        assert topology.asked == 1
        firsts = [messages[0] for messages in got]
        assert all(isinstance(first, LiveUpdate) for first in firsts)
        assert len({id(first) for first in firsts}) == 1
        # ... whose first message is encoded once for all of them.
        assert firsts[0].reset(View.HOSTS) is firsts[1].reset(View.HOSTS)


async def test_updates_go_on_while_the_topology_is_slow_to_answer_a_joiner(autojump_clock):
    tree, topology, got = await hub_with(delay=30, listeners=2)
    async with open_actor_system(tree) as system:
        hub = system.lookup("/root/hub")
        hub.tell(Join(system.lookup("/root/client-0")))
        await trio.sleep(31)
        assert len(got[0]) == 1
        hub.tell(Join(system.lookup("/root/client-1")))  # its snapshot takes 30 s to come
        await trio.sleep(1)
        hub.tell(topology.publish(2))  # a report merged meanwhile
        with trio.fail_after(5):
            while len(got[0]) < 2:
                await trio.sleep(0.01)
        update = got[0][1]
        assert isinstance(update, LiveUpdate) and update.diff is not None
        assert got[1] == []  # the joiner is told once its start is known, and only then
        await trio.sleep(30)
        assert [type(m) for m in got[1]] == [LiveUpdate]
        assert got[1][0].version >= update.version


async def test_report_updates_go_only_to_the_clients_that_want_them(autojump_clock):
    tree, topology, got = await hub_with(delay=0, listeners=2)
    async with open_actor_system(tree) as system:
        hub = system.lookup("/root/hub")
        clients = [system.lookup(f"/root/client-{i}") for i in range(2)]
        for client in clients:
            hub.tell(Join(client))
        hub.tell(WantReports(clients[1], True))
        await trio.sleep(1)
        assert [type(m) for m in got[0]] == [type(m) for m in got[1]] == [LiveUpdate]

        def seen(host: int) -> ReportSeen:
            report = decode_report(host_report(host, timestamp=T0 + host, containers=1, processes=1, connections=0))
            return ReportSeen(report.agent_id, report.host_name, T0 + host, host_metrics(report))

        hub.tell(seen(2))
        hub.tell(topology.publish(2))
        await trio.sleep(1)
        assert [type(m) for m in got[0]] == [LiveUpdate, LiveUpdate]  # the diff, and no report update
        assert sorted(type(m).__name__ for m in got[1]) == ["LiveUpdate", "LiveUpdate", "ReportUpdate"]
        assert [m.agent_id for m in got[1] if isinstance(m, ReportUpdate)] == ["agent-2"]

        hub.tell(WantReports(clients[1], False))
        hub.tell(seen(3))
        hub.tell(topology.publish(3))
        await trio.sleep(1)
        assert not any(isinstance(m, ReportUpdate) for m in got[1][3:])
        assert len(got[1]) == 4  # the new diff only


@pytest.fixture
def autojump_clock() -> trio.testing.MockClock:
    return trio.testing.MockClock(autojump_threshold=0)
