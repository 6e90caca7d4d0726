"""Memory and speed of the metric history (trioscope.domain.timeseries), measured in one run.

    .venv/bin/python bench/timeseries_memory.py [--groups N] [--full-groups N] [--rounds R] [--rss]

* memory: a MetricHistory with 1 h retention at 15 s holding groups of 2 metrics
  (cpu, mem), keyed "node-000000"..., measured with tracemalloc (everything the
  history allocates, keys included) after (a) 4 records per group and (b) 240
  records per group (a full hour). (a) uses --groups (default 110,000, the design's
  1,000 hosts x 110 nodes); (b) is measured on --full-groups (default 11,000,
  because 26 M records under tracemalloc take minutes) and projected linearly to
  --groups. Baseline: the naive layout, a deque(maxlen=240) of (timestamp, dict)
  per group, measured on 2,000 groups.
* --rss (Linux, about a minute more): the resident set growth of building --groups
  full groups without tracemalloc, which also counts allocator overhead.
* speed: records/s and points()/s on 2,000 full groups against the naive layout,
  alternating rounds, median ratio (these machines drift 2-3x between days).
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import time
import tracemalloc
from collections import deque

from trioscope.domain.timeseries import MetricHistory, Point

RETENTION = 3600.0
RESOLUTION = 15.0
CAPACITY = 240


def keys(n: int) -> list[str]:
    return [f"node-{i:06d}" for i in range(n)]


def fill_history(history: MetricHistory, names: list[str], records: int) -> None:
    for r in range(records):
        t = r * RESOLUTION + 1.0
        for key in names:
            history.record(key, t, {"cpu": 12.5 + r, "mem": 300.0 + r})


def fill_naive(naive: dict[str, deque], names: list[str], records: int) -> None:
    for r in range(records):
        t = r * RESOLUTION + 1.0
        bucket = t - t % RESOLUTION
        for key in names:
            ring = naive.get(key)
            if ring is None:
                ring = naive[key] = deque(maxlen=CAPACITY)
            ring.append((bucket, {"cpu": 12.5 + r, "mem": 300.0 + r}))


def traced_bytes(build) -> tuple[int, object]:
    """Bytes still allocated after ``build()``, and what it built."""
    gc.collect()
    tracemalloc.start()
    try:
        built = build()
        gc.collect()
        return tracemalloc.get_traced_memory()[0], built
    finally:
        tracemalloc.stop()


def memory(groups: int, full_groups: int) -> None:
    naive_groups = 2_000
    print(f"memory, 2 metrics, 1 h at 15 s (capacity {CAPACITY} buckets):")
    for records, n in ((4, groups), (CAPACITY, full_groups)):
        names = keys(n)
        total, history = traced_bytes(lambda: _built_history(names, records))
        stats = history.stats()
        assert stats.groups == n and stats.points == n * records
        del history
        naive_names = keys(naive_groups)
        naive_total, naive = traced_bytes(lambda: _built_naive(naive_names, records))
        del naive
        per_group, naive_per_group = total / n, naive_total / naive_groups
        print(
            f"  ({'a' if records == 4 else 'b'}) {records:>3} records: {per_group:7.0f} B/group "
            f"(arrays {stats.bytes / n:5.0f} B) on {n:,} groups -> {per_group * groups / 2**20:6.1f} MiB "
            f"for {groups:,}; naive {naive_per_group:7.0f} B/group -> {naive_per_group * groups / 2**20:7.1f} MiB; "
            f"ratio {per_group / naive_per_group:.2f}x of naive"
        )


def _built_history(names: list[str], records: int) -> MetricHistory:
    history = MetricHistory(RETENTION, RESOLUTION)
    fill_history(history, names, records)
    return history


def _built_naive(names: list[str], records: int) -> dict[str, deque]:
    naive: dict[str, deque] = {}
    fill_naive(naive, names, records)
    return naive


def resident_bytes() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def rss(groups: int) -> None:
    gc.collect()
    before = resident_bytes()
    start = time.perf_counter()
    history = _built_history(keys(groups), CAPACITY)
    elapsed = time.perf_counter() - start
    gc.collect()
    grown = resident_bytes() - before
    print(
        f"rss: {groups:,} full groups grew the resident set by {grown / 2**20:.1f} MiB "
        f"({grown / groups:.0f} B/group; {history.stats().points:,} points recorded in {elapsed:.0f} s)"
    )


def speed(rounds: int) -> None:
    names = keys(2_000)
    history, naive = _built_history(names, CAPACITY), _built_naive(names, CAPACITY)
    later = 10 * CAPACITY  # records keep arriving in steady state: rings wrap, deques rotate
    record_ratios, points_ratios, record_rates, points_rates = [], [], [], []
    for r in range(rounds):
        start = time.perf_counter()
        fill_naive_from(naive, names, later + r * 20, 20)
        naive_rate = 20 * len(names) / (time.perf_counter() - start)
        start = time.perf_counter()
        fill_history_from(history, names, later + r * 20, 20)
        rate = 20 * len(names) / (time.perf_counter() - start)
        record_ratios.append(rate / naive_rate)
        record_rates.append((naive_rate, rate))

        since = (later + r * 20 - 120) * RESOLUTION  # the last 30 minutes
        start = time.perf_counter()
        for key in names:
            [Point(t, dict(v)) for t, v in naive[key] if t >= since]
        naive_rate = len(names) / (time.perf_counter() - start)
        start = time.perf_counter()
        for key in names:
            history.points(key, since)
        rate = len(names) / (time.perf_counter() - start)
        points_ratios.append(rate / naive_rate)
        points_rates.append((naive_rate, rate))
    median = len(record_rates) // 2
    naive_rec, rec = sorted(record_rates, key=lambda p: p[1] / p[0])[median]
    naive_pts, pts = sorted(points_rates, key=lambda p: p[1] / p[0])[median]
    print(f"speed, {len(names):,} full groups, median of {rounds} rounds:")
    print(
        f"  record  naive {naive_rec:11,.0f} rec/s   history {rec:11,.0f} rec/s   "
        f"ratio {statistics.median(record_ratios):.2f}x of naive"
    )
    print(
        f"  points  naive {naive_pts:11,.0f} q/s     history {pts:11,.0f} q/s     "
        f"ratio {statistics.median(points_ratios):.2f}x of naive (120 points per query)"
    )


def fill_history_from(history: MetricHistory, names: list[str], first: int, records: int) -> None:
    for r in range(first, first + records):
        t = r * RESOLUTION + 1.0
        for key in names:
            history.record(key, t, {"cpu": 12.5, "mem": 300.0})


def fill_naive_from(naive: dict[str, deque], names: list[str], first: int, records: int) -> None:
    for r in range(first, first + records):
        t = r * RESOLUTION + 1.0
        bucket = t - t % RESOLUTION
        for key in names:
            naive[key].append((bucket, {"cpu": 12.5, "mem": 300.0}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--groups", type=int, default=110_000)
    parser.add_argument("--full-groups", type=int, default=11_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rss", action="store_true")
    args = parser.parse_args()
    if args.rss:
        # First, while the process is fresh: freed memory is not handed back to the
        # system, so a resident set measured after the other phases would read low.
        rss(args.groups)
    memory(args.groups, args.full_groups)
    speed(args.rounds)


if __name__ == "__main__":
    main()
