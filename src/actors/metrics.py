"""The metrics actor (``/root/metrics``): owns the embedded metric store.

Agents' written samples arrive as ``WriteSamples`` (all of a request, or none
when a series limit refuses it); PromQL reads are asked of it and evaluated
against the asking tenant's series only. With an external engine
(``metrics.url``) it still keeps the series (not their samples), so the same
series limits hold before a write is forwarded.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import attrs

from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.runtime import Actor

log = logging.getLogger(__name__)


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


class MetricsActor(Actor):
    """Owns the ``MetricStore``; see the module docstring."""

    refusals = (metrics.WriteLimitExceeded, metrics.BadQuery, metrics.UnsupportedQuery, metrics.QueryTooExpensive)

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.max_samples = settings.metrics.max_query_samples
        self.store = metrics.MetricStore(metrics.StoreLimits(
            max_series_per_deployment=settings.metrics.max_series_per_deployment,
            max_series_per_tenant=settings.metrics.max_series_per_tenant,
            retention=settings.storage.max_data_age,
            keep_samples=not settings.metrics.url))

    async def on_start(self) -> None:
        self.context.every(self.settings.storage.cleanup_interval, _Expire())

    async def handle(self, message: Any) -> Any:
        if isinstance(message, WriteSamples):
            return self.store.write(message.tenant, message.deployment_hash, message.samples, time.time())
        if isinstance(message, InstantQuery):
            return metrics.instant_query(self.store.tenant(message.tenant), message.query, message.at,
                                         max_samples=self.max_samples)
        if isinstance(message, RangeQuery):
            return metrics.range_query(self.store.tenant(message.tenant), message.query, message.start, message.end,
                                       message.step, max_samples=self.max_samples)
        if isinstance(message, FindSeries):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.series_matching(self.store.tenant(message.tenant), selectors, message.start, message.end)
        if isinstance(message, LabelNames):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.label_names(self.store.tenant(message.tenant), selectors)
        if isinstance(message, LabelValues):
            selectors = [metrics.parse_selector(text) for text in message.selectors]
            return metrics.label_values(self.store.tenant(message.tenant), message.name, selectors)
        if isinstance(message, GetStats):
            return self.store.stats()
        if isinstance(message, _Expire):
            removed = self.store.expire(time.time())
            if removed:
                log.debug("metrics: %d series expired", removed)
            return None
        return await super().handle(message)
