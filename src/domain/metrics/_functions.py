"""The functions and operators of the embedded engine, as Prometheus defines them
(``promql/functions.go``, ``promql/quantile.go``, ``promql/engine.go``): pure
functions of values, no selection and no labels."""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Sequence

def _extrapolated(times: Sequence[float], values: Sequence[float], start: float, end: float, *, counter: bool,
                  per_second: bool) -> float | None:
    """Prometheus' ``extrapolatedRate`` (promql/functions.go) for rate, increase and delta."""
    if len(times) < 2:
        return None
    result = values[-1] - values[0]
    if counter:
        previous = values[0]
        for value in values[1:]:
            if value < previous:
                result += previous
            previous = value
    to_start = times[0] - start
    to_end = end - times[-1]
    sampled = times[-1] - times[0]
    average = sampled / (len(times) - 1)
    if counter and result > 0 and values[0] >= 0:
        to_zero = sampled * (values[0] / result)
        to_start = min(to_start, to_zero)
    threshold = average * 1.1
    interval = sampled
    interval += to_start if to_start < threshold else average / 2
    interval += to_end if to_end < threshold else average / 2
    result *= interval / sampled
    return result / (end - start) if per_second else result


def _irate(times: Sequence[float], values: Sequence[float], start: float, end: float) -> float | None:
    if len(times) < 2:
        return None
    change = values[-1] - values[-2]
    if change < 0:
        change = values[-1]
    elapsed = times[-1] - times[-2]
    return change / elapsed if elapsed > 0 else None


RangeFunction = Callable[[Sequence[float], Sequence[float], float, float], float | None]
RANGE_FUNCTIONS: dict[str, RangeFunction] = {
    "rate": lambda t, v, s, e: _extrapolated(t, v, s, e, counter=True, per_second=True),
    "increase": lambda t, v, s, e: _extrapolated(t, v, s, e, counter=True, per_second=False),
    "delta": lambda t, v, s, e: _extrapolated(t, v, s, e, counter=False, per_second=False),
    "irate": _irate,
    "avg_over_time": lambda t, v, s, e: sum(v) / len(v) if v else None,
    "sum_over_time": lambda t, v, s, e: sum(v) if v else None,
    "min_over_time": lambda t, v, s, e: min(v) if v else None,
    "max_over_time": lambda t, v, s, e: max(v) if v else None,
    "count_over_time": lambda t, v, s, e: float(len(v)) if v else None,
    "last_over_time": lambda t, v, s, e: v[-1] if v else None,
}


def bucket_quantile(q: float, buckets: list[tuple[float, float]]) -> float:
    """Prometheus' ``bucketQuantile``: quantile ``q`` of cumulative (upper bound, count) buckets."""
    if math.isnan(q):
        return math.nan
    if q < 0:
        return -math.inf
    if q > 1:
        return math.inf
    buckets = sorted(buckets)
    if len(buckets) < 2 or buckets[-1][0] != math.inf:
        return math.nan
    counts = [count for _, count in buckets]
    for index in range(1, len(counts)):  # counts are cumulative: never let one fall (scrape skew)
        counts[index] = max(counts[index], counts[index - 1])
    observations = counts[-1]
    if observations == 0:
        return math.nan
    rank = q * observations
    found = bisect.bisect_left(counts, rank)
    if found == len(buckets) - 1:
        return buckets[-2][0]
    if found == 0 and buckets[0][0] <= 0:
        return buckets[0][0]
    start, end, count = 0.0, buckets[found][0], counts[found]
    if found > 0:
        start = buckets[found - 1][0]
        count -= counts[found - 1]
        rank -= counts[found - 1]
    return start + (end - start) * (rank / count)


# ---- operators --------------------------------------------------------------------------------

def _power(a: float, b: float) -> float:
    try:
        return float(a ** b)
    except (OverflowError, ZeroDivisionError):
        return math.inf


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
    return a / b


def _modulo(a: float, b: float) -> float:
    return math.nan if b == 0 else math.fmod(a, b)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide, "%": _modulo, "^": _power,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le,
}
AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": math.fsum, "avg": lambda v: math.fsum(v) / len(v), "min": min, "max": max, "count": lambda v: float(len(v)),
}
