"""Metric history: bucketing, retention window, float32 rings that grow lazily."""

from __future__ import annotations

import math
import struct
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioscope.domain.timeseries import (
    RESOLUTION,
    ExpiryReport,
    HistoryStats,
    MetricHistory,
    Point,
    SeriesGroup,
    float32_decimal,
)

HOUR = 3600.0


def f32(value: float) -> float:
    """``value`` as float32 gives it back."""
    return struct.unpack("f", struct.pack("f", value))[0]


def series(group: SeriesGroup) -> list[tuple[float, dict[str, float]]]:
    return [(p.timestamp, dict(p.values)) for p in group.points(-math.inf)]


# --- bucketing and values ------------------------------------------------------


def test_timestamps_in_one_15s_bucket_share_its_start():
    group = SeriesGroup(HOUR)
    group.record(15.0, {"cpu": 1.0})
    group.record(29.9, {"mem": 2.0})
    group.record(30.0, {"cpu": 3.0})
    assert series(group) == [(15.0, {"cpu": 1.0, "mem": 2.0}), (30.0, {"cpu": 3.0})]
    assert RESOLUTION == 15.0


def test_later_record_in_bucket_overwrites_named_metrics_and_keeps_others():
    group = SeriesGroup(HOUR)
    group.record(60.0, {"cpu": 1.0, "mem": 100.0})
    group.record(74.0, {"cpu": 2.5})
    assert series(group) == [(60.0, {"cpu": 2.5, "mem": 100.0})]
    assert len(group) == 1


def test_metrics_share_buckets_and_a_metric_seen_later_has_no_earlier_values():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 1.0})
    group.record(15.0, {"cpu": 2.0})
    group.record(30.0, {"cpu": 3.0, "disk": 7.0})
    assert series(group) == [(0.0, {"cpu": 1.0}), (15.0, {"cpu": 2.0}), (30.0, {"cpu": 3.0, "disk": 7.0})]


def test_buckets_without_values_are_not_points():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 1.0})
    group.record(60.0, {"cpu": 2.0})
    assert [p.timestamp for p in group.points(0.0)] == [0.0, 60.0]
    assert len(group) == 2


def test_values_are_kept_at_float32_precision_and_read_as_its_shortest_decimal():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 0.1, "mem": 0.123456789})
    assert group.latest() == Point(0.0, {"cpu": 0.1, "mem": 0.12345679})
    assert f32(0.1) != 0.1 and f32(0.12345679) == f32(0.123456789)


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, 1e39, -3.5e38])
def test_non_finite_or_float32_overflowing_values_are_ignored(bad):
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 1.0, "mem": bad})
    group.record(0.0, {"cpu": bad})
    assert series(group) == [(0.0, {"cpu": 1.0})]


def test_largest_float32_value_is_kept():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 3.4e38, "mem": -3.4e38})
    assert series(group) == [(0.0, {"cpu": 3.4e38, "mem": -3.4e38})]
    assert f32(3.4e38) != 3.4e38


def test_record_without_usable_values_neither_stores_nor_moves_the_window():
    group = SeriesGroup(60.0)  # 4 buckets
    group.record(0.0, {"cpu": 1.0})
    group.record(10 * HOUR, {"cpu": math.nan})
    group.record(10 * HOUR, {})
    assert series(group) == [(0.0, {"cpu": 1.0})]
    group.record(15.0, {"cpu": 2.0})
    assert len(group) == 2


@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_timestamp_is_an_error(bad):
    group = SeriesGroup(HOUR)
    with pytest.raises(ValueError, match="invalid timestamp"):
        group.record(bad, {"cpu": 1.0})
    with pytest.raises(ValueError, match="invalid timestamp"):
        group.expire(bad)


# --- queries ---------------------------------------------------------------------


def test_points_since_and_until_bound_bucket_starts_inclusively():
    group = SeriesGroup(HOUR)
    for t in (0.0, 15.0, 30.0, 45.0, 60.0):
        group.record(t + 3.0, {"cpu": t})

    def starts(since, until=None):
        return [p.timestamp for p in group.points(since, until)]

    assert starts(15.0) == [15.0, 30.0, 45.0, 60.0]
    assert starts(15.1) == [30.0, 45.0, 60.0]  # since is compared to the bucket start
    assert starts(14.9, 45.0) == [15.0, 30.0, 45.0]
    assert starts(15.0, 44.9) == [15.0, 30.0]
    assert starts(30.0, 30.0) == [30.0]
    assert starts(60.1) == []
    assert starts(-math.inf, -0.1) == []
    assert starts(45.0, 15.0) == []
    assert starts(-math.inf, math.inf) == [0.0, 15.0, 30.0, 45.0, 60.0]


def test_points_with_nan_bound_is_an_error():
    group = SeriesGroup(HOUR)
    with pytest.raises(ValueError, match="invalid time range"):
        group.points(math.nan)


def test_latest_and_newest_follow_the_newest_bucket_not_the_last_record():
    group = SeriesGroup(HOUR)
    assert group.latest() is None and group.newest is None and len(group) == 0
    group.record(100.0, {"cpu": 1.0, "mem": 5.0})
    group.record(50.0, {"cpu": 2.0})  # late, lands in an older bucket
    assert group.latest() == Point(90.0, {"cpu": 1.0, "mem": 5.0})
    assert group.newest == 90.0


def test_points_are_fresh_objects_so_callers_cannot_change_history():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 1.0})
    group.latest().values["cpu"] = 99.0  # type: ignore[index]
    assert group.latest() == Point(0.0, {"cpu": 1.0})


# --- the retention window ----------------------------------------------------------


def test_recording_past_the_retention_drops_the_oldest_buckets():
    group = SeriesGroup(60.0)  # 4 buckets
    for i in range(6):
        group.record(i * 15.0, {"cpu": float(i)})
    assert series(group) == [(t * 15.0, {"cpu": float(t)}) for t in (2, 3, 4, 5)]
    assert len(group) == 4


def test_capacity_rounds_a_partial_bucket_up():
    group = SeriesGroup(20.0)  # ceil(20 / 15) = 2 buckets
    for i in range(4):
        group.record(i * 15.0, {"cpu": float(i)})
    assert [p.timestamp for p in group.points(-math.inf)] == [30.0, 45.0]


def test_retention_of_one_bucket_keeps_only_the_newest():
    group = SeriesGroup(15.0)
    group.record(0.0, {"cpu": 1.0})
    group.record(16.0, {"cpu": 2.0})
    group.record(1.0, {"cpu": 3.0})  # now too old
    assert series(group) == [(15.0, {"cpu": 2.0})]


def test_out_of_order_record_inside_the_window_lands_in_its_bucket():
    group = SeriesGroup(60.0)
    group.record(45.0, {"cpu": 4.0})
    group.record(0.0, {"cpu": 1.0})  # 3 buckets back: the oldest still in the window
    group.record(30.0, {"mem": 3.0})
    assert series(group) == [(0.0, {"cpu": 1.0}), (30.0, {"mem": 3.0}), (45.0, {"cpu": 4.0})]


def test_record_older_than_the_window_is_ignored():
    group = SeriesGroup(60.0)
    group.record(60.0, {"cpu": 5.0})
    group.record(14.9, {"cpu": 1.0})  # bucket 0, window is buckets 1..4
    assert series(group) == [(60.0, {"cpu": 5.0})]
    assert group.newest == 60.0


def test_future_jump_inside_the_window_keeps_the_recent_buckets():
    group = SeriesGroup(60.0)
    for i in range(4):
        group.record(i * 15.0, {"cpu": float(i)})
    group.record(5 * 15.0, {"cpu": 5.0})  # skips bucket 4; buckets 0 and 1 fall out
    assert series(group) == [(30.0, {"cpu": 2.0}), (45.0, {"cpu": 3.0}), (75.0, {"cpu": 5.0})]


def test_future_jump_beyond_the_window_drops_everything_and_then_ignores_the_old_times():
    group = SeriesGroup(HOUR)
    for i in range(100):
        group.record(i * 15.0, {"cpu": float(i)})
    group.record(1_000 * HOUR, {"cpu": 7.0})  # a probe clock far ahead
    assert series(group) == [(1_000 * HOUR, {"cpu": 7.0})]
    group.record(100 * 15.0, {"cpu": 8.0})  # the clock comes back: too old now
    assert series(group) == [(1_000 * HOUR, {"cpu": 7.0})]
    fresh = SeriesGroup(HOUR)
    fresh.record(0.0, {"cpu": 1.0})
    assert group.nbytes == fresh.nbytes  # the grown rings were released, not kept


def test_expire_drops_buckets_outside_the_window_ending_at_now():
    group = SeriesGroup(60.0)  # 4 buckets
    for i in range(4):
        group.record(i * 15.0, {"cpu": float(i)})
    assert group.expire(now=59.0) == 0  # now's bucket is 3: window 0..3
    assert group.expire(now=75.0) == 2  # now's bucket is 5: window 2..5
    assert [p.timestamp for p in group.points(-math.inf)] == [30.0, 45.0]
    assert group.expire(now=75.0) == 0


def test_expire_counts_only_buckets_that_held_data():
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 1.0})
    group.record(HOUR - 1, {"cpu": 2.0})  # 239 empty buckets between them
    assert group.expire(now=HOUR + 20 * 15.0) == 1
    assert len(group) == 1


def test_expire_with_an_earlier_now_drops_nothing():
    group = SeriesGroup(60.0)
    for i in range(4):
        group.record(i * 15.0, {"cpu": float(i)})
    assert group.expire(now=-HOUR) == 0
    assert len(group) == 4


def test_expire_moves_the_window_so_older_records_are_ignored_afterwards():
    group = SeriesGroup(60.0)
    group.record(0.0, {"cpu": 1.0})
    assert group.expire(now=HOUR) == 1
    assert len(group) == 0 and group.newest is None and group.nbytes == 0
    group.record(HOUR - 60.0, {"cpu": 2.0})  # bucket 236, window is 237..240
    assert len(group) == 0
    group.record(HOUR - 45.0, {"cpu": 3.0})
    assert series(group) == [(HOUR - 45.0, {"cpu": 3.0})]


def test_a_resolution_that_floats_cannot_divide_exactly_still_bounds_by_bucket_start():
    # b * 0.1 / 0.1 is above b for b = 3 and below it for b = 43: the bounds must not
    # lose those buckets to rounding.
    group = SeriesGroup(20.0, resolution=0.1)
    for b in range(100):
        group.record((b + 0.5) * 0.1, {"cpu": float(b)})
    for b in (3, 6, 43, 81, 50):
        assert group.points(b * 0.1, b * 0.1) == [Point(b * 0.1, {"cpu": float(b)})]


# --- growing the rings ---------------------------------------------------------------


@pytest.mark.parametrize("capacity", [1, 3, 5, 6, 9, 13, 240])
def test_rings_grow_to_a_capacity_that_is_not_a_power_of_two_without_losing_data(capacity):
    group = SeriesGroup(capacity * RESOLUTION)
    for b in range(3 * capacity + 2):
        group.record(b * RESOLUTION + 1.0, {"cpu": float(b)})
        kept = range(max(0, b - capacity + 1), b + 1)
        assert series(group) == [(k * RESOLUTION, {"cpu": float(k)}) for k in kept]


@pytest.mark.parametrize("capacity", [5, 6, 9, 17])
def test_rings_grow_when_late_records_widen_the_span_downwards(capacity):
    group = SeriesGroup(capacity * RESOLUTION)
    newest = 1_000 + capacity - 1
    group.record(newest * RESOLUTION, {"cpu": -1.0})
    for b in range(newest - 1, newest - capacity, -1):
        group.record(b * RESOLUTION, {"mem": float(b)})
    expected = [(b * RESOLUTION, {"mem": float(b)}) for b in range(newest - capacity + 1, newest)]
    assert series(group) == [*expected, (newest * RESOLUTION, {"cpu": -1.0})]


# --- memory -----------------------------------------------------------------------------


def test_a_group_with_four_points_uses_far_less_memory_than_a_full_hour():
    short, full = SeriesGroup(HOUR), SeriesGroup(HOUR)
    for i in range(4):
        short.record(i * 15.0, {"cpu": 1.0, "mem": 2.0})
    for i in range(240):
        full.record(i * 15.0, {"cpu": 1.0, "mem": 2.0})
    assert len(short) == 4 and len(full) == 240
    assert short.nbytes * 5 < full.nbytes
    assert full.nbytes <= 2 * (100 + 240 * 4)  # two float32 columns of 240 slots and headers


def test_arrays_stop_growing_at_the_capacity():
    group = SeriesGroup(HOUR)
    for i in range(240):
        group.record(i * 15.0, {"cpu": 1.0})
    full = group.nbytes
    for i in range(240, 2_000):
        group.record(i * 15.0, {"cpu": 1.0})
    assert group.nbytes == full


# --- validation -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("retention", "resolution", "named"),
    [
        (0.0, 15.0, "retention: 0.0"),
        (-60.0, 15.0, "retention: -60.0"),
        (10.0, 15.0, "retention: 10.0"),
        (math.inf, 15.0, "retention: inf"),
        (math.nan, 15.0, "retention: nan"),
        (HOUR, 0.0, "resolution: 0.0"),
        (HOUR, -15.0, "resolution: -15.0"),
        (HOUR, math.nan, "resolution: nan"),
    ],
)
def test_invalid_retention_or_resolution_is_named(retention, resolution, named):
    with pytest.raises(ValueError, match=f"invalid {named}"):
        SeriesGroup(retention, resolution)
    with pytest.raises(ValueError, match=f"invalid {named}"):
        MetricHistory(retention, resolution)


# --- MetricHistory -----------------------------------------------------------------------


def test_history_keeps_one_group_per_key():
    history = MetricHistory(HOUR)
    history.record("agent-1", 0.0, {"cpu": 1.0})
    history.record("agent-2", 0.0, {"cpu": 2.0})
    history.record("agent-1", 15.0, {"cpu": 3.0})
    assert [p.values["cpu"] for p in history.points("agent-1", 0.0)] == [1.0, 3.0]
    assert history.points("agent-1", 15.0, 15.0) == [Point(15.0, {"cpu": 3.0})]
    assert history.latest("agent-2") == Point(0.0, {"cpu": 2.0})
    assert sorted(history.keys()) == ["agent-1", "agent-2"]
    assert "agent-1" in history and "agent-3" not in history and len(history) == 2


def test_history_unknown_key_has_no_points():
    history = MetricHistory(HOUR)
    assert history.points("nobody", -math.inf) == []
    assert history.latest("nobody") is None


def test_history_record_that_stores_nothing_creates_no_group():
    history = MetricHistory(HOUR)
    history.record("node", 0.0, {"cpu": math.nan})
    assert "node" not in history and len(history) == 0


def test_history_drop_forgets_a_key_and_ignores_unknown_ones():
    history = MetricHistory(HOUR)
    history.record("node", 0.0, {"cpu": 1.0})
    history.drop("node")
    history.drop("node")
    assert "node" not in history and history.points("node", -math.inf) == []


def test_history_expire_removes_emptied_groups_and_reports_counts():
    history = MetricHistory(60.0)  # 4 buckets
    for i in range(4):
        history.record("old", i * 15.0, {"cpu": 1.0})
        history.record("busy", 60.0 + i * 15.0, {"cpu": 1.0, "mem": 2.0})
    history.record("late", 100.0, {"cpu": 1.0})
    # now = 120 (bucket 8): window 5..8 keeps busy's buckets 5-7 and late's bucket 6.
    report = history.expire(now=120.0)
    assert report == ExpiryReport(groups_removed=1, points_removed=5)
    assert sorted(history.keys()) == ["busy", "late"]
    assert history.expire(now=120.0) == ExpiryReport(groups_removed=0, points_removed=0)
    assert history.expire(now=10 * HOUR) == ExpiryReport(groups_removed=2, points_removed=4)
    assert len(history) == 0


def test_history_stats_count_groups_points_and_array_bytes():
    history = MetricHistory(HOUR)
    assert history.stats() == HistoryStats(groups=0, points=0, bytes=0)
    for i in range(3):
        history.record("a", i * 15.0, {"cpu": 1.0, "mem": 2.0})
    history.record("b", 0.0, {"cpu": 1.0})
    stats = history.stats()
    assert (stats.groups, stats.points) == (2, 4)
    group = SeriesGroup(HOUR)
    group.record(0.0, {"cpu": 1.0})
    # a's two columns and b's one column, each of the initial size.
    assert stats.bytes == 3 * group.nbytes


# --- property test against a reference model ---------------------------------------------


class ReferenceGroup:
    """The spec in the plainest form: a dict of buckets and the window's oldest bucket."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buckets: dict[int, dict[str, float]] = {}
        self.low = -math.inf

    def record(self, timestamp: float, values: dict[str, float]) -> None:
        kept = {name: float32_decimal(f32(v)) for name, v in values.items()
                if math.isfinite(v) and math.isfinite(f32_or_inf(v))}
        bucket = math.floor(timestamp / RESOLUTION)
        if not kept or bucket < self.low:
            return
        self.advance(bucket - self.capacity + 1)
        self.buckets.setdefault(bucket, {}).update(kept)

    def expire(self, now: float) -> int:
        before = len(self.buckets)
        self.advance(math.floor(now / RESOLUTION) - self.capacity + 1)
        return before - len(self.buckets)

    def advance(self, low: int) -> None:
        self.low = max(self.low, low)
        self.buckets = {b: v for b, v in self.buckets.items() if b >= self.low}

    def points(self, since: float, until: float | None) -> list[Point]:
        return [
            Point(b * RESOLUTION, v)
            for b, v in sorted(self.buckets.items())
            if since <= b * RESOLUTION and (until is None or b * RESOLUTION <= until)
        ]


def f32_or_inf(value: float) -> float:
    try:
        return f32(value)
    except OverflowError:
        return math.inf


values_strategy = st.dictionaries(
    st.sampled_from(["cpu", "mem", "rx", "tx"]),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.floats(-1e6, 1e6)),
    max_size=4,
)
# Mostly inside a few windows (capacity up to 20 buckets) so that rings fill, wrap and
# grow; sometimes a far jump either way.
time_strategy = st.one_of(
    st.floats(-100.0, 500.0),
    st.integers(-5, 35).map(lambda b: b * RESOLUTION),
    st.integers(-5, 35).map(lambda b: b * RESOLUTION + 14.999),
    st.floats(-1e7, 1e7),
)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("record"), time_strategy, values_strategy),
        st.tuples(st.just("expire"), time_strategy),
        st.tuples(st.just("points"), time_strategy, st.one_of(st.none(), time_strategy)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 20), ops=operations)
def test_group_behaves_like_the_reference_model(capacity, ops):
    group = SeriesGroup(capacity * RESOLUTION)
    model = ReferenceGroup(capacity)
    for op in ops:
        if op[0] == "record":
            group.record(op[1], op[2])
            model.record(op[1], op[2])
        elif op[0] == "expire":
            assert group.expire(op[1]) == model.expire(op[1])
        else:
            assert group.points(op[1], op[2]) == model.points(op[1], op[2])
        assert group.points(-math.inf) == model.points(-math.inf, None)
        assert len(group) == len(model.buckets)
        newest = max(model.buckets, default=None)
        assert group.newest == (None if newest is None else newest * RESOLUTION)
        assert group.latest() == (None if newest is None else Point(newest * RESOLUTION, model.buckets[newest]))
        # Never more than one column of `capacity` slots (plus header) per metric.
        assert group.nbytes <= 4 * (100 + 4 * capacity)


# A clock that mostly moves forward a bucket at a time, with late records up to a
# little more than the window behind it: the rings fill, wrap, grow and drop.
walk_values = st.dictionaries(
    st.sampled_from(["cpu", "mem", "rx"]),
    st.one_of(st.floats(-1e6, 1e6), st.just(math.nan)),
    min_size=1,
    max_size=3,
)
walk = st.lists(
    st.one_of(
        st.tuples(st.just("tick"), st.integers(0, 3)),
        st.tuples(st.just("record"), st.integers(0, 3), st.floats(0.0, 14.99), walk_values),
        st.tuples(st.just("late"), st.integers(0, 24), st.floats(0.0, 14.99), walk_values),
        st.tuples(st.just("expire"), st.integers(-2, 24)),
        st.tuples(st.just("points"), st.integers(-2, 24), st.integers(-2, 24)),
    ),
    max_size=150,
)


@settings(max_examples=300, deadline=None)
@given(capacity=st.integers(1, 20), ops=walk)
def test_group_follows_the_reference_model_along_a_moving_clock(capacity, ops):
    group = SeriesGroup(capacity * RESOLUTION)
    model = ReferenceGroup(capacity)
    clock = 1_000  # bucket number
    for op in ops:
        if op[0] == "tick":
            clock += op[1]
        elif op[0] in ("record", "late"):
            back = op[1] if op[0] == "late" else 0
            clock += op[1] if op[0] == "record" else 0
            t = (clock - back) * RESOLUTION + op[2]
            group.record(t, op[3])
            model.record(t, op[3])
        elif op[0] == "expire":
            now = (clock - op[1]) * RESOLUTION
            assert group.expire(now) == model.expire(now)
        else:
            since, until = (clock - op[1]) * RESOLUTION, (clock - op[2]) * RESOLUTION
            assert group.points(since, until) == model.points(since, until)
        assert group.points(-math.inf) == model.points(-math.inf, None)
        assert len(group) == len(model.buckets)


@settings(max_examples=100, deadline=None)
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("record"), st.sampled_from("abc"), time_strategy, values_strategy),
            st.tuples(st.just("expire"), time_strategy),
            st.tuples(st.just("drop"), st.sampled_from("abc")),
        ),
        max_size=60,
    )
)
def test_history_behaves_like_a_dict_of_reference_models(ops):
    history = MetricHistory(4 * RESOLUTION)
    models: dict[str, ReferenceGroup] = {}
    for op in ops:
        if op[0] == "record":
            model = models.setdefault(op[1], ReferenceGroup(4))
            model.record(op[2], op[3])
            history.record(op[1], op[2], op[3])
            if not model.buckets:
                del models[op[1]]
        elif op[0] == "expire":
            removed = sum(model.expire(op[1]) for model in models.values())
            emptied = [key for key, model in models.items() if not model.buckets]
            for key in emptied:
                del models[key]
            assert history.expire(op[1]) == ExpiryReport(groups_removed=len(emptied), points_removed=removed)
        else:
            models.pop(op[1], None)
            history.drop(op[1])
        assert set(history.keys()) == set(models)
        for key, model in models.items():
            assert history.points(key, -math.inf) == model.points(-math.inf, None)
        assert history.stats().points == sum(len(m.buckets) for m in models.values())


@settings(max_examples=60)
@given(st.lists(st.tuples(time_strategy, st.lists(st.tuples(st.sampled_from("abcd"), values_strategy), max_size=4)),
                max_size=20))
def test_record_many_records_what_record_per_key_records(reports):
    """One report's series at once (``record_many``) land as recorded one by one."""
    many, one = MetricHistory(4 * RESOLUTION), MetricHistory(4 * RESOLUTION)
    for at, entries in reports:
        many.record_many(at, entries)
        for key, values in entries:
            one.record(key, at, values)
    assert set(many.keys()) == set(one.keys())
    for key in one.keys():
        assert many.points(key, -math.inf) == one.points(key, -math.inf)
    assert many.stats() == one.stats()


def test_record_many_with_a_non_finite_time_records_nothing():
    history = MetricHistory(HOUR)
    with pytest.raises(ValueError, match="invalid timestamp"):
        history.record_many(math.nan, [("a", {"cpu": 1.0})])
    assert len(history) == 0


def test_nbytes_is_what_getsizeof_counts_for_the_columns():
    """Bytes are counted by arithmetic (stats over ~100,000 groups): they must
    stay what the arrays really take, as rings grow, gain metrics and empty."""
    group = SeriesGroup(HOUR)
    for i in range(300):
        group.record(i * 15.0, {"cpu": 1.0, **({"mem": 2.0} if i > 10 else {})})
        assert group.nbytes == sum(sys.getsizeof(column) for column in group._columns)
    group.expire(10 * HOUR)
    assert group.nbytes == 0
