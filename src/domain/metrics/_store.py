"""The embedded metric store: written series per tenant, at 15 s resolution.

Bounded five ways: series per deployment, per tenant and over all (a write
that would pass a limit is refused whole, 429), the characters of their labels
per tenant and over all (the same), samples per tenant and over all (the same:
16 bytes each, and without a budget of their own one tenant's 100,000 series
backfilled over a day's retention held ~9 GB), and samples per series (one per
15 s bucket, none older than the retention). Samples may arrive in any order, in
one write or across writes (an agent's buffer flushed late): each is put in
time order; of two in one bucket the later timestamp is kept (at equal
timestamps the later written), so the outcome does not depend on arrival order. Values are ``array('d')``: counters keep every increment,
which float32 would round away above 2**24.

Pure and synchronous: the owning actor passes ``now``.

Readers beside the writer: one writer at a time (the owning actor) changes the
store while reads run in worker threads beside it (so that no write, and no
other tenant's read, waits for a long read). What a reader touches is safe for
that under the interpreter's lock: the views hand out lists of series (copied
in one C call, never a dict iterated while a write adds to it); a series'
samples are one ``(times, values)`` pair (``Series.samples``) that the writer
only appends to, values before times (a reader indexing ``values`` by what it
found in ``times`` finds it there), or replaces whole with new arrays (a merge
of older samples, a trim): a reader holding a pair reads it consistently.
Labels are never changed. A read may see a write half done (some of its
series written, not others): each series by itself is whole.
"""

from __future__ import annotations

import bisect
import collections
import itertools
from array import array
from collections.abc import Iterable, Iterator
from typing import Protocol

import attrs

from ._exceptions import WriteLimitExceeded
from ._samples import DEPLOYMENT_LABEL, Labels, Sample

RESOLUTION = 15.0
"""Seconds per bucket: one sample per series per bucket is kept."""


def _timestamp(sample: Sample) -> float:
    return sample.timestamp


class Series:
    """One series' samples in time order (``samples``: see the module docstring
    for what a reader in another thread may rely on)."""

    __slots__ = ("deployment", "labels", "label_map", "samples")

    def __init__(self, labels: Labels) -> None:
        self.labels = labels
        self.label_map = dict(labels)
        self.deployment = self.label_map.get(DEPLOYMENT_LABEL, "")
        self.samples: tuple[array[float], array[float]] = (array("d"), array("d"))
        """``(times, values)``: read as one, appended to or replaced whole."""

    @property
    def times(self) -> array[float]:
        return self.samples[0]

    @property
    def values(self) -> array[float]:
        return self.samples[1]

    def add(self, timestamp: float, value: float, keep: bool) -> bool:
        """Record a sample in time order; False when it gave way to a held sample of the
        same 15 s bucket with a later timestamp. ``keep`` False: only the newest is held."""
        times, values = self.samples
        if not times or (keep and timestamp // RESOLUTION > times[-1] // RESOLUTION):
            values.append(value)  # the usual case: a newer bucket (values first: module docstring)
            times.append(timestamp)
            return True
        if not keep:
            if timestamp < times[-1]:
                return False
            self.samples = (array("d", (timestamp,)), array("d", (value,)))
            return True
        # A bucket held already, or an older one: the arrays copied once (at most
        # retention / 15 s values: a few thousand), as a reader may hold them.
        bucket = timestamp // RESOLUTION
        index = bisect.bisect_right(times, timestamp)
        if index and times[index - 1] // RESOLUTION == bucket:
            index -= 1  # this one is as late or later in the bucket: it takes the held one's place
            self.samples = (times[:index] + array("d", (timestamp,)) + times[index + 1:],
                            values[:index] + array("d", (value,)) + values[index + 1:])
            return True
        if index < len(times) and times[index] // RESOLUTION == bucket:
            return False
        self.samples = (times[:index] + array("d", (timestamp,)) + times[index:],
                        values[:index] + array("d", (value,)) + values[index:])
        return True

    def merge(self, points: list[tuple[float, float]]) -> int:
        """Record ``points`` (oldest first; of equal timestamps the later written
        last) as ``add`` would one by one, keeping samples, in one pass: the held
        samples are copied once in slices, not moved once per point inserted
        among them (10,000 older points into a month of 15 s samples held the
        event loop 475 ms). Returns how many gave way to a held sample of their
        bucket with a later timestamp."""
        times, values = self.samples
        latest: dict[float, tuple[float, float]] = {}
        stamps: dict[float, list[float]] = collections.defaultdict(list)
        for timestamp, value in points:
            bucket = timestamp // RESOLUTION
            latest[bucket] = (timestamp, value)  # the last of the latest wins its bucket
            stamps[bucket].append(timestamp)
        merged_times, merged_values = array("d"), array("d")
        superseded = start = 0
        for bucket in sorted(latest):
            timestamp, value = latest[bucket]
            index = bisect.bisect_left(times, bucket * RESOLUTION, start)
            merged_times.extend(times[start:index])
            merged_values.extend(values[start:index])
            start = index
            if index < len(times) and times[index] // RESOLUTION == bucket:
                held = times[index]
                superseded += sum(1 for t in stamps[bucket] if t < held)  # each came while it was held
                if held > timestamp:
                    continue  # copied with the next slice
                start = index + 1  # replaced by a point as late or later
            merged_times.append(timestamp)
            merged_values.append(value)
        merged_times.extend(times[start:])
        merged_values.extend(values[start:])
        self.samples = (merged_times, merged_values)
        return superseded

    def trim(self, cutoff: float) -> None:
        """Drop the samples before ``cutoff`` (into new arrays, as a reader may
        hold the old: a ``del`` of the first would move the rest under it)."""
        times, values = self.samples
        index = bisect.bisect_left(times, cutoff)
        if index:
            self.samples = (times[index:], values[index:])


@attrs.frozen(kw_only=True)
class StoreLimits:
    """The bounds of the store; each names its configuration key."""

    max_series_per_deployment: int
    """``metrics.max_series_per_deployment``."""
    max_series_per_tenant: int
    """``metrics.max_series_per_tenant``."""
    max_series: int = 1_000_000
    """``metrics.max_series``: over all tenants."""
    max_label_bytes_per_tenant: int = 1 << 62
    """``metrics.max_label_bytes_per_tenant``: characters of the labels (names
    and values) of a tenant's series (``label_size``)."""
    max_label_bytes: int = 1 << 62
    """``metrics.max_label_bytes``: the same over all tenants."""
    max_samples_per_tenant: int = 1 << 62
    """``metrics.max_samples_per_tenant``: samples a tenant's series hold together."""
    max_samples: int = 1 << 62
    """``metrics.max_samples``: the same over all tenants."""
    retention: float
    """Seconds of samples kept (``storage.max_data_age``)."""
    keep_samples: bool = True
    """False when another engine stores the samples: only series (for the limits) are kept."""


def label_size(labels: Labels) -> int:
    """What a series' labels count against the label budgets: the characters of
    its names and values (a label of 1,000 characters costs its series about
    that in memory, apart from what every series costs)."""
    return sum(len(name) + len(value) for name, value in labels)


class TenantSeries:
    """One tenant's series, indexed by each label pair (``__name__`` included):
    an equality matcher starts from the smallest set it names, not from every series."""

    __slots__ = ("label_bytes", "per_deployment", "postings", "samples", "series")

    def __init__(self) -> None:
        self.series: dict[Labels, Series] = {}
        self.postings: dict[tuple[str, str], dict[Labels, Series]] = collections.defaultdict(dict)
        self.per_deployment: collections.Counter[str] = collections.Counter()
        self.label_bytes = 0
        """``label_size`` of its series together."""
        self.samples = 0
        """Samples its series hold together (kept up by ``MetricStore``)."""

    def named(self, name: str | None) -> Iterable[Series]:
        """The series of metric ``name`` (None: all of them), as a list: a
        reader in another thread never iterates a dict a write may add to."""
        if name is None:
            return list(self.series.values())
        return self.with_pair("__name__", name)

    def with_pair(self, label: str, value: str) -> Iterable[Series]:
        """The series whose ``label`` is ``value`` (a list, as ``named``)."""
        found = self.postings.get((label, value))
        return list(found.values()) if found is not None else ()

    def count_with_pair(self, label: str, value: str) -> int:
        found = self.postings.get((label, value))
        return len(found) if found is not None else 0

    def add(self, series: Series) -> None:
        self.series[series.labels] = series
        for pair in series.labels:
            self.postings[pair][series.labels] = series
        self.per_deployment[series.deployment] += 1
        self.label_bytes += label_size(series.labels)

    def remove(self, series: Series) -> None:
        del self.series[series.labels]
        for pair in series.labels:
            posting = self.postings[pair]
            del posting[series.labels]
            if not posting:
                del self.postings[pair]
        self.per_deployment[series.deployment] -= 1
        if self.per_deployment[series.deployment] <= 0:
            del self.per_deployment[series.deployment]
        self.label_bytes -= label_size(series.labels)
        self.samples -= len(series.times)

    def __len__(self) -> int:
        return len(self.series)


_EMPTY = TenantSeries()


class SeriesView(Protocol):
    """What the engine reads: one tenant's series, or several sets of them together."""

    def named(self, name: str | None) -> Iterable[Series]: ...
    def with_pair(self, label: str, value: str) -> Iterable[Series]: ...
    def count_with_pair(self, label: str, value: str) -> int: ...


class MergedView:
    """Several sets of series read as one (a tenant's written series and its nodes')."""

    def __init__(self, *views: TenantSeries) -> None:
        self._views = [view for view in views if len(view)]

    def named(self, name: str | None) -> Iterable[Series]:
        return itertools.chain.from_iterable(view.named(name) for view in self._views)

    def with_pair(self, label: str, value: str) -> Iterable[Series]:
        return itertools.chain.from_iterable(view.with_pair(label, value) for view in self._views)

    def count_with_pair(self, label: str, value: str) -> int:
        return sum(view.count_with_pair(label, value) for view in self._views)


@attrs.frozen(kw_only=True)
class WriteOutcome:
    """What ``MetricStore.write`` did with a write's samples."""

    new_series: int
    """Series the write created."""
    kept: int
    """Samples now held (in time order, out-of-order ones included)."""
    too_old: int
    """Samples refused: older than the retention (``storage.max_data_age``)."""
    superseded: int
    """Samples not held because their series holds one of the same 15 s bucket with
    a later timestamp (the store's resolution, not an error)."""
    displaced: int = 0
    """Samples the write left its series fewer than it brought, too old ones
    apart: those superseded, and those (held, or of this write) a later sample
    of their bucket took the place of. What an operator counts as left out."""


@attrs.frozen(kw_only=True)
class StoreStats:
    """Size of the store."""

    tenants: int
    series: int
    samples: int


class MetricStore:
    """Series per tenant, with their limits."""

    def __init__(self, limits: StoreLimits) -> None:
        self.limits = limits
        self._tenants: dict[str, TenantSeries] = {}
        self._series = 0
        self._label_bytes = 0
        self._samples = 0

    def tenant(self, tenant: str) -> TenantSeries:
        """What ``tenant`` may read (an empty view if it wrote nothing)."""
        return self._tenants.get(tenant, _EMPTY)

    def write(self, tenant: str, deployment_hash: str, samples: list[Sample], now: float) -> WriteOutcome:
        """Record ``samples`` of one deployment, all or none (a limit), in time order
        per series whatever order they come in; returns what was kept and refused.

        Raises:
            WriteLimitExceeded: 429 when new series would pass a limit of series
                or of their labels' characters, or the samples would pass the
                samples' (each counted as new: one that replaces a held sample
                of its bucket adds nothing, but is not told apart beforehand);
                nothing is recorded then.
        """
        held = self._tenants.get(tenant)
        known = held.series if held is not None else {}
        new = {sample.labels for sample in samples if sample.labels not in known}
        if new:
            self._check_room(held, deployment_hash, new)
        if self.limits.keep_samples:
            self._check_samples(held, len(samples))
        if held is None:
            held = self._tenants[tenant] = TenantSeries()
        touched = {labels: len(series.times) for labels in {sample.labels for sample in samples}
                   if (series := held.series.get(labels)) is not None}
        cutoff = now - self.limits.retention
        keep = self.limits.keep_samples
        kept = too_old = superseded = 0
        # Oldest first (stable: of equal timestamps the later written wins), so that a
        # write in any order appends, and inserts only what is older than its series.
        late: dict[Labels, list[tuple[float, float]]] = {}
        for sample in sorted(samples, key=_timestamp):
            if sample.timestamp < cutoff:
                too_old += 1
                continue
            series = held.series.get(sample.labels)
            if series is None:
                series = Series(sample.labels)
                held.add(series)
                self._series += 1
                self._label_bytes += label_size(series.labels)
            elif keep and series.times and sample.timestamp // RESOLUTION <= series.times[-1] // RESOLUTION:
                # Into what the series holds: merged once for the write (``Series.merge``).
                late.setdefault(series.labels, []).append((sample.timestamp, sample.value))
                continue
            if series.add(sample.timestamp, sample.value, keep):
                kept += 1
            else:
                superseded += 1
        for labels, points in late.items():
            gave_way = held.series[labels].merge(points)
            kept += len(points) - gave_way
            superseded += gave_way
        added = sum(len(series.times) - touched.get(labels, 0) for labels in {sample.labels for sample in samples}
                    if (series := held.series.get(labels)) is not None)
        held.samples += added
        self._samples += added
        return WriteOutcome(new_series=len(new), kept=kept, too_old=too_old, superseded=superseded,
                            displaced=len(samples) - too_old - added)

    def _check_room(self, held: TenantSeries | None, deployment_hash: str, new: set[Labels]) -> None:
        """Raises ``WriteLimitExceeded`` (429) naming the first limit ``new`` series would pass."""
        limits = self.limits
        size = sum(map(label_size, new))
        in_deployment = (held.per_deployment[deployment_hash] if held is not None else 0) + len(new)
        in_tenant = (len(held.series) if held is not None else 0) + len(new)
        tenant_bytes = (held.label_bytes if held is not None else 0) + size
        for value, limit, code, key, what in (
            (in_deployment, limits.max_series_per_deployment, "series_limit_reached",
             "metrics.max_series_per_deployment", f"deployment {deployment_hash} would hold {in_deployment} series"),
            (in_tenant, limits.max_series_per_tenant, "tenant_series_limit_reached", "metrics.max_series_per_tenant",
             f"the tenant would hold {in_tenant} series"),
            (self._series + len(new), limits.max_series, "server_series_limit_reached", "metrics.max_series",
             f"the server would hold {self._series + len(new)} series"),
            (tenant_bytes, limits.max_label_bytes_per_tenant, "tenant_label_bytes_reached",
             "metrics.max_label_bytes_per_tenant", f"the tenant's series would have {tenant_bytes} characters of labels"),
            (self._label_bytes + size, limits.max_label_bytes, "server_label_bytes_reached", "metrics.max_label_bytes",
             f"the server's series would have {self._label_bytes + size} characters of labels"),
        ):
            if value > limit:
                raise WriteLimitExceeded(429, code, f"{what}, more than {limit} ({key})", config_key=key, limit=limit)

    def _check_samples(self, held: TenantSeries | None, count: int) -> None:
        """Raises ``WriteLimitExceeded`` (429) if ``count`` more samples would pass a samples' limit."""
        limits = self.limits
        in_tenant = (held.samples if held is not None else 0) + count
        for value, limit, code, key, what in (
            (in_tenant, limits.max_samples_per_tenant, "tenant_samples_limit_reached",
             "metrics.max_samples_per_tenant", f"the tenant's series would hold {in_tenant} samples"),
            (self._samples + count, limits.max_samples, "server_samples_limit_reached", "metrics.max_samples",
             f"the server's series would hold {self._samples + count} samples"),
        ):
            if value > limit:
                raise WriteLimitExceeded(429, code, f"{what}, more than {limit} ({key}; older samples leave the "
                                                    "store past storage.max_data_age)", config_key=key, limit=limit)

    def expire(self, now: float) -> int:
        """Drop samples past the retention and series left empty; returns series removed."""
        cutoff = now - self.limits.retention
        removed = 0
        for tenant, held in list(self._tenants.items()):
            for series in list(held.series.values()):
                before = len(series.times)
                series.trim(cutoff)
                held.samples -= before - len(series.times)
                self._samples -= before - len(series.times)
                if not series.times:
                    removed += 1
                    self._series -= 1
                    self._label_bytes -= label_size(series.labels)
                    held.remove(series)
            if not held.series:
                del self._tenants[tenant]
        return removed

    def remove_with(self, label: str, value: str, *, tenant: str | None = None) -> int:
        """Drop every series whose ``label`` is ``value``, in ``tenant`` (None:
        in every tenant), with its samples; returns how many (a probe's host
        series when it is gone, or when it renamed its host)."""
        removed = 0
        names = list(self._tenants) if tenant is None else [tenant] if tenant in self._tenants else []
        for name in names:
            held = self._tenants[name]
            for series in list(held.with_pair(label, value)):
                held.remove(series)
                self._label_bytes -= label_size(series.labels)
                self._samples -= len(series.times)
                removed += 1
            if not held.series:
                del self._tenants[name]
        self._series -= removed
        return removed

    def stats(self) -> StoreStats:
        return StoreStats(tenants=len(self._tenants), series=sum(len(t) for t in self._tenants.values()),
                          samples=sum(len(s.times) for t in self._tenants.values() for s in t.series.values()))

    def __iter__(self) -> Iterator[str]:
        return iter(self._tenants)
