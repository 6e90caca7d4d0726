"""The embedded engine's budget: every series a selector examines, every value an
operation reads or produces and every node evaluated is charged, the series and
label lookups have a budget too, and a deadline on a clock passed in stops a
query. Plain values, a fake clock: no sockets, no time."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from trioscope.domain.metrics import (
    ELEMENT_COST, MetricStore, QueryTimedOut, QueryTooExpensive, Sample, StoreLimits, instant_query, label_names, label_values,
    parse_selector, range_query, series_matching,
)
from trioscope.domain.metrics._engine import Budget

T0 = 1_700_000_100.0
SERIES = 2_000


def bulk_store() -> MetricStore:
    store = MetricStore(StoreLimits(max_series_per_deployment=10 * SERIES, max_series_per_tenant=10 * SERIES,
                                    retention=3600))
    samples = [Sample(tuple(sorted({"__name__": "bulk", "id": f"s{i}", "job": "bulk", "tenant": "big",
                                    "deployment_hash": "d1"}.items())), float(i), T0 - 20) for i in range(SERIES)]
    store.write("big", "d1", samples, T0)
    return store


def ticking(step: float) -> Callable[[], float]:
    """A clock that moves ``step`` seconds each time it is read."""
    now = [0.0]

    def clock() -> float:
        now[0] += step
        return now[0]
    return clock


def test_selector_without_equality_matcher_is_charged_for_every_series_it_examines() -> None:
    view = bulk_store().tenant("big")
    # Matches nothing, but examines every series: before, nothing was charged and 250 of these ran for a minute.
    enough = SERIES * ELEMENT_COST * 4
    assert instant_query(view, '{id=~"nomatch"}', T0, max_samples=enough)["result"] == []
    query = " or ".join(f'{{id=~"nomatch{i}"}}' for i in range(10))
    with pytest.raises(QueryTooExpensive, match=r"metrics\.max_query_samples"):
        instant_query(view, query, T0, max_samples=enough)


def test_scalar_operations_are_charged_for_each_value() -> None:
    view = bulk_store().tenant("big")
    budget = 20 * SERIES * ELEMENT_COST
    assert instant_query(view, "count(bulk * 1)", T0, max_samples=budget)["result"][0]["value"][1] == str(SERIES)
    with pytest.raises(QueryTooExpensive):
        instant_query(view, "count(bulk" + " * 1" * 20 + ")", T0, max_samples=budget)


def test_range_query_charges_every_node_at_every_step() -> None:
    view = bulk_store().tenant("big")
    with pytest.raises(QueryTooExpensive):
        range_query(view, "1" + " * 1" * 200, T0 - 10_000, T0, 1, max_samples=1_000_000)


@pytest.mark.parametrize("lookup", ["series", "labels", "values"])
def test_series_and_label_lookups_have_a_budget(lookup: str) -> None:
    view = bulk_store().tenant("big")
    selectors = [parse_selector(f'{{id=~"nomatch{i}"}}') for i in range(10)]
    one = [parse_selector('{id=~"s1.*"}')]
    enough = SERIES * ELEMENT_COST * 4
    if lookup == "series":
        assert len(series_matching(view, one, 0, T0, max_samples=enough)) == 1111
        with pytest.raises(QueryTooExpensive):
            series_matching(view, selectors, 0, T0, max_samples=enough)
    elif lookup == "labels":
        assert "id" in label_names(view, one, max_samples=enough)
        with pytest.raises(QueryTooExpensive):
            label_names(view, selectors, max_samples=enough)
    else:
        assert len(label_values(view, "id", one, max_samples=enough)) == 1111
        with pytest.raises(QueryTooExpensive):
            label_values(view, "id", selectors, max_samples=enough)


def test_deadline_on_the_clock_passed_in_stops_a_query() -> None:
    view = bulk_store().tenant("big")
    query = " or ".join(f'{{id=~"nomatch{i}"}}' for i in range(10))
    # Within the samples allowed, but the clock passes the deadline while the query runs.
    with pytest.raises(QueryTimedOut, match="timed out"):
        instant_query(view, query, T0, max_samples=10**9, deadline=1.0, clock=ticking(0.4))
    with pytest.raises(QueryTimedOut, match="timed out"):
        series_matching(view, [parse_selector(f'{{id=~"x{i}.*"}}') for i in range(10)], 0, T0, max_samples=10**9,
                        deadline=1.0, clock=ticking(0.4))
    # A clock that stays before the deadline changes nothing.
    assert instant_query(view, query, T0, max_samples=10**9, deadline=1.0, clock=lambda: 0.0)["result"] == []


def test_a_query_asked_past_its_deadline_stops_at_once() -> None:
    view = bulk_store().tenant("big")
    with pytest.raises(QueryTimedOut, match="timed out"):
        instant_query(view, "1", T0, max_samples=10**9, deadline=5.0, clock=lambda: 6.0)


def test_budget_needs_a_clock_with_a_deadline() -> None:
    with pytest.raises(ValueError, match="clock"):
        Budget(1000, deadline=1.0)
