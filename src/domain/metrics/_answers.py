"""The embedded engine's answers in the Prometheus HTTP API's shape: instant and
range queries, series, label names and values.

Each answer's work is bounded by a ``Budget`` made of ``max_samples``
(``metrics.max_query_samples``) and, when the caller passes them, a
``deadline`` on a monotonic ``clock`` (the caller's ``metrics.query_timeout``):
``QueryTooExpensive`` past either. Series and label lookups are charged as a
query's selectors are (``ELEMENT_COST`` per series examined). An answer is
at most ``MAX_ANSWER_BYTES`` of JSON (its size reckoned before it is built),
as one a Prometheus-compatible engine sends the proxy is."""

from __future__ import annotations

import bisect
import decimal
import math
from collections.abc import Callable, Iterable
from typing import Any

import promql_parser as pq

from ._engine import (
    MAX_RANGE_POINTS, Budget, Evaluator, RegexAnswers, InstantVector, Labels, RangeVector, Scalar, label_key, parse, select,
)
from ._exceptions import BadQuery, QueryTooExpensive
from ._store import Series, SeriesView

LOOKUP_MAX_SAMPLES = 5_000_000
"""The budget of a series or labels lookup whose caller passes none
(``metrics.max_query_samples``' default)."""

Clock = Callable[[], float]

MAX_ANSWER_BYTES = 64 * 1024 * 1024
"""Most JSON an answer may take (reckoned by ``_series_bytes`` and
``POINT_BYTES``). The budget counts series, not what their labels weigh:
one viewer's ``/series`` or query of 38,880 series of 26 KB of labels was
a 978 MB answer, serialized on the event loop (10 s) and 2.7 GB at its peak."""
POINT_BYTES = 32
"""JSON of one point, ``[1796439893.25,"0.123456789"],``, at most about."""


def _series_bytes(labels: Labels | Iterable[tuple[str, str]]) -> int:
    """JSON of a label set, ``{"name":"value",...}``, about (escapes aside)."""
    pairs = labels.items() if isinstance(labels, dict) else labels
    count = 0
    size = 0
    for name, value in pairs:
        count += 1
        size += len(name) + len(value)
    return size + 6 * count + 2


def _fits(size: int) -> None:
    """Raises ``QueryTooExpensive`` (422) when an answer would be over ``MAX_ANSWER_BYTES``."""
    if size > MAX_ANSWER_BYTES:
        raise QueryTooExpensive(f"the answer would be about {size // 1024**2} MiB of JSON, more than "
                                f"{MAX_ANSWER_BYTES // 1024**2} MiB; narrow the query (fewer series, a longer step) "
                                "or ask with limit")

def format_value(value: float) -> str:
    """A sample value as Prometheus writes it (Go's ``FormatFloat(v, 'f', -1, 64)``)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = repr(value)
    if "e" in text:  # Go writes no exponent: the shortest digits, in full
        text = format(decimal.Decimal(text), "f")
    return text[:-2] if text.endswith(".0") else text


def format_time(at: float) -> float | int:
    rounded = round(at, 3)
    return int(rounded) if rounded == int(rounded) else rounded


def _metric(labels: Labels) -> dict[str, str]:
    return dict(sorted(labels.items()))


def instant_query(view: SeriesView, query: str, at: float, *, max_samples: int, deadline: float | None = None,
                  clock: Clock | None = None) -> dict[str, Any]:
    """``data`` of ``/api/v1/query``: the value of ``query`` at ``at``.

    Args:
        max_samples: the work allowed (see ``Budget``).
        deadline: when evaluation must stop, on ``clock``; None: only ``max_samples`` bounds it.
        clock: a monotonic clock (``time.monotonic``), required with ``deadline``.
    """
    budget = Budget(max_samples, deadline=deadline, clock=clock)
    value = Evaluator(view, budget).evaluate(parse(query), at)
    when = format_time(at)
    if isinstance(value, Scalar):
        return {"resultType": "scalar", "result": [when, format_value(value.value)]}
    if isinstance(value, InstantVector):
        _fits(sum(_series_bytes(labels) + 16 + POINT_BYTES for labels, _ in value.elements))
        return {"resultType": "vector", "result": [
            {"metric": _metric(labels), "value": [when, format_value(v)]} for labels, v in value.elements]}
    _fits(sum(_series_bytes(labels) + 16 + POINT_BYTES * len(times) for labels, times, _ in value.series))
    return {"resultType": "matrix", "result": [
        {"metric": _metric(labels), "values": [[format_time(t), format_value(v)] for t, v in zip(times, values,
                                                                                              strict=True)]}
        for labels, times, values in value.series]}


def range_query(view: SeriesView, query: str, start: float, end: float, step: float, *,
                max_samples: int, deadline: float | None = None, clock: Clock | None = None) -> dict[str, Any]:
    """``data`` of ``/api/v1/query_range``: ``query`` at every step from ``start``
    to ``end``; ``max_samples``, ``deadline`` and ``clock`` as ``instant_query``'s,
    for all the steps together."""
    if end < start:
        raise BadQuery("invalid parameter \"end\": end timestamp must not be before start time")
    if step <= 0:
        raise BadQuery("invalid parameter \"step\": zero or negative query resolution step widths are not "
                       "accepted. Try a positive integer")
    if (end - start) / step > MAX_RANGE_POINTS:
        raise BadQuery(f"exceeded maximum resolution of {MAX_RANGE_POINTS} points per timeseries. Try decreasing "
                       "the query resolution (?step=XX)")
    expr = parse(query)
    evaluator = Evaluator(view, Budget(max_samples, deadline=deadline, clock=clock))
    rows: dict[tuple[tuple[str, str], ...], tuple[Labels, list[list[Any]]]] = {}
    steps = int((end - start) // step) + 1
    size = 0
    # A row's key (its sorted labels) made once for a label set, not at every
    # step: the steps' elements share their series' label sets, and sorting
    # ~30 labels for each point was most of a range read of wide series (3 s
    # of the metrics actor for a read within budget). Only the last step's
    # are kept: an aggregation makes new label sets at every step.
    keys: dict[int, tuple[Labels, tuple[tuple[str, str], ...]]] = {}
    for index in range(steps):
        at = start + index * step
        value = evaluator.evaluate(expr, at)
        if isinstance(value, RangeVector):
            raise BadQuery("invalid expression type \"range vector\" for range query, must be Scalar or instant "
                           "Vector")
        elements: Iterable[tuple[Labels, float]] = (
            [({}, value.value)] if isinstance(value, Scalar) else value.elements)
        when = format_time(at)
        previous, keys = keys, {}
        for labels, v in elements:
            known = previous.get(id(labels))
            if known is None or known[0] is not labels:
                known = (labels, label_key(labels))
            keys[id(labels)] = known
            row = rows.get(key := known[1])
            if row is None:
                size += _series_bytes(labels) + 16
                row = rows[key] = (labels, [])
            row[1].append([when, format_value(v)])
            size += POINT_BYTES
        _fits(size)  # at each step: the points already made are what the answer holds
    return {"resultType": "matrix", "result": [{"metric": _metric(labels), "values": points}
                                               for labels, points in rows.values()]}


def series_matching(view: SeriesView, selectors: list[pq.VectorSelector], start: float, end: float, *,
                    max_samples: int = LOOKUP_MAX_SAMPLES, deadline: float | None = None,
                    clock: Clock | None = None, limit: int | None = None) -> list[dict[str, str]]:
    """``/api/v1/series``: the label sets of series with samples between ``start`` and
    ``end``; ``max_samples``, ``deadline`` and ``clock`` as ``instant_query``'s;
    ``limit``: at most one more than that many (the caller says they were cut)."""
    budget = Budget(max_samples, deadline=deadline, clock=clock)
    regex_answers: RegexAnswers = {}
    found: dict[int, Series] = {}
    for selector in selectors:
        chosen = select(view, selector, budget, regex_answers)
        budget.charge_elements(len(chosen))
        found.update((id(series), series) for series in chosen if _sampled_between(series, start, end))
    answer = list(found.values())[:None if limit is None else limit + 1]
    _fits(sum(_series_bytes(series.labels) + 1 for series in answer))
    return [_metric(series.label_map) for series in answer]


def _sampled_between(series: Series, start: float, end: float) -> bool:
    """Whether ``series`` has a sample between ``start`` and ``end`` (its times are in order)."""
    times = series.times
    low = bisect.bisect_left(times, start)
    return low < len(times) and times[low] <= end


def _chosen(view: SeriesView, selectors: list[pq.VectorSelector], budget: Budget) -> Iterable[Series]:
    """The series any of ``selectors`` matches (every series without one), charged to ``budget``."""
    if not selectors:
        return budget.scanned(view.named(None))
    regex_answers: RegexAnswers = {}
    chosen: dict[int, Series] = {}
    for selector in selectors:
        chosen.update((id(series), series) for series in select(view, selector, budget, regex_answers))
    budget.charge_elements(len(chosen))
    return chosen.values()


def label_names(view: SeriesView, selectors: list[pq.VectorSelector], start: float = -math.inf,
                end: float = math.inf, *, max_samples: int = LOOKUP_MAX_SAMPLES, deadline: float | None = None,
                clock: Clock | None = None, limit: int | None = None) -> list[str]:
    """``/api/v1/labels``: the label names of the series ``selectors`` match (every
    series without one) with a sample between ``start`` and ``end``;
    ``max_samples``, ``deadline``, ``clock`` and ``limit`` as ``series_matching``'s."""
    budget = Budget(max_samples, deadline=deadline, clock=clock)
    return _strings(sorted({name for series in _chosen(view, selectors, budget)
                            if _sampled_between(series, start, end) for name in series.label_map}), limit)


def label_values(view: SeriesView, name: str, selectors: list[pq.VectorSelector], start: float = -math.inf,
                 end: float = math.inf, *, max_samples: int = LOOKUP_MAX_SAMPLES, deadline: float | None = None,
                 clock: Clock | None = None, limit: int | None = None) -> list[str]:
    """``/api/v1/label/<name>/values``: as ``label_names``, the values of label ``name``."""
    budget = Budget(max_samples, deadline=deadline, clock=clock)
    return _strings(sorted({series.label_map[name] for series in _chosen(view, selectors, budget)
                            if name in series.label_map and _sampled_between(series, start, end)}), limit)


def _strings(found: list[str], limit: int | None) -> list[str]:
    """``found`` cut to one more than ``limit``, checked to fit in an answer."""
    answer = found[:None if limit is None else limit + 1]
    _fits(sum(len(text) + 3 for text in answer))
    return answer
