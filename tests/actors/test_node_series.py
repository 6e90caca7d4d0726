"""The probes' host series kept for the Metrics API: those the store has no
room for are counted and exported at ``/metrics`` (they used to be logged at
debug level only), and a forgotten probe's go at once."""

from __future__ import annotations

import time

import attrs

from trioscope.actors.client import LiveCounters
from trioscope.actors.metrics import ForgetNode, GetNodeSeriesCounters, InstantQuery, NodeSamples
from trioscope.http._metrics import Metrics
from trioscope.runtime import open_actor_system
from trioscope.system import METRICS, supervision_tree

VALUES = {f"metric_{i}": float(i) for i in range(10)}
"""A host's dozen metrics, near enough: two hosts' are past the limit of one agent (16 series)."""


def exported(families, name: str) -> float:
    return next(sample.value for family in families for sample in family.samples if sample.name == name)


async def test_host_metrics_without_room_are_counted_and_a_forgotten_probes_make_room(settings) -> None:
    one = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=1),
                       auth=attrs.evolve(settings.auth, show_unassigned_agents=True))
    async with open_actor_system(supervision_tree(one)) as system:
        actor = system.lookup(METRICS)
        counters = await actor.ask(GetNodeSeriesCounters())
        exposition = Metrics(system, LiveCounters())
        exposition.watch_node_series(counters)
        exposition.watch_node_series(counters)  # once only: a registry refuses a collector's names twice
        now = time.time()

        async def hosts() -> set[str]:
            answer = await actor.ask(InstantQuery("t", "trioscope_node_metric_1", now))
            return {row["metric"]["agent_id"] for row in answer["result"]}

        await actor.ask(NodeSamples("gone", "h1", now, VALUES))
        await actor.ask(NodeSamples("new", "h2", now, VALUES))
        assert await hosts() == {"gone"}
        assert counters.refused == 1
        assert exported(exposition.collect(), "app_node_metrics_refused_total") == 1
        await actor.ask(ForgetNode("gone"))
        await actor.ask(NodeSamples("new", "h2", now, VALUES))
        assert await hosts() == {"new"}
        assert (counters.refused, counters.forgotten) == (1, len(VALUES))
        assert exported(exposition.collect(), "app_node_series_forgotten_total") == len(VALUES)


async def test_a_probe_that_renames_its_host_keeps_the_series_of_its_new_name_only(settings) -> None:
    """One probe naming its host anew on every report filled the host series
    store alone (series are by agent and host name): its old name's go."""
    one = attrs.evolve(settings, agents=attrs.evolve(settings.agents, max_agents=2),
                       auth=attrs.evolve(settings.auth, show_unassigned_agents=True))
    async with open_actor_system(supervision_tree(one)) as system:
        actor = system.lookup(METRICS)
        counters = await actor.ask(GetNodeSeriesCounters())
        now = time.time()
        for name in range(50):
            await actor.ask(NodeSamples("renaming", f"host-{name}", now, VALUES))
        await actor.ask(NodeSamples("other", "h", now, VALUES))
        answer = await actor.ask(InstantQuery("t", "trioscope_node_metric_1", now))
        assert {(row["metric"]["agent_id"], row["metric"]["hostname"]) for row in answer["result"]} == {
            ("renaming", "host-49"), ("other", "h")}
        assert counters.refused == 0


async def test_host_metrics_reported_while_a_write_holds_the_actor_are_all_kept(settings, monkeypatch) -> None:
    """A large write holds the metrics actor (it waits for its worker thread;
    reads once did too, up to ``metrics.query_timeout``): the roster's host
    metrics of the reports that come meanwhile wait in the mailbox one per
    probe and bucket, beside its other messages, and are kept once the write
    ends (told as plain messages, those beyond a full mailbox were dropped)."""
    import threading

    import trio

    import orjson

    from tests.actors.test_roster_actor import arrived
    from tests.synthetic import host_report
    from trioscope.actors.roster import ReportArrived
    from trioscope.domain.agents import PackedReport
    from trioscope.wire import decode_report
    from trioscope.actors.metrics import OFF_LOOP_SAMPLES, WriteSamples
    from trioscope.domain import metrics
    from trioscope.runtime import MailboxFull
    from tests.waiting import eventually
    from trioscope.system import ROSTER

    shown = attrs.evolve(settings, auth=attrs.evolve(settings.auth, show_unassigned_agents=True))
    entered, release = threading.Event(), threading.Event()
    write = metrics.MetricStore.write

    def held(self, tenant, deployment_hash, samples, now):
        if tenant == "held":
            entered.set()
            release.wait(60)
        return write(self, tenant, deployment_hash, samples, now)

    monkeypatch.setattr(metrics.MetricStore, "write", held)
    many = [metrics.Sample((("__name__", "m"), ("n", str(n))), 1.0, time.time())
            for n in range(OFF_LOOP_SAMPLES + 1)]
    async with open_actor_system(supervision_tree(shown)) as system, trio.open_nursery() as nursery:
        actor = system.lookup(METRICS)
        nursery.start_soon(actor.ask, WriteSamples("held", "d", many))
        assert await trio.to_thread.run_sync(entered.wait, 30)
        told = 0
        while True:  # the mailbox full of other messages
            try:
                actor.tell(NodeSamples("filler", "f", time.time(), VALUES))
            except MailboxFull:
                break
            told += 1
        assert told == 4096
        reports = [arrived(index) for index in range(1, 4)]
        for report in reports:
            await system.lookup(ROSTER).ask(report)
        # A report of two minutes before it was received (a probe's buffered one, or a made-up
        # time) takes no key: told plainly, it finds the mailbox full.
        now = time.time()
        old = host_report(4, timestamp=now - 120, containers=1, processes=2, connections=0)
        await system.lookup(ROSTER).ask(ReportArrived(decode_report(old), PackedReport.pack(orjson.dumps(old)), now))
        release.set()

        async def kept() -> set[str]:
            try:
                found = await actor.ask(InstantQuery("t", "trioscope_node_cpu_usage", time.time()))
            except MailboxFull:  # the fillers not all taken yet
                return set()
            return {row["metric"]["agent_id"] for row in found["result"]}

        assert await eventually(kept) == {report.report.agent_id for report in reports}
        # The filler's last, the old report's, and the reads' asked while the fillers were taken.
        refused = system.snapshot().refused_by_type["MetricsActor"]
        assert refused >= 2
        assert next(sample.value for family in Metrics(system, LiveCounters()).collect()
                    for sample in family.samples if sample.name == "app_actor_mailbox_full_total"
                    and sample.labels == {"actor_type": "MetricsActor"}) == refused


async def test_a_report_under_a_lapsed_enrolled_id_naming_another_host_leaves_the_tenants_history(settings) -> None:
    """An enrolled agent's probe id is free once its claim lapsed (or it was
    decommissioned): an unsigned report under it, naming another host, is
    unassigned's. Keyed by probe alone, the rename dropped the enrolled
    tenant's host series (a reviewer's: 12 series of acme's history gone)."""
    from types import SimpleNamespace

    from trioscope.actors.metrics import MetricsActor
    from trioscope.runtime import ActorSpec, Published, SupervisorSpec

    enrolled = SimpleNamespace(reporting_agent=lambda reporter_id: SimpleNamespace(deployment_hash="d1"),
                               deployments={"d1": SimpleNamespace(tenant="acme")})
    lapsed = SimpleNamespace(reporting_agent=lambda reporter_id: None, deployments={})
    directory = Published(enrolled)
    shown = attrs.evolve(settings, auth=attrs.evolve(settings.auth, show_unassigned_agents=True))
    tree = SupervisorSpec(name="root", children=[
        ActorSpec(name="metrics", factory=lambda: MetricsActor(shown, directory))])
    async with open_actor_system(tree) as system:
        actor = system.lookup("/root/metrics")
        now = time.time()

        async def hosts(tenant: str) -> set[tuple[str, str]]:
            answer = await actor.ask(InstantQuery(tenant, 'trioscope_node_metric_1{agent_id="db-1"}', now))
            return {(row["metric"]["hostname"], row["metric"].get("tenant", "")) for row in answer["result"]}

        await actor.ask(NodeSamples("db-1", "db-host", now, VALUES))
        assert await hosts("acme") == {("db-host", "acme")}
        directory.publish(lapsed)
        await actor.ask(NodeSamples("db-1", "attacker-host", now, VALUES))
        assert ("db-host", "acme") in await hosts("acme")
        # Within one tenant a rename still drops the old name's series.
        await actor.ask(NodeSamples("db-1", "attacker-host-2", now, VALUES))
        assert {name for name, _ in await hosts("other")} == {"attacker-host-2"}
        assert ("db-host", "acme") in await hosts("acme")


def test_a_process_history_starts_in_the_bucket_of_its_start_unless_its_clock_is_ahead() -> None:
    from trioscope.actors.topology import _since_started
    from trioscope.domain.timeseries import Point
    from trioscope.domain.topology import Node, NodeKind

    def process(started: str) -> Node:
        return Node(id="process:h:7", kind=NodeKind.PROCESS, label="p", parent="host:h", host="host:h", agent_id="a",
                    status="running", last_seen=0.0, metadata={"started_at": started})

    points = [Point(t, {"cpu_percent": v}) for t, v in ((1_800_000_000, 99.0), (1_800_000_015, 99.0),
                                                          (1_800_000_030, 1.0), (1_800_000_045, 1.0))]
    # Started 7 s into the bucket at ...030: that bucket is its own, the two before the pid's last owner's.
    assert _since_started(points, process("2027-01-15T08:00:37Z"), 15.0) == points[2:]
    # A start after every point (its probe's clock ahead of the server's): every point is its own.
    assert _since_started(points, process("2027-01-15T09:00:00Z"), 15.0) == points
