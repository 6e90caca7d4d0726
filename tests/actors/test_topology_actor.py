"""The topology actor under faults and load, in-process with the real tree."""

from __future__ import annotations

import time

import orjson
import trio

from tests.synthetic import host_report
from trioscope.actors.roster import ReportArrived
from trioscope.actors.topology import ExpireStale, GetNodeDetails, GetSnapshot, GetStats, TopologyActor
from trioscope.domain.agents import PackedReport
from trioscope.domain.topology import View, host_id
from trioscope.domain.topology import _partition as partition_module
from trioscope.http import create_app
from trioscope.runtime import open_actor_system
from trioscope.system import ROSTER, TOPOLOGY, supervision_tree
from trioscope.wire import decode_report

NOW = time.time()


def small_report(index: int) -> dict:
    return host_report(index, timestamp=NOW, containers=1, processes=3, connections=0)


class Poison:
    """A message the topology actor does not understand: handling it raises."""


async def deliver(system, document: dict) -> None:
    """What POST /api/v1/reports does once the report is valid: one message to
    the roster, which hands it to the topology, the agent's actor and the hub."""
    report = decode_report(document)
    # Received now: the module's NOW may be minutes old by the time a test runs.
    await system.lookup(ROSTER).ask(ReportArrived(report, PackedReport.pack(orjson.dumps(document)), time.time()))


async def hosts_in(system) -> set[str]:
    snapshot = await system.lookup(TOPOLOGY).ask(GetSnapshot())
    return {n.id for n in snapshot.nodes(View.HOSTS)}


async def test_a_crash_loses_neither_merged_state_nor_queued_reports(settings):
    async with open_actor_system(supervision_tree(settings)) as system:
        for i in range(1, 6):
            await deliver(system, small_report(i))
        assert await hosts_in(system) == {host_id(f"host-{i}") for i in range(1, 6)}
        for i in range(6, 9):  # told to the topology, perhaps not merged yet
            await deliver(system, small_report(i))
        system.lookup(TOPOLOGY).tell(Poison())
        for i in range(9, 12):  # queued behind the crash
            await deliver(system, small_report(i))
        assert await hosts_in(system) == {host_id(f"host-{i}") for i in range(1, 12)}
        topology = next(c for c in system.snapshot().root.children if c.path == TOPOLOGY)
        assert topology.restarts == 1 and topology.failed == 1


async def test_a_crash_keeps_the_controls_of_signed_reports(settings):
    """A restarted topology is rebuilt from the agents' latest reports; whether
    an enrolled agent signed each is kept with it: the rebuilt graph offered no
    controls for any container until its agent's next report."""
    async with open_actor_system(supervision_tree(settings)) as system:
        for index, enrolled in ((1, True), (2, False)):
            document = small_report(index)
            await system.lookup(ROSTER).ask(ReportArrived(
                decode_report(document), PackedReport.pack(orjson.dumps(document)), NOW, enrolled=enrolled))

        async def offered() -> list[bool]:
            snapshot = await system.lookup(TOPOLOGY).ask(GetSnapshot())
            return [any("controls" in n.metadata for n in snapshot.nodes(View.CONTAINERS) if n.host == host_id(f"host-{i}"))
                    for i in (1, 2)]

        assert await offered() == [True, False]
        system.lookup(TOPOLOGY).tell(Poison())
        assert await offered() == [True, False]  # answered by the restarted actor
        topology = next(c for c in system.snapshot().root.children if c.path == TOPOLOGY)
        assert topology.restarts == 1


async def test_a_crash_loses_no_metric_history(settings):
    """The graph is rebuilt from each agent's latest report after a crash; the
    history of the reports before it used to go with the crashed actor."""
    host, now = host_id("host-1"), time.time()
    async with open_actor_system(supervision_tree(settings)) as system:
        for age in (120, 60, 0):
            await deliver(system, host_report(1, timestamp=now - age, containers=1, processes=3, connections=0))
            await hosts_in(system)  # merged (a newer report pending would take its place)
        before = await system.lookup(TOPOLOGY).ask(GetNodeDetails(host, 300))
        assert len(before["metrics_history"]["points"]) == 3
        system.lookup(TOPOLOGY).tell(Poison())
        assert await hosts_in(system) == {host}  # answered by the restarted actor
        topology = next(c for c in system.snapshot().root.children if c.path == TOPOLOGY)
        assert topology.restarts == 1
        after = await system.lookup(TOPOLOGY).ask(GetNodeDetails(host, 300))
        assert after["metrics_history"] == before["metrics_history"]


async def test_a_report_that_cannot_be_merged_is_left_out_without_crashing(monkeypatch, settings):
    real = partition_module.build_partition

    def failing(report, received_at, previous=None, shape=None, **options):
        if report.agent_id == "agent-2":
            raise RuntimeError("injected merge failure")
        return real(report, received_at, previous, shape, **options)

    monkeypatch.setattr("trioscope.domain.topology._graph.build_partition", failing)
    async with open_actor_system(supervision_tree(settings)) as system:
        for i in (1, 2, 3):
            await deliver(system, small_report(i))
        assert await hosts_in(system) == {host_id("host-1"), host_id("host-3")}
        stats = await system.lookup(TOPOLOGY).ask(GetStats())
        assert stats["topology"]["merge_failures"] == 1
        topology = next(c for c in system.snapshot().root.children if c.path == TOPOLOGY)
        assert topology.restarts == 0


async def test_a_full_topology_mailbox_answers_503_with_retry_after(monkeypatch, settings):
    release = trio.Event()
    real_flush = TopologyActor._flush

    async def held_flush(self, budget, publish=True, at_least=1):
        await release.wait()
        await real_flush(self, budget, publish, at_least)

    monkeypatch.setattr(TopologyActor, "_flush", held_flush)
    async with open_actor_system(supervision_tree(settings, topology_mailbox=4)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app, trio.open_nursery() as nursery:
            client = test_app.test_client()
            nursery.start_soon(system.lookup(TOPOLOGY).ask, GetSnapshot(), 30)
            statuses = []
            for i in range(1, 8):
                response = await client.post("/api/v1/reports", json=small_report(i))
                statuses.append(response.status_code)
                if response.status_code == 503:
                    assert response.headers["Retry-After"] == "1"
                    assert (await response.get_json())["error"]["code"] == "overloaded"
            assert statuses[:4] == [202] * 4 and set(statuses[4:]) == {503}
            release.set()
        monkeypatch.setattr(TopologyActor, "_flush", real_flush)
        assert await hosts_in(system) == {host_id(f"host-{i}") for i in range(1, 5)}


async def test_a_subscriber_that_subscribes_again_hears_each_version_once(settings):
    """A restarted hub subscribes again with the same ref: it used to be listed
    twice, hear every version twice, and take that for missed versions."""
    from trioscope.actors.topology import Subscribe, TopologyPublished
    from trioscope.runtime import Actor, ActorSpec

    heard: list[int] = []

    class Listener(Actor):
        async def handle(self, message: object) -> object:
            if isinstance(message, TopologyPublished):
                heard.append(message.snapshot.version)
            return None

    async with open_actor_system(supervision_tree(settings)) as system:
        topology = system.lookup(TOPOLOGY)
        listener = await system.lookup("/root/clients").start_child(ActorSpec(name="l", factory=Listener))
        await topology.ask(Subscribe(listener))
        await topology.ask(Subscribe(listener))
        for i in range(1, 4):
            await deliver(system, small_report(i))
            await hosts_in(system)
        with trio.fail_after(5):
            while len(set(heard)) < 3:
                await trio.sleep(0.01)
        assert len(heard) == len(set(heard)), heard


async def test_after_a_hub_restart_clients_get_diffs_not_resets(settings):
    """A restarted hub used to be subscribed twice (seeing every version twice,
    taking that for missed versions: a reset per update for every client), and
    to forget its clients (who then heard nothing more). Now: one reset after
    the restart, then diffs."""
    from trioscope.actors.client import LiveCounters, client_spec
    from trioscope.actors.client_link import ClientLink
    from trioscope.system import CLIENTS, HUB

    async with open_actor_system(supervision_tree(settings)) as system:
        await deliver(system, small_report(1))
        await hosts_in(system)
        link = ClientLink(1024)
        await system.lookup(CLIENTS).start_child(client_spec("c", link, HUB, View.HOSTS, settings, LiveCounters()))
        system.lookup(HUB).tell(Poison())  # the hub crashes and is restarted: it subscribes again
        with trio.fail_after(10):
            while next(c for c in system.snapshot().root.children if c.path == HUB).restarts < 1:
                await trio.sleep(0.01)
        frames: list[dict] = []
        for i in range(2, 8):
            await deliver(system, small_report(i))
            await hosts_in(system)  # merged and published
            with trio.fail_after(10):
                while True:
                    frame = orjson.loads(str(await link.frames.__anext__()))
                    if frame["type"] == "topology_update":
                        frames.append(frame["payload"])
                        if host_id(f"host-{i}") in {*frame["payload"].get("nodes", {}),
                                                    *frame["payload"].get("add", {}).get("nodes", {})}:
                            break
        resets = [f for f in frames if f.get("reset")]
        assert len(resets) <= 2, f"{len(resets)} resets of {len(frames)} updates"  # the first view, the restart's
        assert not frames[-1].get("reset") and not frames[-2].get("reset")


async def test_a_read_waits_for_no_more_than_its_budget_of_merging_and_loses_nothing(monkeypatch, settings):
    """Under a backlog (a burst from a thousand hosts is seconds of merging) a
    snapshot is answered with the newest version rather than after the whole
    backlog; the reports it did not wait for are merged later, none lost."""
    from trioscope.actors import topology as topology_module

    monkeypatch.setattr(topology_module, "MERGE_EVERY", 3600.0)  # nothing merged in the background meanwhile
    async with open_actor_system(supervision_tree(settings)) as system:
        await deliver(system, small_report(1))  # the first is due at once
        assert await hosts_in(system) == {host_id("host-1")}
        for i in (2, 3, 4):
            await deliver(system, small_report(i))
        monkeypatch.setattr(topology_module, "READ_BUDGET", 0.0)
        monkeypatch.setattr(topology_module, "READ_AT_LEAST", 1)
        assert await hosts_in(system) == {host_id("host-1"), host_id("host-2")}
        stats = await system.lookup(TOPOLOGY).ask(GetStats())  # merges one more
        assert stats["topology"]["pending_reports"] == 1
        monkeypatch.undo()
        assert await hosts_in(system) == {host_id(f"host-{i}") for i in range(1, 5)}


async def test_a_new_probes_first_report_is_built_in_its_request_and_the_next_in_the_topology(monkeypatch, settings):
    """A probe's first report is all new nodes (~3x what accepting it costs):
    built in the request, so that a burst of new probes leaves no backlog in
    the topology's one queue; the next one, mostly new metrics, is the
    topology's (its cheap refresh needs the current partition)."""
    merged = []
    real_merge = TopologyActor._merge

    def spy(self, merge):
        merged.append((merge.report.agent_id, merge.partition is not None))
        return real_merge(self, merge)

    monkeypatch.setattr(TopologyActor, "_merge", spy)
    async with open_actor_system(supervision_tree(settings)) as system:
        app = create_app(system, settings)
        async with app.test_app() as test_app:
            client = test_app.test_client()
            for round_ in range(2):
                for index in (1, 2):
                    report = host_report(index, timestamp=time.time() + round_)
                    assert (await client.post("/api/v1/reports", json=report)).status_code == 202
                assert await hosts_in(system) == {host_id("host-1"), host_id("host-2")}
    assert merged == [("agent-1", True), ("agent-2", True), ("agent-1", False), ("agent-2", False)]


async def test_expire_stale_merges_what_was_sent_and_removes_the_agents_stale_by_now(settings):
    """What a replica that replayed the report stream asks before it says it is
    caught up: hosts whose last report was received before the stale threshold
    go now, not at the first cleanup minutes later."""
    stale, now = settings.agents.stale_threshold, time.time()
    async with open_actor_system(supervision_tree(settings)) as system:
        for index, at in ((1, now - stale - 60), (2, now - 5)):
            document = host_report(index, timestamp=at, containers=1, processes=3, connections=0)
            await system.lookup(ROSTER).ask(ReportArrived(decode_report(document),
                                                          PackedReport.pack(orjson.dumps(document)), at,
                                                          sequence=index, history=True))
        assert await system.lookup(TOPOLOGY).ask(ExpireStale()) is None
        snapshot = await system.lookup(TOPOLOGY).ask(GetSnapshot())
        assert {n.id for n in snapshot.nodes(View.HOSTS)} == {host_id("host-2")}
