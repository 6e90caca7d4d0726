"""Rates from two readings of a host's counters (CPU times, bytes through
its NICs and disks), and which readings a rate may be taken between: two in a
row that were both read. A source unreadable for a cycle (a /proc file
refused, then readable again) has no rate in the reading after it, rather
than one of 0 (nothing to compare with) or one over the whole outage.

Pure: the caller passes the time and the counters it read."""

from __future__ import annotations

from typing import Any


def busy_percent(before: Any, after: Any) -> float:
    """Share of CPU time spent busy between two ``psutil.cpu_times()``
    readings, counted as ``psutil.cpu_percent`` counts it: idle and iowait
    are not busy, and guest time is in user time already on Linux.

    Not ``psutil.cpu_percent`` itself: it keeps its previous reading per
    calling thread, and a probe collects from whichever worker thread Trio
    gives it, so the reading it compared with was another thread's, or none
    (0.0 in every report collected from a new thread)."""
    delta = {field: max(0.0, getattr(after, field) - getattr(before, field)) for field in after._fields}
    total = sum(delta.values()) - delta.get("guest", 0.0) - delta.get("guest_nice", 0.0)
    busy = total - delta.get("idle", 0.0) - delta.get("iowait", 0.0)
    return 0.0 if total <= 0 else min(100.0, max(0.0, busy / total * 100.0))


def per_second(before: tuple[float, tuple[int, ...]], now: float, after: tuple[int, ...]) -> tuple[float, ...]:
    """Each counter's increase per second from ``before`` (its time and
    counters) to ``after`` at ``now`` (after ``before``); a counter that went
    down (reset) counts as 0."""
    seconds = now - before[0]
    return tuple(max(0, value - old) / seconds for old, value in zip(before[1], after, strict=True))


class LastReadings:
    """Each source's last reading (time and counters), kept only while it was
    read: a rate is taken between two readings in a row, never across one
    that failed."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[float, Any]] = {}

    def swap(self, source: str, now: float, counters: Any) -> tuple[float, Any] | None:
        """The reading of ``source`` before this one, to take a rate from, or
        None if there is none to take it from (it failed, or this is the
        first, or no time passed); ``counters`` (None: this reading failed)
        becomes the last."""
        before = self._last.pop(source, None)
        if counters is not None:
            self._last[source] = (now, counters)
        if counters is None or before is None or now <= before[0]:
            return None
        return before


TICK = 0.01
"""The kernel's clock tick (``CLK_TCK`` 100), which a process's start time is counted in."""


def share_since_start(busy_seconds: float, started: float, now: float) -> float:
    """A process's CPU share (percent of one core, as ``psutil``'s
    ``cpu_percent``: over 100 on several cores) from its start to ``now``,
    both seconds since boot: what a process started since the previous
    listing used, where ``cpu_percent`` says 0, having no reading to compare
    with (a build step or a cron job shorter than a cycle showed 0 % in every
    report). A start within a tick of ``now`` counts as a tick ago.

    Since boot, not wall times: ``psutil``'s start times add the boot time
    the kernel gives in whole seconds, up to a second early (a process 0.3 s
    old was 0.53 s old by them)."""
    return 100.0 * busy_seconds / max(now - started, TICK)
