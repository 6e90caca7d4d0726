"""Reads in worker threads while the store's one writer changes it (the store's
docstring): series added and removed, samples appended, older samples merged
in, trims. Every read ends without an error, and every range it reads is
whole: as many values as times, times in order."""

from __future__ import annotations

import threading

from trioscope.domain import metrics

SERIES = 200
STEP = 15.0
START = 1_000_000.0


def _samples(first: int, count: int, at: float) -> list[metrics.Sample]:
    return [metrics.Sample((("__name__", "m"), ("n", str(n % SERIES)), ("deployment_hash", "d")), float(n), at)
            for n in range(first, first + count)]


def test_reads_beside_the_writer_see_every_series_whole() -> None:
    store = metrics.MetricStore(metrics.StoreLimits(max_series_per_deployment=10_000, max_series_per_tenant=10_000,
                                                    retention=STEP * 400))
    for step in range(100):
        store.write("t", "d", _samples(0, SERIES, START + step * STEP), START + step * STEP)
    stop = threading.Event()
    failures: list[BaseException] = []
    reads = [0]

    def reader() -> None:
        try:
            while not stop.is_set():
                view = store.tenant("t")
                matrix = metrics.range_query(view, "max_over_time(m[1h])", START + 50 * STEP, START + 2000 * STEP, 600.0,
                                             max_samples=50_000_000)
                assert isinstance(matrix, dict)
                for series in view.named("m"):
                    times, values = series.samples
                    assert len(values) >= len(times)
                    assert all(a < b for a, b in zip(times, times[1:], strict=False))
                metrics.instant_query(view, "sum(m)", START + 1000 * STEP, max_samples=50_000_000)
                reads[0] += 1
        except BaseException as exc:  # noqa: BLE001 - the test's own: what went wrong, reported by the test thread
            failures.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        for step in range(100, 1100):
            at = START + step * STEP
            store.write("t", "d", _samples(0, SERIES, at), at)  # appended
            if step % 7 == 0:  # older samples merged in: arrays replaced
                store.write("t", "d", [metrics.Sample(s.labels, -1.0, at - 37 * STEP + 3)
                                       for s in _samples(0, SERIES, at)], at)
            if step % 11 == 0:  # new series, then removed
                fresh = [metrics.Sample((("__name__", "m"), ("n", f"x{step}"), ("gone", "yes"),
                                         ("deployment_hash", "d")), 1.0, at)]
                store.write("t", "d", fresh, at)
            if step % 13 == 0:
                store.remove_with("gone", "yes")
            if step % 17 == 0:
                store.expire(at)  # trims
            if failures:
                break
    finally:
        stop.set()
        for thread in threads:
            thread.join(60)
    assert not failures, failures[0]
    assert reads[0] > 0
