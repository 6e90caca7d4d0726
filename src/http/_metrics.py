"""Prometheus exposition (``GET /metrics``) with prometheus-client, one registry
per app so that tests and several servers in one process do not collide."""

from __future__ import annotations

import time
from collections import Counter as Tally
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from trioscope.actors.client import LiveCounters
from trioscope.runtime import ActorStats, ActorSystem, SupervisorStats

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


class _WorkerLabelled:
    """The registry's metrics with ``worker="N"`` on every sample: with
    ``--workers`` a scrape reaches whichever process accepted it, and the
    series of different workers must not overwrite each other. The label takes
    the worker's index (1..N, N <= 64), never its pid, so restarts add no series."""

    def __init__(self, registry: CollectorRegistry, worker: int) -> None:
        self.registry = registry
        self.worker = str(worker)

    def collect(self) -> Iterator[Metric]:
        for metric in self.registry.collect():
            metric.samples = [sample._replace(labels={**sample.labels, "worker": self.worker})
                              for sample in metric.samples]
            yield metric


class Metrics:
    """The server's metrics. Gauges that live in actors are refreshed by the
    ``/metrics`` handler just before exposition.

    ``worker``: which of ``--workers`` serving processes this is (1..N), put on
    every series as the ``worker`` label; None (one process) adds no label."""

    def __init__(self, system: ActorSystem, live: LiveCounters, worker: int | None = None) -> None:
        self.registry = CollectorRegistry()
        self._exposed: CollectorRegistry | _WorkerLabelled = (
            self.registry if worker is None else _WorkerLabelled(self.registry, worker))
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
        self._request_children: dict[tuple[str, str, int], Any] = {}
        self.registry.register(_RuntimeCollector(system))
        self.registry.register(_LiveCollector(live))

    def exposition(self) -> bytes:
        """The text format for ``GET /metrics``."""
        return generate_latest(self._exposed)

    def refused(self, reason: str) -> None:
        """Count a refusal; ``reason`` is one of a fixed few (bounded labels)."""
        self.refusals.labels(reason).inc()

    def observe_request(self, route: str, method: str, status: int, started: float) -> None:
        key = (route, method, status)
        child = self._request_children.get(key)
        if child is None:  # labels() hashes and locks on every call: look each series up once
            child = self._request_children[key] = self.request_duration.labels(route, method, str(status))
        child.observe(time.perf_counter() - started)
