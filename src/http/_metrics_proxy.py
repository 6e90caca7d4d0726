"""The metrics API's backend for ``metrics.url``: ``ProxiedMetrics`` forwards
writes to a Prometheus-compatible engine (VictoriaMetrics' ``/api/v1/import``)
and proxies the Prometheus HTTP API to it with the caller's tenant as
``extra_label=tenant=<tenant>``, which the engine ANDs with every selector of
the query: no matcher, ``or`` branch or ``__name__`` trick in the query can
remove it. Callers' own ``extra_label`` and ``extra_filters[]`` never reach the
engine (only the Prometheus API's parameters are passed on): ``extra_filters[]``
would be ORed with ours.

A module of its own, imported only when ``metrics.url`` is set: its HTTP
client (httpx) is ~0.17 s of a server's start, which the embedded default
(and every test server) need not pay.
"""

from __future__ import annotations

import logging

import httpx
import orjson

from trioscope.actors.metrics import WriteSamples
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.runtime import ActorRef

from ._metrics_backends import Answer, Params, PrometheusError, check_params

log = logging.getLogger(__name__)

PASSED_ON = frozenset({"query", "time", "start", "end", "step", "timeout", "match[]", "limit"})
"""The Prometheus HTTP API's parameters: the only ones proxied (see the module docstring)."""
MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Largest answer taken from the engine; a larger one is refused (422) rather than held."""
ERROR_TYPES = {400: "bad_data", 422: "execution", 499: "canceled", 503: "unavailable", 504: "timeout"}
"""Prometheus' ``errorType`` of an engine's error status, where the engine (VictoriaMetrics)
writes the status itself there (``"422"``); another status >= 500 is ``internal``."""
_UNPARSED = ("cannot parse", "unparsed data", "syntax error", "unexpected token", "unknown func",
             "unexpected number of args")
"""What VictoriaMetrics' 422 says of a query it could not parse (Prometheus: 400 ``bad_data``)."""


def _prometheus_error(status: int, body: bytes) -> Answer:
    """An engine's error answer with a Prometheus ``errorType`` (and a query that does
    not parse answered 400, as Prometheus and the embedded engine do); as it is if
    it already has one or is not the API's shape."""
    try:
        error = orjson.loads(body)
    except orjson.JSONDecodeError:
        return Answer(status, body)
    if not isinstance(error, dict) or not isinstance(error.get("error"), str):
        return Answer(status, body)
    error_type = error.get("errorType")
    if isinstance(error_type, str) and not error_type.isdigit():
        return Answer(status, body)  # already Prometheus' (bad_data, execution, ...)
    message = error["error"]
    if status in (400, 422) and any(sign in message.lower() for sign in _UNPARSED):
        status = 400
    error_type = ERROR_TYPES.get(status, "internal" if status >= 500 else "bad_data")
    return Answer(status, orjson.dumps({"status": "error", "errorType": error_type, "error": message}))

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

    async def write(self, tenant: str, deployment_hash: str, samples: list[metrics.Sample]) -> metrics.WriteOutcome:
        outcome: metrics.WriteOutcome = await self._actor.ask(WriteSamples(tenant, deployment_hash, samples),
                                                              timeout=self._timeout)
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
        # The engine keeps every sample at its own resolution: nothing was left out there.
        return metrics.WriteOutcome(new_series=outcome.new_series, kept=len(samples), too_old=0, superseded=0,
                                    displaced=0)

    async def read(self, tenant: str, api: str, params: Params, label: str = "") -> Answer:
        check_params(api, params)  # what Prometheus refuses is refused here too, whatever the engine takes
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
        if "json" not in response.headers.get("content-type", ""):  # application/json, VM's application/stream+json
            # Not the API's JSON (a plain-text refusal): say it in the API's shape.
            error_type = "bad_data" if response.status_code == 400 else "execution"
            raise PrometheusError(response.status_code if response.status_code >= 400 else 502, error_type,
                                  body.decode(errors="replace")[:1000].strip())
        if response.status_code >= 400:
            return _prometheus_error(response.status_code, body)
        return Answer(response.status_code, body)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
