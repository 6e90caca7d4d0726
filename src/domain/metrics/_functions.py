"""The functions and operators of the embedded engine, as Prometheus defines them
(``promql/functions.go``, ``promql/quantile.go``, ``promql/engine.go``): pure
functions of values, no selection and no labels.

Error handling: none of them raises for any float input. Where Python's math
raises (``math.fsum`` on +Inf with -Inf or past the float range, ``math.fmod``
of an infinity, ``**`` of a negative base to a fractional power, a division by
zero) they answer what Go's IEEE arithmetic, and so Prometheus, answers: NaN
or ±Inf."""

from __future__ import annotations

import bisect
import math
import operator
from collections.abc import Callable, Sequence

def _extrapolated(times: Sequence[float], values: Sequence[float], start: float, end: float, *, counter: bool,
                  per_second: bool) -> float | None:
    """Prometheus' ``extrapolatedRate`` (promql/functions.go) for rate, increase and delta,
    in Prometheus 3's order: a start too far from the first sample becomes half
    an interval first, and only then a counter's zero point may come nearer
    (Prometheus 2 clamped to the zero point first, so a young counter's
    increase came out half an interval larger)."""
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
    threshold = average * 1.1
    if to_start >= threshold:
        to_start = average / 2
    if counter and result > 0 and values[0] >= 0:
        to_start = min(to_start, sampled * (values[0] / result))  # never back past the counter's zero
    if to_end >= threshold:
        to_end = average / 2
    result *= (sampled + to_start + to_end) / sampled
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
    "avg_over_time": lambda t, v, s, e: _average(v) if v else None,
    "sum_over_time": lambda t, v, s, e: _sum(v) if v else None,
    "min_over_time": lambda t, v, s, e: _least(v) if v else None,
    "max_over_time": lambda t, v, s, e: _greatest(v) if v else None,
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
    if not buckets or buckets[-1][0] != math.inf:
        return math.nan
    buckets = _coalesced(buckets)
    if len(buckets) < 2:
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
    # count is 0 only for an empty lowest bucket at q = 0 (rank 0): Go's 0 / 0, NaN, as Prometheus answers.
    return start + (end - start) * _divide(rank, count)


def _coalesced(buckets: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """Prometheus' ``coalesceBuckets``: sorted buckets with one upper bound
    written twice (``le="1"`` and ``le="1.0"``) counted as one."""
    merged: list[tuple[float, float]] = []
    for bound, count in buckets:
        if merged and merged[-1][0] == bound:
            merged[-1] = (bound, merged[-1][1] + count)
        else:
            merged.append((bound, count))
    return merged


# ---- operators --------------------------------------------------------------------------------

def _odd_integer(x: float) -> bool:
    return float(x).is_integer() and math.fmod(x, 2) != 0


def _power(a: float, b: float) -> float:
    """Go's ``math.Pow``, which Prometheus' ``^`` is: NaN for a negative base to a
    non-integer power (Python's ``**`` would answer a complex number)."""
    try:
        return math.pow(a, b)
    except OverflowError:  # too large a magnitude: negative only for a negative base to an odd power
        return -math.inf if a < 0 and _odd_integer(b) else math.inf
    except ValueError:  # math.pow's "domain error"
        if a == 0:  # ±0 to a negative power
            return math.copysign(math.inf, a) if _odd_integer(b) else math.inf
        return math.nan  # a negative base to a non-integer power


def _divide(a: float, b: float) -> float:
    if b == 0:
        return math.nan if a == 0 or math.isnan(a) else math.copysign(math.inf, a) * math.copysign(1, b)
    return a / b


def _modulo(a: float, b: float) -> float:
    """Go's ``math.Mod``: NaN for ±Inf % y and x % 0 (where ``math.fmod`` raises)."""
    if b == 0 or math.isinf(a):
        return math.nan
    return math.fmod(a, b)


ARITHMETIC: dict[str, Callable[[float, float], float]] = {
    "+": operator.add, "-": operator.sub, "*": operator.mul, "/": _divide, "%": _modulo, "^": _power,
}
COMPARISON: dict[str, Callable[[float, float], bool]] = {
    "==": operator.eq, "!=": operator.ne, ">": operator.gt, "<": operator.lt, ">=": operator.ge, "<=": operator.le,
}


# ---- aggregations (over at least one value) ----------------------------------------------------

def _sum(values: Sequence[float]) -> float:
    """The exact sum rounded once (``math.fsum``) where it is a finite number;
    else IEEE addition as Prometheus does it: +Inf with -Inf is NaN, a sum past
    the float range ±Inf (``math.fsum`` raises for both)."""
    try:
        return math.fsum(values)
    except (OverflowError, ValueError):
        return sum(values, 0.0)


def _average(values: Sequence[float]) -> float:
    """The mean; finite values whose sum overflows still have a finite mean
    (Prometheus divides each value by the count first, as here)."""
    count = len(values)
    total = _sum(values)
    if math.isinf(total) and all(math.isfinite(value) for value in values):
        return _sum([value / count for value in values])
    return total / count


def _least(values: Sequence[float]) -> float:
    """``min`` as Prometheus takes it: NaN only when every value is NaN (Python's
    ``min`` answers NaN or not depending on where the NaN is)."""
    numbers = [value for value in values if not math.isnan(value)]
    return min(numbers) if numbers else math.nan


def _greatest(values: Sequence[float]) -> float:
    """``max`` as Prometheus takes it: NaN only when every value is NaN."""
    numbers = [value for value in values if not math.isnan(value)]
    return max(numbers) if numbers else math.nan


AGGREGATIONS: dict[str, Callable[[list[float]], float]] = {
    "sum": _sum, "avg": _average, "min": _least, "max": _greatest, "count": lambda v: float(len(v)),
}
