"""The metrics API: agents write metrics, users read them with PromQL.

``POST /api/v1/metrics/write`` takes InfluxDB line protocol (``text/plain``,
``?precision=ns|us|ms|s``) or JSON from an agent, authenticated and signed
as on the rest of the agent API; every point gets the agent's tenant and
deployment_hash as labels. Reads are the Prometheus HTTP API, for a user
token of any role, always within the caller's tenant, at
``/api/v1/metrics/{query,query_range}`` (the seed's paths) and under
``/prometheus`` where Grafana and ``promtool query`` expect a Prometheus
base URL. Which backend answers is ``metrics.url``'s choice
(``_metrics_backends``).
"""

from __future__ import annotations

import contextlib
import functools
import re
import time
from collections.abc import Hashable
from typing import Any
from urllib.parse import parse_qsl

from quart import Blueprint, Quart, Response, current_app, request

from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.domain.principals import Permission
from trioscope.domain.rates import TokenBuckets, retry_after
from trioscope.runtime import ActorSystem

from . import _directory, _gate, _rate_checks, _signature_refusals, _tokens
from ._bodies import off_loop, parse_json, read_body, read_body_and_raw
from ._errors import ApiError
from ._metrics_backends import EmbeddedMetrics, MetricsBackend, Params, PrometheusError
from ._openapi import Answer, Auth, choice, documented, text
from ._responses import no_content
from ._services import services

blueprint = Blueprint("metrics_api", __name__)
blueprint.before_request(_rate_checks.check_address_rate)

_KEY = "trioscope.metrics"
_READ_TIME_KEY = "trioscope.metrics.read_time"
MAX_PARAMS = 256
"""Most query parameters (``match[]`` included) of one read."""
MAX_PARAM_BYTES = 64 * 1024
"""Longest parameter value (a query) of one read."""
MAX_FORM_BYTES = 1024 * 1024
"""Largest form (``application/x-www-form-urlencoded`` body) of one read,
after gzip: a query and its few parameters take far less. Larger ones get 413
as they arrive: parsed whole, a 9.4 MiB form of a million parameters held the
event loop ~1.5 s before ``MAX_PARAMS`` was checked (any user token sufficed)."""
_FORM_TYPES = ("application/x-www-form-urlencoded", "application/x-url-encoded")
_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_LINE_PROTOCOL_TYPES = ("", "text/plain", "application/octet-stream")


def attach_backend(app: Quart, system: ActorSystem, settings: Settings, actor_path: str) -> None:
    """Choose the backend for these settings; its connections close when the app stops serving."""
    actor = system.lookup(actor_path)
    backend: MetricsBackend
    if settings.metrics.url:
        from ._metrics_proxy import ProxiedMetrics  # only then: see its docstring

        backend = ProxiedMetrics(actor, settings)
    else:
        backend = EmbeddedMetrics(actor, settings)
    app.extensions[_KEY] = backend
    app.extensions[_READ_TIME_KEY] = ReadTimeShare(READ_TIME_SHARE, READ_TIME_BURST)

    @app.after_serving
    async def _close() -> None:
        await backend.aclose()


def _current_backend() -> MetricsBackend:
    return current_app.extensions[_KEY]  # type: ignore[no-any-return]  # Quart's extensions are untyped; attach_backend put it there


def _write_limits(settings: Settings) -> metrics.WriteLimits:
    m = settings.metrics
    return metrics.WriteLimits(max_points=m.max_points_per_request, max_labels=m.max_labels_per_series,
                               max_label_name_bytes=m.max_label_name_bytes,
                               max_label_value_bytes=m.max_label_value_bytes)


def _limit_error(exc: metrics.WriteLimitExceeded) -> ApiError:
    details: dict[str, object] = {"limit": exc.limit, "config_key": exc.config_key}
    if exc.where is not None:
        details["where"] = exc.where
    headers = {"Retry-After": "60"} if exc.status == 429 else None
    return ApiError(exc.status, exc.code, exc.message, details=details, headers=headers)


@blueprint.post("/api/v1/metrics/write")
@documented(auth=Auth.AGENT, body={"type": "string"}, body_media=("text/plain", "application/json"),
            query=(choice("precision", ("ns", "us", "ms", "s")),), answers={204: Answer("written", media=None)})
async def write() -> Response:
    """Write metrics as an agent: InfluxDB line protocol (text/plain) or JSON; 204."""
    s = services()
    with contextlib.ExitStack() as held:  # a large body stays counted while it waits for the worker thread
        body, raw = await read_body_and_raw(s.settings, hold=held)
        agent = await _gate.agent(None, raw)
        deployment = (await _directory.directory()).deployments.get(agent.deployment_hash)
        if deployment is None:  # retired between the check and here
            raise ApiError(403, "wrong_deployment", "the agent's deployment no longer exists")
        now = time.time()
        read = functools.partial(_samples, mimetype=request.mimetype, precision=request.args.get("precision", "ns"),
                                 now=now, latest=now + _signature_refusals.MAX_CLOCK_SKEW, tenant=deployment.tenant,
                                 deployment_hash=agent.deployment_hash, limits=_write_limits(s.settings))
        samples = await off_loop(body, read, threshold=OFF_LOOP_POINTS_BYTES)
    try:
        s.metrics.samples_written(await _current_backend().write(deployment.tenant, agent.deployment_hash, samples))
    except metrics.WriteLimitExceeded as exc:
        raise _limit_error(exc) from None
    except PrometheusError as exc:
        raise ApiError(503, "metrics_engine_unavailable", str(exc), headers={"Retry-After": "5"}) from None
    return no_content()


OFF_LOOP_POINTS_BYTES = 32 * 1024
"""A write's body over this is read in a worker thread: points cost more than
other JSON of their size (a point is a few dozen bytes; 10,000 of them in 252
KiB took ~40 ms of the event loop, and one agent writing them back to back
raised other clients' latency from 3 to 43 ms)."""


def _samples(body: bytes, *, mimetype: str, precision: str, now: float, latest: float, tenant: str,
             deployment_hash: str, limits: metrics.WriteLimits) -> Any:
    """The samples an agent's write holds (``write``; raises ``ApiError``
    naming what is wrong): in a worker thread for a large body."""
    try:
        if mimetype == "application/json":
            return metrics.parse_json_points(parse_json(body), now=now, latest=latest, tenant=tenant,
                                             deployment_hash=deployment_hash, limits=limits)
        if mimetype in _LINE_PROTOCOL_TYPES:
            if precision not in metrics.PRECISIONS:
                raise ApiError(400, "invalid_query", "precision: must be one of ns, us, ms, s",
                               details={"field": "precision"})
            return metrics.parse_line_protocol(body, precision=precision, now=now, latest=latest, tenant=tenant,
                                               deployment_hash=deployment_hash, limits=limits)
        raise ApiError(415, "unsupported_media_type",
                       "send InfluxDB line protocol as text/plain or points as application/json",
                       details={"content_type": mimetype[:100]})
    except metrics.BadWrite as exc:
        details: dict[str, object] = {"where": exc.where}
        if exc.where.startswith("line "):
            details["line"] = int(exc.where.removeprefix("line "))
            raise ApiError(400, "invalid_line_protocol", str(exc), details=details) from None
        raise ApiError(400, "invalid_metrics", str(exc), details={"path": exc.where}) from None
    except metrics.WriteLimitExceeded as exc:
        raise _limit_error(exc) from None


def _too_many_params() -> PrometheusError:
    return PrometheusError(400, "bad_data", f"at most {MAX_PARAMS} parameters of at most {MAX_PARAM_BYTES} "
                                            "bytes each")


async def _params() -> Params:
    """The read's parameters: (POST) the form's, then the URL's. First found
    counts: the form's value over the URL's, as Prometheus' ``FormValue``.

    The form is read within ``MAX_FORM_BYTES`` and parsed within
    ``MAX_PARAMS`` (``parse_qsl`` counts the separators before it splits), so
    neither its size nor its count of parameters is the client's to choose.

    Raises:
        ApiError: 413 beyond ``MAX_FORM_BYTES``; 415 for a multipart form;
            400 for a form that is not UTF-8.
        PrometheusError: 400 beyond ``MAX_PARAMS`` or ``MAX_PARAM_BYTES``.
    """
    params = list(request.args.items(multi=True))
    if len(params) > MAX_PARAMS:
        raise _too_many_params()
    if request.method == "POST":  # Grafana and Prometheus' Go client send queries as a form
        params[:0] = await _form(MAX_PARAMS - len(params))
    if any(len(value) > MAX_PARAM_BYTES for _, value in params):
        raise _too_many_params()
    return params


async def _form(max_fields: int) -> Params:
    """The POST body's parameters, at most ``max_fields`` of them. A body of
    another type is not a form and is not read (as Prometheus does)."""
    mimetype = request.mimetype
    if mimetype == "multipart/form-data":
        raise ApiError(415, "unsupported_media_type", "send the parameters as application/x-www-form-urlencoded "
                       "or in the URL", details={"content_type": mimetype})
    if mimetype not in _FORM_TYPES:
        return []
    body = await read_body(services().settings, limit=MAX_FORM_BYTES)
    try:
        text = body.decode()
    except UnicodeDecodeError as exc:
        raise ApiError(400, "invalid_form", f"the form is not UTF-8 (byte {exc.start})",
                       details={"position": exc.start}) from None
    try:
        return parse_qsl(text, keep_blank_values=True, max_num_fields=max_fields)
    except ValueError:  # "Max number of fields exceeded", before any was split
        raise _too_many_params() from None


READS_AT_ONCE = 2
"""PromQL reads one user may have answered at once; another gets 429. The
embedded engine answers reads one at a time (each within its budget, up to
~1 s): twenty heavy queries sent together by one user made another tenant's
query wait 88 s behind them. Grafana sends a dashboard's panels together and
retries a 429."""
READ_TIME_SHARE = 0.25
"""Most of the server's time one user's PromQL reads take over time (their
CPU time, ``ReadTimeShare``); beyond, 429 until their share has come back.
One user's back-to-back queries, each refused as too expensive after 0.2-0.4 s
of CPU, two at once, took other users' topology reads from 7 to 148 ms at the
median."""
SEND_SECONDS_PER_BYTE = 0.6e-3 / 2**20
"""What sending an answer costs the server, charged with the read's CPU time:
0.6 ms a MiB through Hypercorn (a 58 MiB body: 35 ms of CPU, measured with
Quart-Trio alone)."""
READ_TIME_BURST = 2.0
"""Seconds of CPU time one user's reads may take at once before their share
(``READ_TIME_SHARE``) holds: a dashboard's panels loaded together."""


class ReadTimeShare:
    """Each reader's share of the server's time: a bucket of ``burst`` seconds
    per reader, refilled at ``share`` seconds a second, from which each read's
    CPU time is taken once known (``charge``). A reader whose bucket is empty
    waits until it is not (``wait``): over any ``T`` seconds its reads take at
    most ``burst + share * T``, plus those under way when it ran out (at most
    ``READS_AT_ONCE``, each within the query timeout). ``TokenBuckets``
    (``trioscope.domain.rates``), in seconds: a read's cost is known only
    after it, so a reader may go into debt, and waits it off.

    Plain values (``now`` passed in); readers whose bucket is full again are
    forgotten, so memory follows the readers reading."""

    def __init__(self, share: float, burst: float, *, max_readers: int = 100_000) -> None:
        if not 0 < share <= 1 or burst <= 0:
            raise ValueError(f"invalid read time share: share {share}, burst {burst}")
        self.share = share
        self.burst = burst
        self._buckets: TokenBuckets[Hashable] = TokenBuckets(share, burst, max_keys=max_readers)
        """Reader -> seconds left."""

    def left(self, reader: Hashable, now: float) -> float:
        """Seconds ``reader`` has left at ``now`` (negative: its debt)."""
        return self._buckets.left(reader, now)

    def wait(self, reader: Hashable, now: float) -> float:
        """0 if ``reader`` may start a read at ``now``, else the seconds until it may."""
        left = self.left(reader, now)
        if left > 0:
            return 0.0
        return max(-left / self.share, 1e-3)  # never 0: that says "go ahead"

    def charge(self, reader: Hashable, seconds: float, now: float) -> None:
        """A read of ``reader`` took ``seconds`` of CPU time."""
        if seconds > 0:
            self._buckets.draw(reader, seconds, now)


def _read_time() -> ReadTimeShare:
    return current_app.extensions[_READ_TIME_KEY]  # type: ignore[no-any-return]  # Quart's extensions are untyped; attach_backend put it there


def _busy(message: str, wait: str) -> Response:
    answer = PrometheusError(429, "unavailable", message).answer
    return Response(answer.body, status=429, content_type="application/json", headers={"Retry-After": wait})


async def _read(api: str, label: str = "") -> Response:
    principal = await _gate.user(Permission.READ, token=_tokens.basic_password())
    s = services()
    reader = (principal.tenant, principal.user_id)
    if s.metrics_reads.count(reader) >= READS_AT_ONCE:
        s.metrics.refused("metrics_reads_per_user")
        return _busy(f"at most {READS_AT_ONCE} queries of one user are answered at once; retry when one has been "
                     "answered", "1")
    shares = _read_time()
    wait = shares.wait(reader, time.monotonic())
    if wait:
        s.metrics.refused("metrics_read_time_per_user")
        return _busy(f"this user's queries took more than {READ_TIME_SHARE:.0%} of the server's time; retry in "
                     f"{wait:.1f} s", retry_after(wait))
    with s.metrics_reads.held(reader):
        try:
            if api == "label_values" and not _LABEL_NAME.fullmatch(label):
                raise PrometheusError(400, "bad_data", f"invalid label name: {label[:100]!r}")
            answer = await _current_backend().read(principal.tenant, api, await _params(), label)
        except PrometheusError as exc:
            answer = exc.answer
    # Charged whatever the answer: a query refused as too expensive took its time too.
    shares.charge(reader, answer.cpu_seconds + len(answer.body) * SEND_SECONDS_PER_BYTE, time.monotonic())
    return Response(answer.body, status=answer.status, content_type="application/json")


PROMETHEUS_ERROR = {"anyOf": [{"$ref": "#/components/schemas/Error"}, {
    "type": "object", "required": ["status", "error"],
    "properties": {"status": {"const": "error"}, "errorType": {"type": "string"}, "error": {"type": "string"}}}]}
"""Errors of the PromQL reads: the Prometheus HTTP API's shape, ours for credentials."""
_PROMETHEUS_PARAMS = tuple(text(name) for name in ("query", "time", "start", "end", "step", "timeout", "limit"))
_FORM = {"type": "object", "properties": {p.name: p.schema for p in _PROMETHEUS_PARAMS}}
_READ_DOC = documented(auth=Auth.PROMQL, query=_PROMETHEUS_PARAMS, body=_FORM, body_required=False,
                       body_media=("application/x-www-form-urlencoded",), error_schema=PROMETHEUS_ERROR,
                       errors={400: "bad_data", 413: f"a form over {MAX_FORM_BYTES} bytes",
                               415: "a multipart form", 422: "execution",
                               429: "more than 2 queries of one user at once, or its queries past "
                                    "their share of the server's time",
                               503: "unavailable, overloaded or timed out"})


@_READ_DOC
async def query() -> Response:
    """PromQL instant query (Prometheus HTTP API), within the caller's tenant."""
    return await _read("query")


@_READ_DOC
async def query_range() -> Response:
    """PromQL range query (Prometheus HTTP API), within the caller's tenant."""
    return await _read("query_range")


@_READ_DOC
async def series() -> Response:
    """Series matching match[] selectors (Prometheus HTTP API), within the caller's tenant."""
    return await _read("series")


@_READ_DOC
async def labels() -> Response:
    """Label names (Prometheus HTTP API), within the caller's tenant."""
    return await _read("labels")


@_READ_DOC
async def label_values(name: str) -> Response:
    """Values of one label (Prometheus HTTP API), within the caller's tenant."""
    return await _read("label_values", name)


for _prefix, _routes in (("/api/v1/metrics", (("query", query), ("query_range", query_range))),
                         ("/prometheus/api/v1", (("query", query), ("query_range", query_range), ("series", series),
                                                 ("labels", labels), ("label/<name>/values", label_values)))):
    for _path, _view in _routes:
        blueprint.add_url_rule(f"{_prefix}/{_path}", f"{_prefix}/{_path}", _view, methods=["GET", "POST"])
