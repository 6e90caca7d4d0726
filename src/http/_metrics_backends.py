"""The two backends of the metrics API, behind one interface.

``EmbeddedMetrics`` asks the metrics actor (``/root/metrics``), which stores
written samples and evaluates the PromQL subset of ``trioscope.domain.metrics``.
``ProxiedMetrics`` (``metrics.url``, ``_metrics_proxy``) forwards them to a
Prometheus-compatible engine.

Both answer a read as the Prometheus HTTP API does: a status and a JSON body
``{"status": "success", "data": ...}`` or ``{"status": "error", "errorType",
"error"}``.
"""

from __future__ import annotations

import logging
import math
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta, timezone
from typing import Any, Protocol

import attrs
import orjson
import promql_parser
import trio

from trioscope.actors.metrics import (
    FindSeries,
    InstantQuery,
    LabelNames,
    LabelValues,
    QueryFailed,
    RangeQuery,
    WriteSamples,
)
from trioscope.config import Settings
from trioscope.domain import metrics
from trioscope.runtime import ActorRef

log = logging.getLogger(__name__)

READ_APIS = ("query", "query_range", "series", "labels", "label_values")
"""What a read asks for; ``label_values`` is ``label/<name>/values``."""
EARLIEST_TIME = datetime(1, 1, 1, tzinfo=UTC).timestamp()
"""Earliest time parameter taken (0001-01-01T00:00:00Z): the times RFC 3339 writes with a
four-digit year (Prometheus takes times of ±292 billion years, which no answer can be written at)."""
LATEST_TIME = datetime(9999, 12, 31, 23, 59, 59, 999000, tzinfo=UTC).timestamp()
"""Latest time parameter taken (9999-12-31T23:59:59.999Z, at Prometheus' millisecond resolution)."""
MAX_STEP = metrics.MAX_DURATION
"""Longest ``step`` in seconds (about 292 years): Prometheus' longest duration (int64 nanoseconds)."""
_TIME_RANGE = "from 0001-01-01T00:00:00Z to 9999-12-31T23:59:59.999Z"
_PROMETHEUS_TIMES = {"-292273086-05-16T16:47:06Z": EARLIEST_TIME, "292277026596-12-04T15:30:07.999999999Z": LATEST_TIME}
"""Prometheus' own earliest and latest times as its clients write them (client_golang, Grafana): unbounded."""
_SECONDS = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?")
"""Unix seconds as Go's ``strconv.ParseFloat`` reads a decimal number (no spaces, no ``_``, no ``inf``)."""
_RFC3339 = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,9})?(?:Z|([+-])(\d{2}):(\d{2}))")
"""Go's ``time.RFC3339Nano`` as Prometheus parses times: a date, a time and a zone (``Z`` or an offset)."""
_DURATION = re.compile(r"(?:\d+(?:y|w|d|h|ms|m|s))+")
"""A Prometheus duration (``1h30m``), the only text handed to ``promql_parser.parse_duration``."""
_LIMIT = re.compile(r"[+-]?\d{1,18}")
TRUNCATED = "results truncated due to limit"
"""The warning of an answer cut at ``limit`` (as Prometheus words it)."""

Params = Sequence[tuple[str, str]]


@attrs.frozen
class Answer:
    """A Prometheus HTTP API answer."""

    status: int
    body: bytes
    cpu_seconds: float = 0.0
    """CPU time the embedded engine spent on it (0 for a proxied read: the work is the engine's)."""


class PrometheusError(Exception):
    """An error answered in the Prometheus API's shape."""

    def __init__(self, status: int, error_type: str, message: str, *, cpu_seconds: float = 0.0) -> None:
        super().__init__(message)
        self.answer = Answer(status, orjson.dumps({"status": "error", "errorType": error_type, "error": message}),
                             cpu_seconds)


def success(data: Any, warnings: Sequence[str] = ()) -> Answer:
    """The Prometheus API's answer of ``data``. Its list of items (a query's
    series, the series or label names found) is encoded an item at a time:
    orjson holds the GIL for a whole call, and one call over a 58 MiB answer
    held the event loop ~0.1 s even from a worker thread; between items the
    loop has its turns. The pieces are joined into the body at once (a copy
    more would be ~60 MiB more at the peak): one join of every piece and comma."""
    tail = b"}" if not warnings else b',"warnings":' + orjson.dumps(list(warnings)) + b"}"
    items = data.get("result") if isinstance(data, dict) else data
    if not isinstance(items, list) or len(items) < 2:
        return Answer(200, b'{"status":"success","data":' + orjson.dumps(data) + tail)
    head = b'{"status":"success","data":'
    if isinstance(data, dict):
        rest = orjson.dumps({key: value for key, value in data.items() if key != "result"})
        head += rest[:-1] + (b',"result":[' if len(rest) > 2 else b'"result":[')
        end = b"]}"
    else:
        head += b"["
        end = b"]"
    parts = [head]
    for item in items:
        parts += (orjson.dumps(item), b",")
    parts[-1] = end  # in place of the last comma
    parts.append(tail)
    return Answer(200, b"".join(parts))


class MetricsBackend(Protocol):
    """Where the metrics API writes and reads."""

    async def write(self, tenant: str, deployment_hash: str, samples: list[metrics.Sample]) -> metrics.WriteOutcome:
        """Store ``samples`` (labels already stamped); what became of them here.
        Raises ``WriteLimitExceeded``, or ``PrometheusError`` (503) when the
        engine does not take them."""

    async def read(self, tenant: str, api: str, params: Params, label: str = "") -> Answer:
        """Answer read ``api`` (one of ``READ_APIS``) for ``tenant`` with ``params``,
        with the CPU time it took here (``Answer.cpu_seconds``, also on a
        ``PrometheusError``'s answer)."""

    async def aclose(self) -> None:
        """Release connections."""


# ---- parameters, read as Prometheus reads them -------------------------------------------------

def _first(params: Params, name: str) -> str | None:
    return next((value for key, value in params if key == name), None)


def parse_time(params: Params, name: str, default: float | None) -> float:
    """A Prometheus time parameter, as Prometheus reads one: unix seconds (a decimal
    number, fraction and exponent allowed) or RFC 3339 with its zone (``Z`` or an
    offset). A time between ``EARLIEST_TIME`` and ``LATEST_TIME``; ``default``
    when absent (None: required).

    Error handling: ``PrometheusError`` 400 ``bad_data`` naming ``name``, for a time
    in another form (no zone, a date alone, a space for ``T``, spaces around a
    number: never read in the server's own time zone) or out of range."""
    raw = _first(params, name)
    if raw is None or raw == "":
        if default is None:
            raise PrometheusError(400, "bad_data", f"invalid parameter \"{name}\": missing")
        return default
    value = _seconds(raw)
    if value is None:
        raise PrometheusError(400, "bad_data", f"invalid parameter \"{name}\": cannot parse {raw[:64]!r} to a "
                                               "valid timestamp (unix seconds, or RFC 3339 with a zone such as "
                                               "2026-12-05T03:00:00Z)")
    if not EARLIEST_TIME <= value <= LATEST_TIME:
        raise PrometheusError(400, "bad_data", f"invalid parameter \"{name}\": {raw[:64]!r} is out of range: "
                                               f"times {_TIME_RANGE} (unix {EARLIEST_TIME:.0f} to "
                                               f"{LATEST_TIME:.3f}) are accepted")
    return value


def _seconds(raw: str) -> float | None:
    """``raw`` as unix seconds (maybe out of range, never NaN), or None."""
    if len(raw) > 64:
        return None
    if _SECONDS.fullmatch(raw):
        value = float(raw)
        return value if not math.isnan(value) else None  # ±Inf: out of range
    if raw in _PROMETHEUS_TIMES:
        return _PROMETHEUS_TIMES[raw]
    found = _RFC3339.fullmatch(raw)
    if found is None:
        return None
    year, month, day, hour, minute, second, fraction, sign, zone_hours, zone_minutes = found.groups()
    try:
        zone = UTC
        if sign is not None:
            offset = timedelta(hours=int(zone_hours), minutes=int(zone_minutes))
            zone = timezone(-offset if sign == "-" else offset)
        at = datetime(int(year), int(month), int(day), int(hour), int(minute), int(second), tzinfo=zone)
    except ValueError:  # no such day or time (2026-02-30, 24:00:00, a 24 h offset)
        return None
    return at.timestamp() + (float(fraction) if fraction else 0.0)


def parse_step(params: Params) -> float:
    """``step``: seconds (a decimal number) or a Prometheus duration (``15s``, ``1m``),
    at most ``MAX_STEP``. Error handling: ``PrometheusError`` 400 ``bad_data``."""
    raw = _first(params, "step")
    if not raw:
        raise PrometheusError(400, "bad_data", "invalid parameter \"step\": missing")
    step = math.nan
    if _SECONDS.fullmatch(raw):
        step = float(raw)
    elif len(raw) <= 64 and _DURATION.fullmatch(raw):  # the parser panics (BaseException) on "nan", "inf"
        try:
            step = promql_parser.parse_duration(raw).total_seconds()
        except ValueError:  # also a duration past its range ("duration must be greater than 0")
            pass
    if math.isnan(step):
        raise PrometheusError(400, "bad_data", f"invalid parameter \"step\": cannot parse {raw[:64]!r} to a valid "
                                               "duration")
    if abs(step) > MAX_STEP:
        raise PrometheusError(400, "bad_data", f"invalid parameter \"step\": {raw[:64]!r} is out of range: at most "
                                               f"{MAX_STEP:.0f} seconds (about 292 years) are accepted")
    return step


def parse_limit(params: Params) -> int | None:
    """``limit`` of ``series``, ``labels`` and ``label/<name>/values``: most entries
    answered; absent or 0: all. Error handling: ``PrometheusError`` 400 ``bad_data``."""
    raw = _first(params, "limit")
    if raw is None or raw == "":
        return None
    if not _LIMIT.fullmatch(raw):
        raise PrometheusError(400, "bad_data", f"invalid parameter \"limit\": cannot parse {raw[:64]!r} to an "
                                               "integer")
    limit = int(raw)
    if limit < 0:
        raise PrometheusError(400, "bad_data", "invalid parameter \"limit\": limit must be non-negative")
    return limit or None


def check_params(api: str, params: Params) -> None:
    """Refuse (``PrometheusError`` 400) the time, step and limit parameters ``api`` takes
    that Prometheus would refuse (a range ending before it starts, a step of 0),
    when present; the engine answers what is missing."""
    times = {name: parse_time(params, name, math.nan) for name in (("time",) if api == "query" else ("start", "end"))}
    if api == "query_range":
        if times["end"] < times["start"]:
            raise PrometheusError(400, "bad_data", "invalid parameter \"end\": end timestamp must not be before "
                                                   "start time")
        if _first(params, "step") and parse_step(params) <= 0:
            raise PrometheusError(400, "bad_data", "invalid parameter \"step\": zero or negative query resolution "
                                                   "step widths are not accepted. Try a positive integer")
    if api in ("series", "labels", "label_values"):
        parse_limit(params)


def _query(params: Params) -> str:
    query = _first(params, "query")
    if not query:
        raise PrometheusError(400, "bad_data", "invalid parameter \"query\": missing")
    return query


# ---- embedded ---------------------------------------------------------------------------------

ANSWER_GRACE = 1.0
"""Seconds an embedded read's asker waits past the read's deadline (where the
actor stops evaluating it, within milliseconds): for its "timed out" answer."""


class EmbeddedMetrics:
    """The embedded store and engine, owned by the metrics actor."""

    def __init__(self, actor: ActorRef, settings: Settings) -> None:
        self._actor = actor
        self._timeout = settings.metrics.query_timeout
        self._encoding = trio.CapacityLimiter(1)
        """Answers encoded at once: one, as when the event loop encoded them (each
        holds its data, its pieces and its body: up to ~3 x 64 MiB)."""

    async def write(self, tenant: str, deployment_hash: str, samples: list[metrics.Sample]) -> metrics.WriteOutcome:
        outcome: metrics.WriteOutcome = await self._actor.ask(WriteSamples(tenant, deployment_hash, samples),
                                                              timeout=self._timeout)
        return outcome

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
            message = LabelNames(tenant, selectors, parse_time(params, "start", -math.inf),
                                 parse_time(params, "end", math.inf))
        else:
            message = LabelValues(tenant, label, selectors, parse_time(params, "start", -math.inf),
                                  parse_time(params, "end", math.inf))
        limit = parse_limit(params) if api in ("series", "labels", "label_values") else None
        # The actor stops the read where this stops waiting for it: the timeout
        # holds from the request's arrival, mailbox wait included.
        message = attrs.evolve(message, deadline=time.monotonic() + self._timeout)
        if limit is not None:
            message = attrs.evolve(message, limit=limit)
        cost = message.cost
        try:
            # Waited for even when the request is cancelled (its client went away):
            # the actor evaluates the read to its end anyway, and what it cost
            # must reach the caller, which charges it to the reader.
            with trio.CancelScope(shield=True):
                data = await self._actor.ask(message, timeout=self._timeout + ANSWER_GRACE)
        except metrics.BadQuery as exc:
            raise PrometheusError(400, "bad_data", str(exc), cpu_seconds=cost.cpu_seconds) from None
        except metrics.UnsupportedQuery as exc:
            raise PrometheusError(422, "execution", f"unsupported: {exc}", cpu_seconds=cost.cpu_seconds) from None
        except metrics.QueryTimedOut as exc:
            raise PrometheusError(503, "timeout", str(exc), cpu_seconds=cost.cpu_seconds) from None
        except (metrics.QueryTooExpensive, metrics.QueryExecutionError, QueryFailed) as exc:
            raise PrometheusError(422, "execution", str(exc), cpu_seconds=cost.cpu_seconds) from None

        def encoded() -> tuple[Answer, float]:
            began = time.thread_time()
            truncated = limit is not None and len(data) > limit
            answer = success(data[:limit], [TRUNCATED]) if truncated else success(data)
            return answer, time.thread_time() - began

        # Encoded in a worker thread and charged to the reader with the read: a
        # 58 MiB answer was ~0.1 s of the event loop per read, uncharged, so one
        # viewer looping it took ~75% of a core within its 25% share (other
        # tenants' reads p90 7 -> 140 ms).
        with trio.CancelScope(shield=True):  # as the read: what it costs reaches the caller
            answer, encoding = await trio.to_thread.run_sync(encoded, limiter=self._encoding)
        return attrs.evolve(answer, cpu_seconds=cost.cpu_seconds + encoding)

    async def aclose(self) -> None:
        pass


# ---- a Prometheus-compatible engine -----------------------------------------------------------
