"""The roster counts a probe as enrolled only while it is the probe id its
enrolled agent reports under (the directory's attachment, or, for reports of
the stream, no more than there are enrolled agents); and a probe it forgets to
make room takes its host metrics' series with it."""

from __future__ import annotations

import time

import attrs
import orjson

from tests.synthetic import host_report
from trioscope.actors.directory import AttachReporter, CreateDeployment, RegisterAgent
from trioscope.actors.metrics import GetNodeSeriesCounters, InstantQuery
from trioscope.actors.roster import ReportArrived, ReportsArrived
from trioscope.domain.agents import PackedReport
from trioscope.domain.commands import AgentRegistration
from trioscope.runtime import open_actor_system
from trioscope.store import AuditEntry
from trioscope.system import AGENTS, DIRECTORY, METRICS, ROSTER, supervision_tree
from trioscope.wire import decode_report
from tests.waiting import eventually


def report(agent_id: str, *, address: str, enrolled: bool = False, at: float | None = None,
           signer: str | None = None) -> ReportArrived:
    at = time.time() if at is None else at
    document = host_report(0, timestamp=at, containers=0, processes=1, connections=0)
    document["agent_id"] = agent_id
    return ReportArrived(decode_report(document), PackedReport.pack(orjson.dumps(document)), at,
                         enrolled=enrolled, address=address, signer=signer)


def tracked(system) -> set[str]:
    return {ref.path.rsplit("/", 1)[-1] for ref in system.lookup(AGENTS).children()}


def audit(action: str) -> AuditEntry:
    return AuditEntry(at=time.time(), tenant="t", actor="user:u", action=action)


async def enrolled_agent(system) -> str:
    """A deployment's enrolled agent (its id)."""
    directory = system.lookup(DIRECTORY)
    deployment, enrollment = await directory.ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
    agent, _ = await directory.ask(RegisterAgent(
        AgentRegistration(deployment_hash=deployment.hash, enrollment_token=enrollment), enrollment,
        audit("agent.register")))
    return str(agent.id)


def with_max_agents(settings, count: int, **agents):
    return attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=count, **agents))


async def test_an_enrolled_agent_making_up_probe_ids_holds_one_place(settings) -> None:
    """As the HTTP edge hands a signed report on: the directory attached its
    probe id to the signing agent first (``_gate.vouch``). Every made-up id
    used to stay enrolled: they took every place, then no unenrolled probe
    could take one of theirs."""
    async with open_actor_system(supervision_tree(with_max_agents(settings, 5))) as system:
        roster, directory = system.lookup(ROSTER), system.lookup(DIRECTORY)
        signer = await enrolled_agent(system)
        plain = [f"plain-{i}" for i in range(3)]
        for agent_id in plain:
            await roster.ask(report(agent_id, address="10.0.0.1"))
        made_up = [f"made-up-{i}" for i in range(20)]
        for agent_id in made_up:
            await directory.ask(AttachReporter(agent_id, signer))
            assert await roster.ask(report(agent_id, address="10.0.0.2", enrolled=True)) is None
        # Each new id took the place of the one superseded before it, not an unenrolled probe's.
        assert tracked(system) == {*plain, made_up[-2], made_up[-1]}
        await roster.ask(report("late", address="10.0.0.1"))  # the superseded id's place
        assert tracked(system) == {*plain, made_up[-1], "late"}


async def test_probes_of_the_stream_signed_by_agents_not_named_count_as_enrolled_up_to_the_agents(
        settings) -> None:
    """A replica cannot name the agent that signed a report another replica
    published: with one enrolled agent, one such probe counts as enrolled.
    The others are in their address's share, and a new signed probe takes
    their places before an unenrolled probe's: the unenrolled probe stays,
    and a newcomer from an address holding fewer takes a made-up id's place
    (each made-up id used to stay enrolled: they took every place, the
    unenrolled probe's first, and refused the newcomer)."""
    async with open_actor_system(supervision_tree(with_max_agents(settings, 4))) as system:
        roster = system.lookup(ROSTER)
        await enrolled_agent(system)
        await roster.ask(report("plain", address="10.0.0.1"))
        await roster.ask(ReportsArrived(tuple(report(f"made-up-{i}", address="10.0.0.2", enrolled=True)
                                              for i in range(6))))
        assert tracked(system) == {"plain", "made-up-3", "made-up-4", "made-up-5"}
        await roster.ask(report("office", address="10.0.0.3"))
        assert tracked(system) == {"plain", "made-up-4", "made-up-5", "office"}


async def test_a_forgotten_probes_host_series_go_with_it(settings) -> None:
    """At ``agents.max_agents`` a new probe takes the place of a stale one; its
    host series used to stay until ``storage.max_data_age``, and once the
    store held ``max_agents`` probes' worth the new probes got none (counted
    since in ``NodeSeriesCounters.refused``)."""
    shown = attrs.evolve(settings, auth=attrs.evolve(settings.auth, show_unassigned_agents=True))
    async with open_actor_system(supervision_tree(with_max_agents(shown, 2, stale_threshold=1.0))) as system:
        roster, metrics = system.lookup(ROSTER), system.lookup(METRICS)
        counters = await metrics.ask(GetNodeSeriesCounters())

        async def hosts() -> set[str]:
            answer = await metrics.ask(InstantQuery("t", "trioscope_node_cpu_usage", time.time()))
            return {row["metric"]["agent_id"] for row in answer["result"]}

        for wave in range(3):
            at = time.time() - 60 * (3 - wave)  # stale before the next wave
            wave_ids = {f"wave{wave}-{i}" for i in range(2)}
            for agent_id in sorted(wave_ids):
                await roster.ask(report(agent_id, address="10.0.0.1", at=at))

            async def recorded(wave_ids: set[str] = wave_ids) -> bool:
                return await hosts() == wave_ids

            await eventually(recorded)
            assert tracked(system) == wave_ids
        assert counters.refused == 0 and counters.forgotten > 0


async def test_the_signer_a_report_names_decides_not_the_directory_when_the_roster_takes_it(settings) -> None:
    """Signed reports of many made-up ids sent at once: by the time the roster
    takes one, the directory names the agent's later id, so looked up then,
    each counted as signed by an agent not named (up to the agents). Named by
    the request (or the report stream), each supersedes the one before."""
    async with open_actor_system(supervision_tree(with_max_agents(settings, 5))) as system:
        roster = system.lookup(ROSTER)
        signer = await enrolled_agent(system)
        await enrolled_agent(system)  # a second agent: two unnamed ones would count as enrolled
        plain = [f"plain-{i}" for i in range(3)]
        for agent_id in plain:
            await roster.ask(report(agent_id, address="10.0.0.1"))
        made_up = [f"made-up-{i}" for i in range(20)]
        await roster.ask(ReportsArrived(tuple(report(agent_id, address="10.0.0.2", enrolled=True, signer=signer)
                                              for agent_id in made_up)))
        assert tracked(system) == {*plain, made_up[-2], made_up[-1]}
        await roster.ask(report("late", address="10.0.0.1"))  # the superseded id's place
        assert tracked(system) == {*plain, made_up[-1], "late"}
