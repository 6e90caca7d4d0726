"""Prometheus exposition (``GET /metrics``) with prometheus-client, one registry
per app so that tests and several servers in one process do not collide."""

from __future__ import annotations

import copy
import math
import time
from collections import Counter as Tally
from collections.abc import Awaitable, Callable, Iterator
from typing import Any

import attrs
import trio
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from trioscope.actors.client import LiveCounters
from trioscope.actors.metrics import NodeSeriesCounters
from trioscope.bus import BusProgress
from trioscope.domain import histogram as buckets
from trioscope.domain.command_stats import CommandStats
from trioscope.domain.deployments import AgentDirectory, AgentStatus
from trioscope.domain.metric_labels import OTHER, api_error_type, method_label
from trioscope.domain.metrics import WriteOutcome
from trioscope.runtime import ActorStats, ActorSystem, Published, SupervisorStats

# The *_created series double the exposition for nothing a dashboard uses.
disable_created_metrics()

BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 120.0)


class _RuntimeCollector(Collector):
    """Mailbox depth, actors, restarts and dead letters per actor type, read from
    the actor system at scrape time."""

    def __init__(self, system: ActorSystem) -> None:
        self.system = system

    def collect(self) -> Iterator[Metric]:
        snapshot = self.system.snapshot()
        depth: Tally[str] = Tally()
        actors: Tally[str] = Tally()
        stack: list[Any] = [snapshot.root]
        while stack:
            node = stack.pop()
            if isinstance(node, SupervisorStats):
                stack.extend(node.children)
            elif isinstance(node, ActorStats) and node.status != "terminated":
                depth[node.actor_type] += node.mailbox_depth
                actors[node.actor_type] += 1
        gauge = GaugeMetricFamily("app_actor_mailbox_depth", "Messages queued in actors' mailboxes",
                                  labels=["actor_type"])
        for kind, value in sorted(depth.items()):
            gauge.add_metric([kind], value)
        yield gauge
        count = GaugeMetricFamily("app_actors", "Live actors", labels=["actor_type"])
        for kind, value in sorted(actors.items()):
            count.add_metric([kind], value)
        yield count
        restarts = CounterMetricFamily("app_actor_restarts", "Actor restarts", labels=["actor_type"])
        for kind, value in sorted(snapshot.restarts_by_type.items()):
            restarts.add_metric([kind], value)
        yield restarts
        dead = CounterMetricFamily("app_actor_dead_letters", "Messages that reached no actor",
                                   labels=["actor_type"])
        for kind, value in sorted(snapshot.dead_letters_by_type.items()):
            dead.add_metric([kind], value)
        yield dead
        refused = CounterMetricFamily("app_actor_mailbox_full", "Messages an actor's full mailbox refused "
                                      "(a request answered 503, or something told dropped)", labels=["actor_type"])
        for kind, value in sorted(snapshot.refused_by_type.items()):
            refused.add_metric([kind], value)
        yield refused


class _LiveCollector(Collector):
    """WebSocket message counters, kept by the client actors."""

    def __init__(self, counters: LiveCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        for name, text, value in (
            ("app_websocket_messages_sent", "Messages queued to WebSocket clients", c.sent),
            ("app_websocket_messages_dropped", "Messages a lagging client did not get", c.dropped),
            ("app_websocket_resets", "Full snapshots sent (connects, resyncs, catching up)", c.resets),
            ("app_websocket_slow_client_closes", "Clients closed (1008) for lagging too long", c.slow_closes),
        ):
            family = CounterMetricFamily(name, text)
            family.add_metric([], value)
            yield family


class _BusCollector(Collector):
    """The report stream as this replica reads it (``bus.url``)."""

    def __init__(self, progress: BusProgress) -> None:
        self.progress = progress

    def collect(self) -> Iterator[Metric]:
        p = self.progress
        for name, text, value in (
            ("app_bus_connected", "1 while connected to the report bus", int(p.connected)),
            ("app_bus_caught_up", "1 once the report stream was read to its end since the start", int(p.caught_up)),
            ("app_bus_lag_reports", "Reports on the stream this replica has not merged yet (NaN while not known: "
             "app_bus_lag_known 0)", math.nan if p.lag is None else p.lag),
            ("app_bus_lag_known", "1 while this replica knows how far behind the stream it is", int(p.lag is not None)),
            ("app_bus_merged_sequence", "Stream sequence of the last report handed to the topology", p.merged),
        ):
            gauge = GaugeMetricFamily(name, text)
            gauge.add_metric([], value)
            yield gauge
        for name, text, total in (
            ("app_bus_reconnects", "Reconnections to the report bus", p.reconnects),
            ("app_bus_consumer_restarts", "Times this replica's stream consumer was made again (lost by the "
             "server, or a read that failed)", p.consumer_restarts),
            ("app_bus_skipped_messages", "Messages on the report stream left out as no report this version reads",
             p.skipped),
            ("app_bus_streams_created", "Times this replica found the report stream gone from the bus (a server "
             "back with an empty store) and created it again", p.streams_created),
        ):
            counter = CounterMetricFamily(name, text)
            counter.add_metric([], total)
            yield counter


class _CommitCollector(Collector):
    """How long the store's commits take (``GetCommitTimes``)."""

    def __init__(self, times: buckets.Histogram) -> None:
        self.times = times

    def collect(self) -> Iterator[Metric]:
        family = HistogramMetricFamily("app_store_commit_seconds", "Seconds each commit of the store took, however "
                                       "it ended: every write of its batch waited for it (the disk's fsync, or the "
                                       "database server)")
        family.add_metric([], self.times.cumulative(), self.times.total)
        yield family


class _NodeSeriesCollector(Collector):
    """What became of the probes' host metrics kept for the Metrics API (``trioscope_node_*``)."""

    def __init__(self, counters: NodeSeriesCounters) -> None:
        self.counters = counters

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        for name, text, value in (
            ("app_node_metrics_refused", "Reports whose host metrics (trioscope_node_*) were not kept: the "
             "series of agents.max_agents probes are held already", c.refused),
            ("app_node_series_forgotten", "Host metric series dropped with the probes forgotten to make room "
             "for others (agents.max_agents)", c.forgotten),
        ):
            family = CounterMetricFamily(name, text)
            family.add_metric([], value)
            yield family


HEARTBEAT_BUCKETS = (0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
"""Seconds between an agent's requests: polls every 30-120 s, reports every 15 s."""


@attrs.define
class CommandServiceSources:
    """What the seed's ``trydirect_*`` agent, command and queue metrics are read
    from at scrape time (found once, by the first scrape)."""

    command_stats: CommandStats
    directory: Published[AgentDirectory]
    seen: dict[str, float]
    """When each enrolled agent last made a request that passed every check (the edge's record)."""
    online_within: float
    """An agent heard from within this many seconds is online (``agents.heartbeat_timeout``)."""
    started: float
    """When this process started: an agent not heard from since counts from then."""


class _ApiCollector(Collector):
    """The seed's API metrics, folded at scrape time out of
    ``app_http_request_duration_seconds{route,method,status}``: requests by
    endpoint (the route template), method and status; latency by endpoint and
    method; errors by class (``metric_labels.api_error_type``)."""

    def __init__(self, durations: Histogram) -> None:
        self.durations = durations

    def collect(self) -> Iterator[Metric]:
        requests = CounterMetricFamily("trydirect_api_requests", "API requests, by route template",
                                       labels=["endpoint", "method", "status"])
        buckets: dict[tuple[str, str], dict[str, float]] = {}
        sums: dict[tuple[str, str], float] = {}
        errors: dict[str, float] = {}
        for family in self.durations.collect():
            for sample in family.samples:
                labels = sample.labels
                endpoint = (labels["route"], labels["method"])
                if sample.name.endswith("_bucket"):
                    per_le = buckets.setdefault(endpoint, {})
                    per_le[labels["le"]] = per_le.get(labels["le"], 0.0) + sample.value
                elif sample.name.endswith("_sum"):
                    sums[endpoint] = sums.get(endpoint, 0.0) + sample.value
                elif sample.name.endswith("_count"):
                    requests.add_metric([labels["route"], labels["method"], labels["status"]], sample.value)
                    error = api_error_type(int(labels["status"]))
                    if error is not None:
                        errors[error] = errors.get(error, 0.0) + sample.value
        latency = HistogramMetricFamily("trydirect_api_request_duration_seconds", "API request latency",
                                        labels=["endpoint", "method"])
        for endpoint, per_le in sorted(buckets.items()):
            # Bucket bounds sort as numbers, +Inf last (as the histogram wrote them).
            ordered = sorted(per_le.items(), key=lambda item: float(item[0]))
            latency.add_metric(list(endpoint), ordered, sums.get(endpoint, 0.0))
        failures = CounterMetricFamily("trydirect_api_errors", "API error responses, by class", labels=["type"])
        for kind, value in sorted(errors.items()):
            failures.add_metric([kind], value)
        yield from (requests, latency, failures)


class _CommandServiceCollector(Collector):
    """The seed's agent, command and system metrics (stacker-command-service 8.1),
    read from what the actors and the edge keep, at scrape time."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[Metric]:
        sources = self.metrics.sources
        if sources is None:
            return
        now = time.time()
        stats = sources.command_stats
        label = stats.tenant_labels.label
        total: Tally[str] = Tally()
        online: Tally[str] = Tally()
        last_seen = GaugeMetricFamily(
            "trydirect_agent_last_seen_seconds", "When each active enrolled agent was last heard from (unix "
            "seconds; one not heard from since this process started counts from the start)",
            labels=["agent", "deployment_hash", "tenant"])
        directory = sources.directory.value
        for agent in directory.agents.values():
            deployment = directory.deployments.get(agent.deployment_hash)
            if agent.status is not AgentStatus.ACTIVE or deployment is None:
                continue
            tenant = label(deployment.tenant)
            seen = sources.seen.get(agent.id)
            total[tenant] += 1
            if seen is not None and now - seen <= sources.online_within:
                online[tenant] += 1
            last_seen.add_metric([agent.id, agent.deployment_hash, tenant],
                                 seen if seen is not None else max(sources.started, agent.created_at))
        agents_total = GaugeMetricFamily("trydirect_agents_total", "Active enrolled agents", labels=["tenant"])
        agents_online = GaugeMetricFamily("trydirect_agents_online", "Active enrolled agents heard from within "
                                          "agents.heartbeat_timeout", labels=["tenant"])
        for tenant in sorted(total):
            agents_total.add_metric([tenant], total[tenant])
            agents_online.add_metric([tenant], online[tenant])
        yield from (agents_total, agents_online, last_seen)

        commands = CounterMetricFamily("trydirect_commands", "Commands finished, by final status",
                                       labels=["tenant", "type", "status"])
        for key, value in sorted(stats.finished.items()):
            commands.add_metric(list(key), value)
        failed = CounterMetricFamily("trydirect_commands_failed", "Commands that failed or expired, by error class",
                                     labels=["tenant", "type", "error_type"])
        for key, value in sorted(stats.failed.items()):
            failed.add_metric(list(key), value)
        durations = HistogramMetricFamily("trydirect_commands_duration_seconds",
                                          "Seconds from delivery to the agent to the final status", labels=["type"])
        for kind, histogram in sorted(stats.durations.items()):
            durations.add_metric([kind], histogram.cumulative(), histogram.total)
        queue_size = GaugeMetricFamily("trydirect_commands_queue_size", "Commands waiting for delivery")
        queue_size.add_metric([], stats.queue_size())
        lag = GaugeMetricFamily("trydirect_queue_processing_lag_seconds",
                                "Seconds the longest-waiting deliverable command has waited for an agent")
        lag.add_metric([], stats.processing_lag(now))
        yield from (commands, failed, durations, queue_size, lag)


class _Collected(Collector):
    """Families already collected, for encoding elsewhere."""

    def __init__(self, families: list[Metric]) -> None:
        self.families = families

    def collect(self) -> Iterator[Metric]:
        return iter(self.families)


def of_tenant(families: list[Metric], tenant: str) -> list[Metric]:
    """``families`` as a reader of one tenant may see them (``auth.protect_reads``):
    the series labelled with ``tenant`` alone, since the label, and the agent
    ids and deployment hashes beside it, are that tenant's; never
    ``tenant="other"``, which sums the tenants past ``tenants.max_metric_labels``;
    and none of the server's own (no tenant label): its agents, reports,
    nodes, queued commands, requests by route and actors count every tenant's,
    which ``/api/v1/query/stats`` keeps from such a reader too. Each family
    keeps its HELP and TYPE, with or without samples, so the exposition stays
    valid. New families; ``families`` unchanged."""
    shown = []
    for family in families:
        visible = copy.copy(family)
        visible.samples = [sample for sample in family.samples if sample.labels.get("tenant") == tenant != OTHER]
        shown.append(visible)
    return shown


def encode(families: list[Metric]) -> bytes:
    """The text exposition of ``families`` (thread-safe: it reads only them)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collected(families))
    return generate_latest(registry)


class SharedScrapes:
    """Scrapes of ``/metrics`` asked while one for the same reader (its tenant,
    or None for everything) is being made wait for it and answer what it made,
    rather than each collect and encode again (~8 ms each on a 2-core machine:
    eight clients scraping in a loop took most of the server's time, and
    another client's /health median from 4 to 22-33 ms, within their budget).
    What a waiting scrape answers was begun before it asked, by at most one
    scrape's time; nothing is kept once it is answered."""

    def __init__(self) -> None:
        self._making: dict[str | None, _Scrape] = {}

    async def body(self, reader: str | None, make: Callable[[], Awaitable[bytes]]) -> bytes:
        """The exposition for ``reader``, made by ``make`` unless one is being made."""
        scrape = self._making.get(reader)
        if scrape is not None:
            await scrape.done.wait()
            if scrape.body is not None:
                return scrape.body  # else it failed: this scrape makes its own
        scrape = self._making[reader] = _Scrape()
        try:
            scrape.body = await make()
            return scrape.body
        finally:
            if self._making.get(reader) is scrape:
                del self._making[reader]
            scrape.done.set()


@attrs.define
class _Scrape:
    done: trio.Event = attrs.field(factory=trio.Event)
    body: bytes | None = None


class Metrics:
    """The server's metrics. Gauges that live in actors are refreshed by the
    ``/metrics`` handler just before exposition.

    ``worker``: which of ``--workers`` serving processes this is (1..N), put on
    every series as the ``worker`` label; None (one process) adds no label."""

    def __init__(self, system: ActorSystem, live: LiveCounters, worker: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self.worker = None if worker is None else str(worker)
        self.sources: CommandServiceSources | None = None
        """Set by the first scrape (``/metrics`` asks the actors for them)."""
        # The seed's names (stacker-command-service 8.1), beside the app_* ones.
        self.heartbeat_latency = Histogram(
            "trydirect_agent_heartbeat_latency_seconds", "Seconds between an enrolled agent's requests",
            ["tenant"], buckets=HEARTBEAT_BUCKETS, registry=self.registry)
        self.database_connections = Gauge("trydirect_database_connections_active",
                                          "Database connections this process holds open",
                                          registry=self.registry)
        self.agents = Gauge("app_agents_total", "Known agents", registry=self.registry)
        self.reports_received = Counter("app_reports_received", "Reports accepted (202)", registry=self.registry)
        self.websocket_clients = Gauge("app_websocket_clients", "Connected WebSocket clients", registry=self.registry)
        self.topology_nodes = Gauge("app_topology_nodes", "Nodes in the topology", registry=self.registry)
        self.polls_waiting = Gauge("app_command_polls_waiting", "Agents' long-polls held open, waiting for a command",
                                   registry=self.registry)
        self.topology_edges = Gauge("app_topology_edges", "Edges in the topology (all views)", registry=self.registry)
        self.request_duration = Histogram(
            "app_http_request_duration_seconds", "HTTP request latency",
            ["route", "method", "status"], buckets=BUCKETS, registry=self.registry,
        )
        self.refusals = Counter(
            "app_requests_refused", "Requests refused to protect the server (rate limits, connection caps, "
            "agent capacity), by reason", ["reason"], registry=self.registry)
        self.samples_left_out = Counter(
            "trioscope_metric_samples_left_out", "Samples agents wrote (/api/v1/metrics/write) that the embedded "
            "engine did not keep, by reason: too_old (past storage.max_data_age), superseded (a later sample of "
            "the same series and 15 s bucket kept instead)", ["reason"], registry=self.registry)
        self.audit_unrecorded = Counter(
            "app_audit_refusals_unrecorded", "Refusals left out of the audit log (sampled per address, or per agent "
            "or user where the credentials proved who sent them: the next recorded one says how many)",
            registry=self.registry)
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self._node_series_watched = False
        self.registry.register(_RuntimeCollector(system))
        self.registry.register(_LiveCollector(live))
        self.registry.register(_CommandServiceCollector(self))
        self.registry.register(_ApiCollector(self.request_duration))

    def collect(self) -> list[Metric]:
        """Every family, read now from the actors' and the edge's counters (on the
        event loop: they change there); ``encode`` them off it, which is most of
        the work of a scrape (``bench/request_metrics.py``)."""
        families = list(self.registry.collect())
        if self.worker is not None:
            # With --workers a scrape reaches whichever process accepted it: the
            # label keeps each worker's series apart. It is the worker's index
            # (1..N, N <= 64), never its pid, so restarts add no series.
            for family in families:
                family.samples = [sample._replace(labels={**sample.labels, "worker": self.worker})
                                  for sample in family.samples]
        return families

    def watch_node_series(self, counters: NodeSeriesCounters) -> None:
        """Expose what became of the probes' host metrics (the metrics actor's
        ``GetNodeSeriesCounters``); once: a second call changes nothing."""
        if not self._node_series_watched:
            self._node_series_watched = True
            self.registry.register(_NodeSeriesCollector(counters))

    def watch_commits(self, times: buckets.Histogram) -> None:
        """Expose how long the store's commits take (the store actor's ``GetCommitTimes``)."""
        self.registry.register(_CommitCollector(times))

    def watch_bus(self, progress: BusProgress) -> None:
        """Expose how far this replica has read the report stream."""
        self.registry.register(_BusCollector(progress))

    def samples_written(self, outcome: WriteOutcome) -> None:
        """Count what a metrics write left out (the write is answered 204 all the same)."""
        if outcome.too_old:
            self.samples_left_out.labels("too_old").inc(outcome.too_old)
        if outcome.displaced:
            self.samples_left_out.labels("superseded").inc(outcome.displaced)

    def refused(self, reason: str) -> None:
        """Count a refusal; ``reason`` is one of a fixed few (bounded labels)."""
        self.refusals.labels(reason).inc()

    def observe_request(self, route: str, method: str, status: int, started: float) -> None:
        """One response; ``route`` is the route's template (``/api/v1/agents/<agent_id>``), never the
        path, and ``method`` as ``method_label`` names it. The seed's
        ``trydirect_api_*`` are read from this one histogram at scrape time
        (``_ApiCollector``): a request pays for one observation, not four."""
        method = method_label(method)
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:  # labels() hashes and locks on every call: look each series up once
            child = self._request_children[key] = self.request_duration.labels(route, method, str(status))
        child.observe(time.perf_counter() - started)

    def observe_heartbeat(self, tenant: str, since_previous: float) -> None:
        """An enrolled agent's request, ``since_previous`` seconds after its last one."""
        if self.sources is None:  # before the server serves: no request comes then
            return
        label = self.sources.command_stats.tenant_labels.label(tenant)
        self.heartbeat_latency.labels(label).observe(since_previous)
