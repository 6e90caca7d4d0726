"""The roster actor: one message per probe report, registration or heartbeat;
it owns the probes' actors (starts them, forgets one to make room) and hands a
report to the topology, the probe's actor and the hub. Refusals are raised at
the asker, typed, and never restart the roster."""

from __future__ import annotations

import time

import attrs
import orjson
import pytest

from tests.actors.test_roster_signers import enrolled_agent
from tests.synthetic import container_hex, host_report
from tests.waiting import eventually
from trioscope.actors.agent import Describe, LatestReport
from trioscope.actors.refusals import TooManyAgents, UnknownProbe
from trioscope.actors.roster import ProbeHeartbeat, RegisterProbe, ReportArrived
from trioscope.actors.topology import GetSnapshot
from trioscope.domain.agents import PackedReport
from trioscope.wire import rfc3339_seconds
from trioscope.wire import AgentRegistration, decode_report
from trioscope.domain.topology import View, container_id, host_id
from trioscope.runtime import open_actor_system
from trioscope.system import AGENTS, ROSTER, TOPOLOGY, supervision_tree


def arrived(index: int) -> ReportArrived:
    """Agent ``index``'s report, received now (the roster hears from an agent
    when its report was received, which a time taken at import may be minutes before)."""
    at = time.time()
    document = host_report(index, timestamp=at, containers=1, processes=2, connections=0)
    return ReportArrived(decode_report(document), PackedReport.pack(orjson.dumps(document)), at)


def restarts(system, path: str) -> int:
    return next(c for c in system.snapshot().root.children if c.path == path).restarts


async def test_one_report_reaches_the_topology_and_a_new_agent_actor(settings) -> None:
    async with open_actor_system(supervision_tree(settings)) as system:
        report = arrived(1)
        assert await system.lookup(ROSTER).ask(report) is None
        agent = system.lookup(AGENTS).child(report.report.agent_id)
        assert agent is not None  # started by the roster, not by the asker
        latest = await agent.ask(LatestReport())
        assert orjson.loads(latest.raw)["agent_id"] == report.report.agent_id
        assert latest.received_at == report.received_at
        snapshot = await system.lookup(TOPOLOGY).ask(GetSnapshot())
        assert host_id("host-1") in {n.id for n in snapshot.nodes(View.HOSTS)}


async def test_a_signed_reports_containers_offer_controls_and_an_unsigned_ones_none(settings) -> None:
    """Whether an enrolled agent signed the report (``enrolled``, known where it
    was received) reaches the topology: the control endpoint refuses the
    containers of unsigned reports (the local probe's), so they offer none."""
    async with open_actor_system(supervision_tree(settings)) as system:
        roster, topology = system.lookup(ROSTER), system.lookup(TOPOLOGY)

        async def offered(index: int) -> bool:
            snapshot = await topology.ask(GetSnapshot())
            node = snapshot.node(container_id(container_hex(f"agent-{index}", 0)))
            return "controls" in node.metadata

        await roster.ask(attrs.evolve(arrived(1), enrolled=True))
        await roster.ask(arrived(2))
        assert (await offered(1), await offered(2)) == (True, False)
        # The same content later, signed otherwise: a probe decommissioned, one enrolled.
        at = time.time() + 15
        later = host_report(1, timestamp=at, containers=1, processes=2, connections=0)
        await roster.ask(ReportArrived(decode_report(later), PackedReport.pack(orjson.dumps(later)), at))
        later = host_report(2, timestamp=at, containers=1, processes=2, connections=0)
        await roster.ask(ReportArrived(decode_report(later), PackedReport.pack(orjson.dumps(later)), at,
                                       enrolled=True))
        assert (await offered(1), await offered(2)) == (False, True)


async def test_registration_and_heartbeat_go_to_the_agents_actor(settings) -> None:
    async with open_actor_system(supervision_tree(settings)) as system:
        roster = system.lookup(ROSTER)
        with pytest.raises(UnknownProbe):
            await roster.ask(ProbeHeartbeat("probe-1"))
        await roster.ask(RegisterProbe(AgentRegistration(agent_id="probe-1", hostname="h1")))
        at = await roster.ask(ProbeHeartbeat("probe-1"))
        described = await system.lookup(AGENTS).child("probe-1").ask(Describe())
        assert described["hostname"] == "h1" and described["last_heartbeat"] is not None
        assert restarts(system, ROSTER) == 0 and isinstance(at, float)


async def test_a_new_probe_beyond_max_agents_is_refused_at_the_asker(settings) -> None:
    full = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=2))
    async with open_actor_system(supervision_tree(full)) as system:
        roster = system.lookup(ROSTER)
        for i in (1, 2):
            await roster.ask(arrived(i))
        with pytest.raises(TooManyAgents) as refused:
            await roster.ask(arrived(3))  # the others are fresh: none may be forgotten for it
        assert refused.value.limit == 2
        await roster.ask(arrived(1))  # known probes go on
        assert {ref.path.rsplit("/", 1)[-1] for ref in system.lookup(AGENTS).children()} == {
            arrived(1).report.agent_id, arrived(2).report.agent_id}
        assert restarts(system, ROSTER) == 0


async def test_a_new_enrolled_probe_takes_the_place_of_the_oldest_unenrolled_one(settings) -> None:
    full = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=2))
    async with open_actor_system(supervision_tree(full)) as system:
        roster = system.lookup(ROSTER)
        for i in (1, 2):
            await roster.ask(arrived(i))
        await roster.ask(attrs.evolve(arrived(3), enrolled=True))
        assert {ref.path.rsplit("/", 1)[-1] for ref in system.lookup(AGENTS).children()} == {
            arrived(2).report.agent_id, arrived(3).report.agent_id}


def from_address(index: int, address: str, *, enrolled: bool = False) -> ReportArrived:
    return attrs.evolve(arrived(index), address=address, enrolled=enrolled)


def tracked(system) -> set[str]:
    return {ref.path.rsplit("/", 1)[-1] for ref in system.lookup(AGENTS).children()}


async def test_an_address_s_enrolled_probes_count_in_no_share(settings) -> None:
    """Address A's two signed probes are not part of its share: a newcomer from
    C takes a place of B (two unsigned probes), not of A (one). Counting them,
    A looked the largest, and the oldest probe there was taken. (Two enrolled
    agents sign them, whom the roster cannot name, as for reports of the
    stream: no more such probes than there are agents count as enrolled.)"""
    full = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=5))
    async with open_actor_system(supervision_tree(full)) as system:
        roster = system.lookup(ROSTER)
        for _ in range(2):
            await enrolled_agent(system)
        for report in (from_address(1, "10.0.0.1", enrolled=True), from_address(2, "10.0.0.1", enrolled=True),
                       from_address(3, "10.0.0.1"), from_address(4, "10.0.0.2"), from_address(5, "10.0.0.2")):
            await roster.ask(report)
        await roster.ask(from_address(6, "10.0.0.3"))
        assert tracked(system) == {arrived(i).report.agent_id for i in (1, 2, 3, 5, 6)}


class Poison:
    """A message the roster does not understand: handling it raises."""


async def test_a_restarted_roster_still_knows_where_each_probe_reports_from(settings) -> None:
    """It used to restart knowing the running probes but not their addresses:
    the address that had taken every place kept them all."""
    full = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=3))
    async with open_actor_system(supervision_tree(full)) as system:
        roster = system.lookup(ROSTER)
        for i in (1, 2, 3):
            await roster.ask(from_address(i, "10.0.0.1"))
        roster.tell(Poison())
        await roster.ask(from_address(4, "10.0.0.2"))  # asked of the restarted roster
        assert restarts(system, ROSTER) == 1
        assert tracked(system) == {arrived(i).report.agent_id for i in (2, 3, 4)}


def received(index: int, at: float) -> ReportArrived:
    """Agent ``index``'s report as the report stream replays it: received at ``at``."""
    document = host_report(index, timestamp=at, containers=1, processes=2, connections=0)
    return ReportArrived(decode_report(document), PackedReport.pack(orjson.dumps(document)), at,
                         sequence=index, history=True)


async def test_an_agent_whose_replayed_report_is_stale_does_not_block_a_new_one_at_max_agents(settings) -> None:
    """A report replayed from the stream is heard from when it was received: an
    agent silent since for ``stale_threshold`` makes room for a new one, as on
    the replicas that were running (it used to count as heard from at the
    restart, and the first ids of the stream held every place)."""
    stale, now = settings.agents.stale_threshold, time.time()
    full = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=2))
    async with open_actor_system(supervision_tree(full)) as system:
        roster = system.lookup(ROSTER)
        await roster.ask(received(1, now - stale - 600))
        await roster.ask(received(2, now - stale - 300))
        await roster.ask(received(3, now - 10))
        await roster.ask(received(4, now - 5))
        assert {ref.path.rsplit("/", 1)[-1] for ref in system.lookup(AGENTS).children()} == {"agent-3", "agent-4"}
        with pytest.raises(TooManyAgents):
            await roster.ask(received(5, now))  # 3 and 4 are fresh


async def test_an_agent_first_known_from_an_old_report_was_last_seen_when_it_was_received(settings) -> None:
    """Not when its actor started: a replica that replays the stream lists an
    agent silent for an hour as stale, with the time of its last report."""
    stale = settings.agents.stale_threshold
    async with open_actor_system(supervision_tree(settings)) as system:
        at = time.time() - stale - 60
        await system.lookup(ROSTER).ask(received(1, at))
        described = await system.lookup(AGENTS).child("agent-1").ask(Describe())
        assert described["status"] == "stale"
        assert described["last_seen"] == described["last_report_at"] == rfc3339_seconds(at)


async def test_a_probe_whose_actor_stopped_by_itself_leaves_the_roster(settings) -> None:
    """A probe actor silent past max_data_age stops itself without telling the
    roster: every probe id ever seen stayed in it (its address and standing
    too) until it held twice max_agents."""
    settings = attrs.evolve(settings, storage=attrs.evolve(settings.storage, cleanup_interval=0.05))
    tree = supervision_tree(settings)
    # The roster the running actor holds: its spec keeps it (``Kept``), and any incarnation takes the same.
    roster = next(spec for spec in tree.children if spec.name == ROSTER.rsplit("/", 1)[-1]).factory().roster
    async with open_actor_system(tree) as system:
        gone, staying = arrived(1), arrived(2)
        for report in (gone, staying):
            await system.lookup(ROSTER).ask(report)
        assert {gone.report.agent_id, staying.report.agent_id} <= set(roster._heard)
        await system.lookup(AGENTS).stop_child(gone.report.agent_id)  # as its own _Tick stops it

        async def forgotten() -> bool:
            return gone.report.agent_id not in roster
        await eventually(forgotten)
        assert staying.report.agent_id in roster
