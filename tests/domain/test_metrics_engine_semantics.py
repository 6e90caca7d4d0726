"""The embedded engine follows Prometheus (2.42, promql/engine.go and functions.go)
where a result would have two series of one label set, for comparisons with
on(...), and for last_over_time's name; and the store keeps samples written
out of order."""

from __future__ import annotations

from typing import Any

import pytest

from trioscope.domain.metrics import MetricStore, QueryExecutionError, Sample, StoreLimits, instant_query, range_query

T0 = 1_700_000_100.0
LIMITS = StoreLimits(max_series_per_deployment=100, max_series_per_tenant=200, retention=3600)


def sample(name: str, value: float, at: float, **labels: str) -> Sample:
    return Sample(tuple(sorted({"__name__": name, **labels}.items())), value, at)


def web() -> MetricStore:
    """temperature and a counter with the same labels, for two instances of one job."""
    store = MetricStore(LIMITS)
    samples = []
    for i in range(21):
        at = T0 - 300 + 15 * i
        for instance, base in (("a", 20.0), ("b", 30.0)):
            samples.append(sample("temperature", base + i, at, instance=instance, job="web"))
            samples.append(sample("requests", 10.0 * i, at, instance=instance, job="web"))
    store.write("acme", "d1", samples, T0)
    return store


def query(store: MetricStore, expr: str) -> list[dict[str, Any]]:
    data = instant_query(store.tenant("acme"), expr, T0, max_samples=10**6)
    assert data["resultType"] == "vector"
    result: list[dict[str, Any]] = data["result"]
    return result


@pytest.mark.parametrize("expr", [
    'rate({__name__=~"temperature|requests"}[5m])',
    '{__name__=~"temperature|requests"} * 2',
    '-{__name__=~"temperature|requests"}',
    '{__name__=~"temperature|requests"} > bool 0',
])
def test_dropping_the_name_into_one_label_set_is_an_error(expr: str) -> None:
    with pytest.raises(QueryExecutionError, match=r"^vector cannot contain metrics with the same labelset$"):
        query(web(), expr)


def test_range_query_of_duplicate_label_sets_is_an_error_not_a_merged_series() -> None:
    with pytest.raises(QueryExecutionError, match="same labelset"):
        range_query(web().tenant("acme"), 'rate({__name__=~"temperature|requests"}[5m])', T0 - 60, T0, 15,
                    max_samples=10**6)


def test_one_name_after_dropping_it_is_not_a_duplicate() -> None:
    assert len(query(web(), "rate(requests[5m])")) == 2
    assert len(query(web(), '{__name__=~"temperature|requests"} > 0')) == 4  # a filter keeps the names


def test_many_to_one_without_group_left_is_an_error() -> None:
    with pytest.raises(QueryExecutionError,
                       match=r"^multiple matches for labels: many-to-one matching must be explicit \(group_left/"):
        query(web(), "temperature - on(job) sum by (job)(temperature)")


def test_many_on_the_right_names_the_match_group() -> None:
    with pytest.raises(QueryExecutionError, match=r'^found duplicate series for the match group \{job="web"\} on the '
                                                r"right hand-side of the operation: \[.*\];many-to-many matching"):
        query(web(), "sum by (job)(temperature) - on(job) temperature")


def test_comparison_with_on_keeps_only_the_matching_labels() -> None:
    result = query(web(), "requests > on(instance) temperature")
    assert sorted(r["metric"]["instance"] for r in result) == ["a", "b"]
    assert all(set(r["metric"]) == {"instance"} for r in result)
    assert {r["value"][1] for r in result} == {"200"}  # the left values
    assert query(web(), "temperature > on(instance) requests") == []


def test_comparison_with_ignoring_keeps_the_name_and_arithmetic_drops_it() -> None:
    compared = query(web(), "temperature < ignoring(job) requests")
    assert all(set(r["metric"]) == {"__name__", "instance"} for r in compared)
    assert all(r["metric"]["__name__"] == "temperature" for r in compared)
    summed = query(web(), "temperature + on(__name__, instance) requests")
    assert summed == []  # the names differ: nothing matches
    added = query(web(), "temperature + on(instance) requests")
    assert all(set(r["metric"]) == {"instance"} for r in added)
    assert all(set(r["metric"]) == {"instance"} for r in query(web(), "temperature > bool on(instance) requests"))


def test_last_over_time_keeps_the_name_other_range_functions_drop_it() -> None:
    last = query(web(), "last_over_time(temperature[5m])")
    assert {r["metric"].get("__name__") for r in last} == {"temperature"}
    assert {r["value"][1] for r in last} == {"40", "50"}
    for function in ("max_over_time", "avg_over_time", "count_over_time", "rate"):
        assert all("__name__" not in r["metric"] for r in query(web(), f"{function}(temperature[5m])"))


def test_descending_points_in_one_write_are_all_kept() -> None:
    store = MetricStore(LIMITS)
    outcome = store.write("acme", "d1", [sample("g", float(i), T0 - 60 * i, k="desc") for i in range(10)], T0)
    assert (outcome.new_series, outcome.kept, outcome.too_old, outcome.superseded) == (1, 10, 0, 0)
    assert query(store, "count_over_time(g[20m])")[0]["value"][1] == "10"
    assert query(store, "g")[0]["value"][1] == "0"  # the newest is the one at T0


def test_back_filled_points_are_put_in_place() -> None:
    store = MetricStore(LIMITS)
    store.write("acme", "d1", [sample("g", 100.0, T0)], T0)
    outcome = store.write("acme", "d1", [sample("g", float(i), T0 - 60 * i) for i in range(10, 0, -1)], T0)
    assert (outcome.new_series, outcome.kept) == (0, 10)
    assert query(store, "count_over_time(g[20m])")[0]["value"][1] == "11"
    assert query(store, "g")[0]["value"][1] == "100"
    times = next(iter(store.tenant("acme").with_pair("__name__", "g"))).times
    assert list(times) == sorted(times)


def test_a_bucket_keeps_its_latest_sample_whatever_the_order() -> None:
    bucket = T0 - T0 % 15
    for order in ((1.0, 9.0), (9.0, 1.0)):
        store = MetricStore(LIMITS)
        store.write("acme", "d1", [sample("g", 0.0, bucket + 30)], T0 + 60)
        outcomes = [store.write("acme", "d1", [sample("g", offset, bucket + offset)], T0 + 60) for offset in order]
        assert sum(o.superseded for o in outcomes) == (1 if order == (9.0, 1.0) else 0)
        values = next(iter(store.tenant("acme").with_pair("__name__", "g"))).values
        assert list(values) == [9.0, 0.0]


def test_too_old_samples_are_counted_as_refused() -> None:
    store = MetricStore(LIMITS)
    outcome = store.write("acme", "d1", [sample("g", 1.0, T0 - 3601), sample("g", 2.0, T0)], T0)
    assert (outcome.kept, outcome.too_old) == (1, 1)
