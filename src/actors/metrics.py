"""The metrics actor (``/root/metrics``): keeps the embedded metric store.

Agents' written samples arrive as ``WriteSamples`` (all of a request, or none
when a series limit refuses it); PromQL reads are asked of it and evaluated
against the asking tenant's series only. With an external engine
(``metrics.url``) it still keeps the series (not their samples), so the same
series limits hold before a write is forwarded. It also keeps the probes'
host metrics at 15 s (``NodeSamples``, told by the roster for each report),
queryable as ``trioscope_node_*`` with the embedded engine.
"""

from __future__ import annotations

import logging
import math
import time
from typing import Any

import attrs

from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.domain.deployments import AgentDirectory
from trioscope.runtime import Actor, Published

log = logging.getLogger(__name__)

NODE_METRICS = 16
"""Most host metrics kept per probe (a report has about a dozen)."""
_UNASSIGNED = ""
"""Where the host metrics of probes enrolled in no deployment are kept (no tenant is named "")."""


@attrs.frozen
class NodeSamples:
    """A probe's host metrics from one report (told by the roster), kept as
    ``trioscope_node_<metric>{agent_id, hostname}`` series of the tenant whose
    deployment the probe is enrolled in (or of no tenant: visible to all with
    ``auth.show_unassigned_agents``, as the probe's other reports are)."""

    reporter_id: str
    hostname: str
    at: float
    values: dict[str, float]


@attrs.frozen
class WriteSamples:
    """Record one request's samples of one deployment; answers how many series are new.
    Refused with ``WriteLimitExceeded`` (nothing recorded)."""

    tenant: str
    deployment_hash: str
    samples: list[metrics.Sample]


@attrs.frozen
class InstantQuery:
    """``/api/v1/query``: answers the Prometheus ``data`` object."""

    tenant: str
    query: str
    at: float


@attrs.frozen
class RangeQuery:
    """``/api/v1/query_range``: answers the Prometheus ``data`` object."""

    tenant: str
    query: str
    start: float
    end: float
    step: float


@attrs.frozen
class FindSeries:
    """``/api/v1/series``: the label sets matching any selector."""

    tenant: str
    selectors: tuple[str, ...]
    start: float
    end: float


@attrs.frozen
class LabelNames:
    tenant: str
    selectors: tuple[str, ...]


@attrs.frozen
class LabelValues:
    tenant: str
    name: str
    selectors: tuple[str, ...]


@attrs.frozen
class GetStats:
    """Answers the store's ``StoreStats``."""


@attrs.frozen
class _Expire:
    pass


@attrs.frozen(eq=False)
class MetricStores:
    """The actor's stores, kept for its spec (``Kept``), not made by the
    actor: a crash restarts the actor with every series and sample as it was
    (an agent's write answered 2xx is not lost to a bug in an unrelated query)."""

    written: metrics.MetricStore
    """What agents write (``WriteSamples``)."""
    nodes: metrics.MetricStore
    """Probes' host metrics (``NodeSamples``), apart from what agents write:
    bounded by the number of agents (agents.max_agents) times the dozen
    metrics of a host."""

    @classmethod
    def for_settings(cls, settings: Settings) -> MetricStores:
        retention = settings.storage.max_data_age
        return cls(
            metrics.MetricStore(metrics.StoreLimits(
                max_series_per_deployment=settings.metrics.max_series_per_deployment,
                max_series_per_tenant=settings.metrics.max_series_per_tenant,
                max_series=settings.metrics.max_series,
                retention=retention,
                keep_samples=not settings.metrics.url)),
            metrics.MetricStore(metrics.StoreLimits(
                max_series_per_deployment=NODE_METRICS * settings.agents.max_agents,
                max_series_per_tenant=NODE_METRICS * settings.agents.max_agents,
                retention=retention)))


class MetricsActor(Actor):
    """Keeps the ``MetricStores``; see the module docstring."""

    refusals = (metrics.WriteLimitExceeded, metrics.BadQuery, metrics.UnsupportedQuery, metrics.QueryTooExpensive)

    def __init__(self, settings: Settings, directory: Published[AgentDirectory] | None = None,
                 stores: MetricStores | None = None) -> None:
        """``stores``: what an earlier incarnation kept (the spec's ``Kept``);
        None: stores of its own, lost with it."""
        self.settings = settings
        self.directory = directory
        """Which deployment (and so tenant) a probe is enrolled in, as the directory publishes it."""
        self.max_samples = settings.metrics.max_query_samples
        if stores is None:
            stores = MetricStores.for_settings(settings)
        self.store = stores.written
        self.nodes = stores.nodes

    def _view(self, tenant: str) -> metrics.SeriesView:
        views = [self.store.tenant(tenant), self.nodes.tenant(tenant)]
        if self.settings.auth.show_unassigned_agents:
            views.append(self.nodes.tenant(_UNASSIGNED))
        return metrics.MergedView(*views)

    def _record_node(self, message: NodeSamples) -> None:
        tenant, deployment_hash = _UNASSIGNED, ""
        if self.directory is not None:
            found = self.directory.value
            agent = found.reporting_agent(message.reporter_id)
            deployment = found.deployments.get(agent.deployment_hash) if agent is not None else None
            if agent is not None and deployment is not None:
                tenant, deployment_hash = deployment.tenant, agent.deployment_hash
        base = {"agent_id": message.reporter_id, "hostname": message.hostname}
        if tenant:
            base.update({metrics.TENANT_LABEL: tenant, metrics.DEPLOYMENT_LABEL: deployment_hash})
        samples = [metrics.Sample(tuple(sorted({**base, "__name__": f"trioscope_node_{name}"}.items())), value,
                                  message.at)
                   for name, value in list(message.values.items())[:NODE_METRICS] if math.isfinite(value)]
        try:
            self.nodes.write(tenant, deployment_hash, samples, time.time())
        except metrics.WriteLimitExceeded:
            log.debug("metrics: node series of %s not kept (limit)", message.reporter_id)

    def _query(self, message: InstantQuery | RangeQuery) -> dict[str, Any]:
        view = self._view(message.tenant)
        if isinstance(message, InstantQuery):
            return metrics.instant_query(view, message.query, message.at, max_samples=self.max_samples)
        return metrics.range_query(view, message.query, message.start, message.end, message.step,
                                   max_samples=self.max_samples)

    async def on_start(self) -> None:
        self.context.every(self.settings.storage.cleanup_interval, _Expire())

    async def handle(self, message: Any) -> Any:
        if isinstance(message, NodeSamples):
            self._record_node(message)
            return None
        if isinstance(message, WriteSamples):
            return self.store.write(message.tenant, message.deployment_hash, message.samples, time.time())
        if isinstance(message, (InstantQuery, RangeQuery)):
            try:
                return self._query(message)
            except RecursionError:
                # Not expected within the parser's bounds (metrics.MAX_NESTING, MAX_OPERATORS); a read
                # changes nothing, so its failure is the asker's, not a crash that would empty the store.
                log.error("metrics: query %.200r nests too deeply to evaluate", message.query)
                raise metrics.QueryTooExpensive("the query nests too deeply to evaluate") from None
        if isinstance(message, FindSeries):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.series_matching(self._view(message.tenant), selectors, message.start, message.end)
        if isinstance(message, LabelNames):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.label_names(self._view(message.tenant), selectors)
        if isinstance(message, LabelValues):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.label_values(self._view(message.tenant), message.name, selectors)
        if isinstance(message, GetStats):
            return self.store.stats()
        if isinstance(message, _Expire):
            removed = self.store.expire(time.time()) + self.nodes.expire(time.time())
            if removed:
                log.debug("metrics: %d series expired", removed)
            return None
        return await super().handle(message)
