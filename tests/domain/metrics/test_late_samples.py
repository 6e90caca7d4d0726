"""Samples older than what a series holds are merged in one pass (``Series.merge``),
with the outcome of adding them one by one (``Series.add``)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from trioscope.domain.metrics import MetricStore, Sample, StoreLimits
from trioscope.domain.metrics._store import Series

LABELS = (("__name__", "m"), ("deployment_hash", "d1"), ("tenant", "acme"))
T0 = 1_800_000_000.0
# Timestamps on a coarse grid so that buckets, ties and equal timestamps are common.
stamps = st.lists(st.tuples(st.integers(0, 400).map(lambda i: T0 + i * 2.5), st.integers(0, 9).map(float)),
                  max_size=60)


def one_by_one(held: list[tuple[float, float]], written: list[tuple[float, float]]) -> tuple[Series, int, int]:
    series = Series(LABELS)
    for timestamp, value in sorted(held, key=lambda p: p[0]):
        series.add(timestamp, value, True)
    kept = superseded = 0
    for timestamp, value in sorted(written, key=lambda p: p[0]):
        if series.add(timestamp, value, True):
            kept += 1
        else:
            superseded += 1
    return series, kept, superseded


@settings(max_examples=300, deadline=None)
@given(held=stamps, written=stamps)
def test_a_write_into_held_samples_ends_as_adding_them_one_by_one(held, written) -> None:
    store = MetricStore(StoreLimits(max_series_per_deployment=10, max_series_per_tenant=10, retention=10**9))
    now = T0 + 2000
    if held:
        store.write("acme", "d1", [Sample(LABELS, v, t) for t, v in held], now)
    outcome = store.write("acme", "d1", [Sample(LABELS, v, t) for t, v in written], now)
    expected, kept, superseded = one_by_one(held, written)
    series = store.tenant("acme").series.get(LABELS)
    got = (list(series.times), list(series.values)) if series is not None else ([], [])
    assert got == (list(expected.times), list(expected.values))
    assert (outcome.kept, outcome.superseded) == (kept, superseded)


def test_ten_thousand_late_samples_are_merged_not_inserted_one_at_a_time() -> None:
    """10,000 older points into a month of 15 s samples held the event loop
    ~475 ms as 10,000 inserts; merged, the held samples are copied once."""
    store = MetricStore(StoreLimits(max_series_per_deployment=10, max_series_per_tenant=10, retention=10**9))
    month = [Sample(LABELS, 1.0, T0 + 15 * i) for i in range(0, 172_800, 2)]  # every other bucket
    store.write("acme", "d1", month, T0 + 15 * 172_800)
    late = [Sample(LABELS, 2.0, T0 + 15 * i) for i in range(1, 20_000, 2)]  # the gaps of the first part
    outcome = store.write("acme", "d1", late, T0 + 15 * 172_800)
    series = store.tenant("acme").series[LABELS]
    assert (outcome.kept, outcome.superseded, len(series.times)) == (10_000, 0, 96_400)
    assert list(series.times) == sorted(series.times) and series.values[:4].tolist() == [1.0, 2.0, 1.0, 2.0]
