"""The two backends of the metrics API, behind one interface.

``EmbeddedMetrics`` asks the metrics actor (``/root/metrics``), which stores
written samples and evaluates the PromQL subset of ``trioscope.domain.metrics``.
``ProxiedMetrics`` (``metrics.url``) forwards writes to a Prometheus-compatible
engine (VictoriaMetrics' ``/api/v1/import``) and proxies the Prometheus HTTP API
to it with the caller's tenant as ``extra_label=tenant=<tenant>``, which the
engine ANDs with every selector of the query: no matcher, ``or`` branch or
``__name__`` trick in the query can remove it. Callers' own ``extra_label``
and ``extra_filters[]`` never reach the engine (only the Prometheus API's
parameters are passed on): ``extra_filters[]`` would be ORed with ours.

Both answer a read as the Prometheus HTTP API does: a status and a JSON body
``{"status": "success", "data": ...}`` or ``{"status": "error", "errorType",
"error"}``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

import attrs
import httpx
import orjson
import promql_parser

from trioscope.actors.metrics import FindSeries, InstantQuery, LabelNames, LabelValues, RangeQuery, WriteSamples
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.runtime import ActorRef

log = logging.getLogger(__name__)

READ_APIS = ("query", "query_range", "series", "labels", "label_values")
"""What a read asks for; ``label_values`` is ``label/<name>/values``."""
PASSED_ON = frozenset({"query", "time", "start", "end", "step", "timeout", "match[]", "limit"})
"""The Prometheus HTTP API's parameters: the only ones proxied (see the module docstring)."""
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Largest answer taken from the engine; a larger one is refused (422) rather than held."""

Params = Sequence[tuple[str, str]]


@attrs.frozen
class Answer:
    """A Prometheus HTTP API answer."""

    status: int
    body: bytes


class PrometheusError(Exception):
    """An error answered in the Prometheus API's shape."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.answer = Answer(status, orjson.dumps({"status": "error", "errorType": error_type, "error": message}))


def success(data: Any) -> Answer:
    return Answer(200, orjson.dumps({"status": "success", "data": data}))


class MetricsBackend(Protocol):
    """Where the metrics API writes and reads."""

    async def write(self, tenant: str, deployment_hash: str, samples: list[metrics.Sample]) -> None:
        """Store ``samples`` (labels already stamped). Raises ``WriteLimitExceeded``,
        or ``PrometheusError`` (503) when the engine does not take them."""

    async def read(self, tenant: str, api: str, params: Params, label: str = "") -> Answer:
        """Answer read ``api`` (one of ``READ_APIS``) for ``tenant`` with ``params``."""

    async def aclose(self) -> None:
        """Release connections."""


# ---- parameters, read as Prometheus reads them -------------------------------------------------

def _first(params: Params, name: str) -> str | None:
    return next((value for key, value in params if key == name), None)


def parse_time(params: Params, name: str, default: float | None) -> float:
    """A Prometheus time parameter: unix seconds (a float) or RFC 3339."""
    raw = _first(params, name)
    if raw is None or raw == "":
        if default is None:
            raise PrometheusError(400, "bad_data", f"invalid parameter \"{name}\": missing")
        return default
    try:
        value = float(raw)
    except ValueError:
        try:
            value = datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp()
        except ValueError:
            value = math.nan
    if not math.isfinite(value) or len(raw) > 64:
        raise PrometheusError(400, "bad_data", f"invalid parameter \"{name}\": cannot parse {raw[:64]!r} to a "
                                               "valid timestamp")
    return value


def parse_step(params: Params) -> float:
    """``step``: seconds (a float) or a Prometheus duration (``15s``, ``1m``)."""
    raw = _first(params, "step")
    if not raw:
        raise PrometheusError(400, "bad_data", "invalid parameter \"step\": missing")
    try:
        step = float(raw)
    except ValueError:
        try:
            step = promql_parser.parse_duration(raw).total_seconds()
        except ValueError:
            step = math.nan
    if not math.isfinite(step):
        raise PrometheusError(400, "bad_data", f"invalid parameter \"step\": cannot parse {raw[:64]!r} to a valid "
                                               "duration")
    return step


def _query(params: Params) -> str:
    query = _first(params, "query")
    if not query:
        raise PrometheusError(400, "bad_data", "invalid parameter \"query\": missing")
    return query


# ---- embedded ---------------------------------------------------------------------------------

class EmbeddedMetrics:
    """The embedded store and engine, owned by the metrics actor."""

    def __init__(self, actor: ActorRef, settings: Settings) -> None:
        self._actor = actor
        self._timeout = settings.metrics.query_timeout

    async def write(self, tenant: str, deployment_hash: str, samples: list[metrics.Sample]) -> None:
        await self._actor.ask(WriteSamples(tenant, deployment_hash, samples), timeout=self._timeout)

    async def read(self, tenant: str, api: str, params: Params, label: str = "") -> Answer:
        now = time.time()
        selectors = tuple(value for key, value in params if key == "match[]")
        if api == "query":
            message: Any = InstantQuery(tenant, _query(params), parse_time(params, "time", now))
        elif api == "query_range":
            message = RangeQuery(tenant, _query(params), parse_time(params, "start", None),
                                 parse_time(params, "end", None), parse_step(params))
        elif api == "series":
            if not selectors:
                raise PrometheusError(400, "bad_data", "no match[] parameter provided")
            message = FindSeries(tenant, selectors, parse_time(params, "start", 0.0), parse_time(params, "end", now))
        elif api == "labels":
            message = LabelNames(tenant, selectors)
        else:
            message = LabelValues(tenant, label, selectors)
        try:
            return success(await self._actor.ask(message, timeout=self._timeout))
        except metrics.BadQuery as exc:
            raise PrometheusError(400, "bad_data", str(exc)) from None
        except metrics.UnsupportedQuery as exc:
            raise PrometheusError(422, "execution", f"unsupported: {exc}") from None
        except metrics.QueryTooExpensive as exc:
            raise PrometheusError(422, "execution", str(exc)) from None

    async def aclose(self) -> None:
        pass


# ---- a Prometheus-compatible engine -----------------------------------------------------------

class ProxiedMetrics:
    """VictoriaMetrics (or any engine with its import and ``extra_label`` APIs) at ``metrics.url``.
    The metrics actor still counts series, so the same limits hold."""

    def __init__(self, actor: ActorRef, settings: Settings) -> None:
        self._actor = actor
        self._url = settings.metrics.url
        self._timeout = settings.metrics.query_timeout
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        # Made on first use, inside the running Trio loop (httpx runs on Trio through anyio).
        if self._client is None:
            self._client = httpx.AsyncClient(base_url=self._url, timeout=self._timeout,
                                             limits=httpx.Limits(max_connections=64))
        return self._client

    def _unavailable(self, exc: Exception) -> PrometheusError:
        log.warning("metrics engine %s: %s", self._url, exc)
        return PrometheusError(503, "unavailable", f"the metrics engine did not answer: {type(exc).__name__}")

    async def write(self, tenant: str, deployment_hash: str, samples: list[metrics.Sample]) -> None:
        await self._actor.ask(WriteSamples(tenant, deployment_hash, samples), timeout=self._timeout)
        series: dict[metrics.Labels, tuple[list[float], list[int]]] = {}
        for sample in samples:
            values, stamps = series.setdefault(sample.labels, ([], []))
            values.append(sample.value)
            stamps.append(round(sample.timestamp * 1000))
        body = b"\n".join(orjson.dumps({"metric": dict(labels), "values": values, "timestamps": stamps})
                          for labels, (values, stamps) in series.items())
        try:
            response = await self._http().post("/api/v1/import", content=body)
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None
        if response.status_code >= 300:
            log.warning("metrics engine %s refused a write: %s %s", self._url, response.status_code,
                        response.text[:200])
            raise PrometheusError(503, "unavailable", f"the metrics engine refused the write ({response.status_code})")

    async def read(self, tenant: str, api: str, params: Params, label: str = "") -> Answer:
        path = f"/api/v1/label/{label}/values" if api == "label_values" else f"/api/v1/{api}"
        forwarded: list[tuple[str, str | int | float | bool | None]] = [
            (key, value) for key, value in params if key in PASSED_ON]
        forwarded.append(("extra_label", f"{metrics.TENANT_LABEL}={tenant}"))
        try:
            async with self._http().stream("GET", path, params=forwarded) as response:
                chunks = []
                size = 0
                async for chunk in response.aiter_bytes():
                    size += len(chunk)
                    if size > MAX_ANSWER_BYTES:
                        raise PrometheusError(422, "execution", f"the answer is larger than {MAX_ANSWER_BYTES} "
                                                                "bytes; narrow the query")
                    chunks.append(chunk)
        except httpx.HTTPError as exc:
            raise self._unavailable(exc) from None
        body = b"".join(chunks)
        if not response.headers.get("content-type", "").startswith("application/json"):
            # Not the API's JSON (a plain-text refusal): say it in the API's shape.
            error_type = "bad_data" if response.status_code == 400 else "execution"
            raise PrometheusError(response.status_code if response.status_code >= 400 else 502, error_type,
                                  body.decode(errors="replace")[:1000].strip())
        return Answer(response.status_code, body)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
