"""What the command-service metrics cost, measured in one run.

    .venv/bin/python bench/request_metrics.py [--requests N] [--agents A] [--rounds R]

* per request: ``Metrics.observe_request`` (the seed's ``trydirect_api_*`` are
  folded out of ``app_http_request_duration_seconds`` at scrape time) against
  the baseline of observing that one histogram directly, as the server did
  before they existed.
* per scrape: collecting and encoding the whole registry with the
  command-service collectors over A enrolled agents (100 tenants, 25 routes x 3
  statuses, 20 command types), against the same registry without them
  (``app_*`` only); and how much of it is on the event loop (collecting; the
  server encodes in a worker thread).

Rounds alternate baseline and candidate; the median ratio is reported.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import attrs

from prometheus_client import CollectorRegistry, Histogram

from trioscope.actors.client import LiveCounters
from trioscope.domain.command_stats import CommandStats, QueueLoad
from trioscope.domain.commands import CommandEvent, CommandStatus, Priority, new_command
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus, Deployment
from trioscope.domain.metric_labels import TenantLabels
from trioscope.http._metrics import BUCKETS, CommandServiceSources, Metrics, encode
from trioscope.runtime import Published

ROUTES = [f"/api/v1/route{i}/<id>" for i in range(25)]


class NoSystem:
    """The runtime collector is the same in both registries: leave it out of both."""


def metrics_without_runtime(sources: CommandServiceSources | None) -> Metrics:
    metrics = Metrics.__new__(Metrics)
    Metrics.__init__(metrics, NoSystem(), LiveCounters())  # type: ignore[arg-type]  # collector unregistered below
    for collector in list(metrics.registry._collector_to_names):  # noqa: SLF001  # bench only
        if type(collector).__name__ == "_RuntimeCollector":
            metrics.registry.unregister(collector)
        if type(collector).__name__ in ("_CommandServiceCollector", "_ApiCollector") and sources is None:
            metrics.registry.unregister(collector)
    metrics.sources = sources
    return metrics


def sources(agents: int) -> CommandServiceSources:
    directory = AgentDirectory()
    now = time.time()
    seen = {}
    for i in range(agents):
        d = Deployment(hash=f"d{i}", tenant=f"tenant-{i % 100}", user_id="u", created_at=now, enrollment_hash=None)
        directory.put_deployment(d)
        directory.put_agent(AgentRecord(id=f"a{i}", deployment_hash=d.hash, token_hash=f"t{i}",
                                        status=AgentStatus.ACTIVE, created_at=now))
        seen[f"a{i}"] = now - i % 600
    stats = CommandStats(TenantLabels(100))
    for i in range(2000):
        command = new_command(command_id=f"c{i}", deployment_hash=f"d{i % agents}", tenant=f"tenant-{i % 100}",
                              type=f"type{i % 20}", parameters={}, priority=Priority.NORMAL, created_by="u",
                              now=now, schedule_at=None, timeout_seconds=60, requires_confirmation=False, sequence=i)
        if i % 3 == 0:  # a third time out
            timed_out = attrs.evolve(command.history[-1], event=CommandEvent.TIME_OUT)
            finished = attrs.evolve(command, status=CommandStatus.FAILED, sent_at=now,
                                    history=(*command.history, timed_out))
        else:
            finished = attrs.evolve(command, status=CommandStatus.COMPLETED, sent_at=now)
        stats.record_finished(finished, now + 1)
    for i in range(agents):
        stats.record_queue(f"d{i}", QueueLoad(i % 3, now - i if i % 3 else None))
    return CommandServiceSources(command_stats=stats, directory=Published(directory), seen=seen,
                                 online_within=120.0, started=now)


def observe_rounds(n: int, rounds: int) -> list[tuple[float, float]]:
    registry = CollectorRegistry()
    histogram = Histogram("app_http_request_duration_seconds", "x", ["route", "method", "status"],
                          buckets=BUCKETS, registry=registry)
    children: dict[tuple[str, str, int], Any] = {}

    def baseline(route: str, method: str, status: int, started: float) -> None:
        key = (route, method, status)
        child = children.get(key)
        if child is None:
            child = children[key] = histogram.labels(route, method, str(status))
        child.observe(time.perf_counter() - started)

    metrics = metrics_without_runtime(None)
    out = []
    for _ in range(rounds):
        times = []
        for observe in (baseline, metrics.observe_request):
            start = time.perf_counter()
            for i in range(n):
                observe(ROUTES[i % 25], "GET", 200 if i % 10 else 404, start)
            times.append((time.perf_counter() - start) / n * 1e6)
        out.append((times[0], times[1]))
    return out


def scrape_rounds(agents: int, rounds: int) -> list[tuple[float, float, float]]:
    """(app_* only, with the command-service metrics, the part of that on the event loop) in ms."""
    full = metrics_without_runtime(sources(agents))
    plain = metrics_without_runtime(None)
    for metrics in (full, plain):
        for i in range(25 * 3):
            metrics.observe_request(ROUTES[i % 25], "GET", (200, 404, 503)[i % 3], time.perf_counter())
    out = []
    for _ in range(rounds):
        times = []
        for metrics in (plain, full):
            start = time.perf_counter()
            families = metrics.collect()  # on the event loop
            collected = time.perf_counter()
            encode(families)  # in a worker thread
            times.append(((time.perf_counter() - start) * 1e3, (collected - start) * 1e3))
        out.append((times[0][0], times[1][0], times[1][1]))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200_000)
    parser.add_argument("--agents", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    observed = observe_rounds(args.requests, args.rounds)
    print(f"per request: baseline {statistics.median(b for b, _ in observed):.2f} us   "
          f"observe_request {statistics.median(c for _, c in observed):.2f} us   "
          f"ratio {statistics.median(c / b for b, c in observed):.2f}x (median of {args.rounds})")
    scraped = scrape_rounds(args.agents, args.rounds)
    print(f"per scrape ({args.agents} agents): app_* only {statistics.median(b for b, _, _ in scraped):.2f} ms   "
          f"with command-service metrics {statistics.median(c for _, c, _ in scraped):.2f} ms   "
          f"ratio {statistics.median(c / b for b, c, _ in scraped):.2f}x; on the event loop (collect) "
          f"{statistics.median(loop for _, _, loop in scraped):.2f} ms, "
          f"{statistics.median(loop / c for _, c, loop in scraped):.2f} of the scrape (median of {args.rounds})")


if __name__ == "__main__":
    main()
