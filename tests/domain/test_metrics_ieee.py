"""The engine's arithmetic where Python's math raises and Go's IEEE floats
answer NaN or ±Inf: each case is what Prometheus 2.42 answers for the same
query (compared by the metrics review). None of them may raise: an exception
in the engine used to crash the metrics actor, and a few in a row the server."""

from __future__ import annotations

import math
from typing import Any

import pytest

from trioscope.domain.metrics import MetricStore, Sample, StoreLimits, instant_query
from trioscope.domain.metrics._functions import AGGREGATIONS, ARITHMETIC, RANGE_FUNCTIONS, bucket_quantile

T0 = 1_700_000_100.0
INF = math.inf


def _same(got: float, expected: float) -> bool:
    return (math.isnan(got) and math.isnan(expected)) or (got == expected and math.copysign(1, got) ==
                                                          math.copysign(1, expected))


@pytest.mark.parametrize(("a", "b", "expected"), [
    (-8.0, 1 / 3, math.nan),  # a negative base to a fractional power (Python's ** answers a complex number)
    (-8.0, 3.0, -512.0),
    (0.0, -1.0, INF), (-0.0, -1.0, -INF), (-0.0, -2.0, INF), (0.0, -0.5, INF),
    (10.0, 400.0, INF), (-10.0, 401.0, -INF), (-10.0, 400.0, INF), (0.5, -2000.0, INF),
    (INF, 2.0, INF), (-INF, 3.0, -INF), (math.nan, 0.0, 1.0), (1.0, math.nan, 1.0), (2.0, math.nan, math.nan),
])
def test_power_is_gos_math_pow(a: float, b: float, expected: float) -> None:
    assert _same(ARITHMETIC["^"](a, b), expected)


@pytest.mark.parametrize(("a", "b", "expected"), [
    (INF, 2.0, math.nan), (-INF, 2.0, math.nan), (5.0, 0.0, math.nan), (5.0, INF, 5.0), (-5.5, 2.0, -1.5),
    (math.nan, 2.0, math.nan),
])
def test_modulo_is_gos_math_mod(a: float, b: float, expected: float) -> None:
    assert _same(ARITHMETIC["%"](a, b), expected)


@pytest.mark.parametrize(("values", "expected"), [
    ([INF, -INF], math.nan), ([1e308, 1e308], INF), ([-1e308, -1e308], -INF), ([INF, 1.0], INF),
    ([math.nan, 1.0], math.nan), ([0.1] * 10, 1.0),  # fsum's precision kept where the sum is finite
])
def test_sum_of_infinities_and_past_the_float_range(values: list[float], expected: float) -> None:
    assert _same(AGGREGATIONS["sum"](values), expected)
    assert _same(RANGE_FUNCTIONS["sum_over_time"]([], values, 0, 1) or 0.0, expected)


@pytest.mark.parametrize(("values", "expected"), [
    ([INF, -INF], math.nan), ([1e308, 1e308], 1e308), ([INF, 1.0], INF), ([0.1] * 10, 0.1), ([1.0, 2.0], 1.5),
])
def test_avg_of_infinities_and_past_the_float_range(values: list[float], expected: float) -> None:
    assert _same(AGGREGATIONS["avg"](values), expected)
    assert _same(RANGE_FUNCTIONS["avg_over_time"]([], values, 0, 1) or 0.0, expected)


@pytest.mark.parametrize(("values", "low", "high"), [
    ([math.nan, 3.0, 5.0], 3.0, 5.0), ([3.0, math.nan, 5.0], 3.0, 5.0), ([3.0, 5.0, math.nan], 3.0, 5.0),
    ([math.nan], math.nan, math.nan), ([math.nan, math.nan], math.nan, math.nan), ([-INF, INF], -INF, INF),
])
def test_min_and_max_ignore_nan_unless_every_value_is_nan(values: list[float], low: float, high: float) -> None:
    assert _same(AGGREGATIONS["min"](values), low)
    assert _same(AGGREGATIONS["max"](values), high)
    assert _same(RANGE_FUNCTIONS["min_over_time"]([], values, 0, 1) or 0.0, low)
    assert _same(RANGE_FUNCTIONS["max_over_time"]([], values, 0, 1) or 0.0, high)


def test_quantile_zero_with_an_empty_lowest_bucket_is_nan() -> None:
    assert math.isnan(bucket_quantile(0.0, [(0.1, 0.0), (1.0, 5.0), (INF, 10.0)]))
    assert bucket_quantile(0.5, [(0.1, 0.0), (1.0, 5.0), (INF, 10.0)]) == 1.0


def test_quantile_counts_buckets_of_one_bound_as_one() -> None:
    """Prometheus' coalesceBuckets: le="1" and le="1.0" are one bucket."""
    assert bucket_quantile(0.5, [(1.0, 2.0), (1.0, 2.0), (2.0, 8.0), (INF, 8.0)]) == 1.0


# ---- the same through queries ------------------------------------------------------------------

def _store() -> MetricStore:
    store = MetricStore(StoreLimits(max_series_per_deployment=100, max_series_per_tenant=100, retention=3600))

    def sample(name: str, value: float, **labels: str) -> Sample:
        pairs = {"__name__": name, "tenant": "acme", "deployment_hash": "d1", **labels}
        return Sample(tuple(sorted(pairs.items())), value, T0)

    store.write("acme", "d1", [
        sample("temperature", 20.5, instance="a"), sample("temperature", 21.0, instance="b"),
        sample("huge", 1e308, k="1"), sample("huge", 1e308, k="2"), sample("g", 3.0),
        sample("h_bucket", 0.0, le="0.1"), sample("h_bucket", 5.0, le="1"), sample("h_bucket", 10.0, le="+Inf"),
    ], T0)
    return store


def _values(expr: str) -> list[str]:
    data: dict[str, Any] = instant_query(_store().tenant("acme"), expr, T0, max_samples=10_000)
    if data["resultType"] == "scalar":
        return [data["result"][1]]
    return [row["value"][1] for row in data["result"]]


@pytest.mark.parametrize(("expr", "expected"), [
    ("(-8) ^ (1/3)", ["NaN"]),
    ('sum(temperature{instance="a"} / 0 or -temperature{instance="b"} / 0)', ["NaN"]),
    ('avg(temperature{instance="a"} / 0 or -temperature{instance="b"} / 0)', ["NaN"]),
    ("sum(huge)", ["+Inf"]),
    ("(g / 0) % 2", ["NaN"]),
    ("histogram_quantile(0, h_bucket)", ["NaN"]),
    ('max((temperature{instance="a"} * 0 / 0) or temperature{instance="b"})', ["21"]),
    ('min((temperature{instance="a"} * 0 / 0) or temperature{instance="b"})', ["21"]),
    ('max(temperature * 0 / 0)', ["NaN"]),
])
def test_queries_answer_what_prometheus_answers(expr: str, expected: list[str]) -> None:
    assert _values(expr) == expected
