"""A histogram as Prometheus exports one (cumulative buckets, a sum): what an
actor records into and ``/metrics`` reads at scrape time. Pure."""

from __future__ import annotations

import bisect

import attrs


@attrs.define
class Histogram:
    """Cumulative-bucket histogram, as Prometheus exports it."""

    bounds: tuple[float, ...]
    counts: list[int] = attrs.field()
    total: float = 0.0

    @counts.default
    def _zeros(self) -> list[int]:
        return [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.total += value

    @property
    def count(self) -> int:
        return sum(self.counts)

    def cumulative(self) -> list[tuple[str, int]]:
        """``(le, observations <= le)`` for each bound and ``+Inf``."""
        running, out = 0, []
        for bound, n in zip((*(repr(b) for b in self.bounds), "+Inf"), self.counts, strict=True):
            running += n
            out.append((bound, running))
        return out
