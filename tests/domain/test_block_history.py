"""Metric history written in blocks (one row per report and writer): what it
reads back is what ``MetricHistory`` reads back for the same records, within
the writers' windows."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trioscope.domain.block_history import BlockHistory
from trioscope.domain.timeseries import RESOLUTION, MetricHistory

RETENTION = 10 * RESOLUTION
KEYS = ("process:h:1", "process:h:2", "process:h:3", "process:g:1")
WRITERS = ("a", "b")

values = st.one_of(st.floats(-1e3, 1e3), st.sampled_from([math.nan, math.inf, -math.inf, 1e39, 3.4e38]))
metrics = st.dictionaries(st.sampled_from(["cpu_percent", "memory_mb"]), values, max_size=2)
records = st.lists(
    st.tuples(
        st.sampled_from(WRITERS),
        st.integers(0, 40).map(lambda step: step * 7.5),  # two records a bucket now and then, some late
        st.lists(st.sampled_from(KEYS), unique=True, max_size=4),
        st.data(),
    ),
    max_size=25,
)


def _points(history: BlockHistory | MetricHistory, key: str, since: float) -> list[tuple[float, dict[str, float]]]:
    return [(p.timestamp, dict(p.values)) for p in history.points(key, since)]


@settings(max_examples=400, deadline=None)
@given(records, st.lists(st.integers(0, 40).map(lambda step: step * 7.5), max_size=2))
def test_points_are_metric_historys_within_the_window(recorded: list, expiries: list[float]) -> None:
    blocks, series = BlockHistory(RETENTION), MetricHistory(RETENTION)
    newest = -math.inf
    for writer, timestamp, keys, data in recorded:
        written = [data.draw(metrics) for _ in keys]
        blocks.record(writer, timestamp, tuple(keys), written)
        series.record_many(timestamp, list(zip(keys, written, strict=True)))
        if keys:
            newest = max(newest, timestamp)
    for now in expiries:
        blocks.expire(now)
        series.expire(now)
        newest = max(newest, now)
    # Each writer keeps the window ending with its newest bucket, MetricHistory
    # each key's: both hold all there is from the oldest bucket of the newest window.
    since = -math.inf if newest == -math.inf else (
        (math.floor(newest / RESOLUTION) - math.ceil(RETENTION / RESOLUTION) + 1) * RESOLUTION)
    held = {(key, writer) for writer, state in blocks._writers.items() for row in state.rows for key in row.keys}
    assert {(key, writer) for key, writers in blocks._where.items() for writer in writers} == held
    for key in KEYS:
        assert _points(blocks, key, since) == _points(series, key, since), key
        assert [p.timestamp for p in blocks.points(key, -math.inf)] == sorted(
            {p.timestamp for p in blocks.points(key, -math.inf)})


def test_a_report_a_bucket_writes_one_row_of_arrays_shared_keys() -> None:
    history = BlockHistory(RETENTION)
    keys = ("process:h:1", "process:h:2")
    for step in range(3):
        history.record("a", step * RESOLUTION, keys, [{"cpu_percent": step}, {"cpu_percent": 2.0 * step}])
    rows = history._writers["a"].rows
    assert len(rows) == 3 and all(row.keys is keys and row.positions is rows[0].positions for row in rows)
    assert _points(history, "process:h:2", 0.0) == [(0.0, {"cpu_percent": 0.0}), (15.0, {"cpu_percent": 2.0}),
                                                    (30.0, {"cpu_percent": 4.0})]
    assert history.stats().groups == 2 and history.stats().points == 6


def test_expiry_forgets_writers_and_keys_out_of_the_window() -> None:
    history = BlockHistory(RETENTION)
    history.record("a", 0.0, ("process:h:1",), [{"cpu_percent": 1.0}])
    history.record("b", 100.0, ("process:g:1",), [{"cpu_percent": 2.0}])
    report = history.expire(0.0 + RETENTION + RESOLUTION)
    assert (report.groups_removed, report.points_removed) == (1, 1)
    assert history.points("process:h:1", -math.inf) == [] and len(history) == 1
    assert _points(history, "process:g:1", -math.inf) == [(90.0, {"cpu_percent": 2.0})]


def test_a_nan_timestamp_is_refused() -> None:
    with pytest.raises(ValueError, match="invalid timestamp"):
        BlockHistory(RETENTION).record("a", math.nan, ("k",), [{"cpu_percent": 1.0}])


def test_keys_that_leave_the_window_are_forgotten_as_new_ones_come() -> None:
    """Processes come and go for ever: the keys held are those of the rows
    in the window, however many there were."""
    history = BlockHistory(RETENTION)
    for step in range(100):
        history.record("a", step * RESOLUTION, (f"process:h:{step}", "process:h:1"),
                       [{"cpu_percent": 1.0}, {"cpu_percent": 2.0}])
    assert len(history) == RETENTION / RESOLUTION + 1  # one key a row, and the one in all of them
    history.expire(1000 * RESOLUTION)
    assert len(history) == 0 and not history._writers


def test_a_full_window_of_rows_adds_nothing_for_the_garbage_collector_to_walk() -> None:
    # 20 writers of 100 keys, a row per bucket over the whole window: kept
    # as tracked objects (a row, its list, an array per metric) that was
    # 4 x 20 x 10 = 800 objects every full collection walked.
    import gc

    history = BlockHistory(RETENTION)
    layouts = [tuple(f"process:h{w}:{pid}" for pid in range(100)) for w in range(20)]
    gc.collect()
    before = len(gc.get_objects())
    for step in range(10):
        for writer, keys in enumerate(layouts):
            history.record(f"agent-{writer}", step * RESOLUTION, keys,
                           [{"cpu_percent": step + 0.5, "memory_mb": 10.0}] * len(keys))
    gc.collect()
    assert len(gc.get_objects()) - before < 200  # per writer, not per row
    assert history.points("process:h3:7", 0.0)[-1].values == {"cpu_percent": 9.5, "memory_mb": 10.0}
    assert history.stats().points == 20 * 10 * 100


def test_a_forgotten_writer_takes_its_rows_and_the_keys_only_it_held() -> None:
    history = BlockHistory(RETENTION)
    for t in (0.0, 30.0, 60.0):
        history.record("a", t, ("process:h:1", "shared"), [{"cpu_percent": 1.0}, {"cpu_percent": 2.0}])
        history.record("b", t, ("process:g:1", "shared"), [{"cpu_percent": 3.0}, {"cpu_percent": 4.0}])
    assert history.forget("a") == 6 and history.forget("a") == 0
    assert history.points("process:h:1", -math.inf) == []
    assert [values for _t, values in _points(history, "shared", -math.inf)] == [{"cpu_percent": 4.0}] * 3
    assert len(_points(history, "process:g:1", -math.inf)) == 3 and len(history) == 2  # its two keys


def test_a_writers_second_record_of_a_bucket_does_not_outrank_anothers_between() -> None:
    """Two probes of one host write a process alternately within a bucket: the
    last value written wins, as in ``MetricHistory``. Merged into its first row,
    a's second record gave what it left out (``cpu_percent`` 1.0, kept from
    that row) the row's new sequence, over b's later 0.0."""
    blocks, series = BlockHistory(RETENTION), MetricHistory(RETENTION)
    writes = [("a", 0.0, {"cpu_percent": 1.0}), ("b", 7.5, {"cpu_percent": 0.0}), ("a", 7.5, {"memory_mb": 1.0})]
    for writer, at, values in writes:
        blocks.record(writer, at, ("process:h:1",), [values])
        series.record_many(at, [("process:h:1", values)])
    assert _points(blocks, "process:h:1", 0.0) == _points(series, "process:h:1", 0.0) == [
        (0.0, {"cpu_percent": 0.0, "memory_mb": 1.0})]
