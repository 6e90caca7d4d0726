"""Metric history of series written together: one row per report and writer.

A host's report carries the metrics of its ~100 processes at one time. Kept per
series (``timeseries.MetricHistory``), recording them is ~100 Python calls per
report, a sixth of what merging a report whose metrics alone changed costs.
Here a writer (an agent) adds one row per report: the keys it wrote (node ids,
a tuple shared by every row of the same keys) and one column per metric with a
value per key (float32, as bytes), each built by one call. Reading a key's
points (a node's details, asked for one node at a time) walks its writers'
rows instead.

What a read returns is what ``MetricHistory`` returns for the same records
(float32 values, NaN meaning "no value", the last write of a bucket winning
metric by metric), within the window: a writer keeps the ``capacity =
ceil(retention / resolution)`` buckets ending with the newest bucket it wrote
(or with ``now``'s after :meth:`BlockHistory.expire`), so a key it stopped
writing leaves with its writer's window rather than its own.

Pure and synchronous: no clock is read here; callers pass timestamps and ``now``.
"""

from __future__ import annotations

import bisect
import math
import struct
import sys
from array import array
from collections.abc import Mapping, Sequence
from itertools import chain
from operator import attrgetter

import attrs
import msgspec

from .timeseries import RESOLUTION, ExpiryReport, HistoryStats, Point, _bucket, _check_window, float32_decimal

_NAN = math.nan
_BUCKET = attrgetter("bucket")
_FLOAT32 = struct.Struct("f")
_BYTES_HEADER = sys.getsizeof(b"")


class _Row(msgspec.Struct, gc=False):
    """One writer's values of one bucket.

    Out of the cyclic garbage collector, like the topology's nodes: a history
    of 1,000 hosts holds ~60,000 rows, and as an attrs object with a list of
    arrays each row was four objects every full collection walked. Its parts
    are untracked too (bytes, tuples of strings, a dict of ints), and none
    refers back to a row."""

    bucket: int
    sequence: int
    """Order of writing over all writers: a later row wins a bucket."""
    keys: tuple[str, ...]
    positions: Mapping[str, int]
    """``keys`` by position, shared by the rows of the same keys."""
    names: tuple[str, ...]
    columns: tuple[bytes, ...]
    """One per name, a float32 value (or NaN) per key: an ``array('f')``'s bytes."""


@attrs.define(slots=True, eq=False)
class _Writer:
    solo: tuple[str]
    """``(writer,)``: what ``_where`` holds for a key only this writer wrote,
    one tuple for all of them (a set each cost ~200 bytes a key)."""
    rows: list[_Row] = attrs.Factory(list)
    """In bucket order (rows of one bucket in writing order)."""
    low: float = -math.inf
    """Oldest bucket inside the window; -inf until something moves it."""
    layouts: dict[int, tuple[tuple[str, ...], int]] = attrs.Factory(dict)
    """The keys of its rows (by the tuple's id, which they share) and how many
    rows have them: a layout no row has any more may take keys with it."""


def _column(name: str, values: Sequence[Mapping[str, float]]) -> bytes:
    """``name``'s value in each of ``values`` (NaN where absent), float32; what
    float32 cannot hold (infinite, or beyond its range) as NaN too, as
    ``MetricHistory`` ignores it."""
    column = array("f", [v.get(name, _NAN) for v in values])
    if math.inf in column or -math.inf in column:
        column = array("f", [v if math.isfinite(v) else _NAN for v in column])
    return column.tobytes()


def _has_nan(column: array[float]) -> bool:
    total = sum(column)  # finite values sum to a number (or inf), never NaN
    return total != total


class BlockHistory:
    """Series written in blocks (``record``), read per key (``points``).

    Args:
        retention: Seconds of history to keep; at least ``resolution``.
        resolution: Seconds per bucket.

    Raises:
        ValueError: naming the bad retention or resolution.
    """

    def __init__(self, retention: float, resolution: float = RESOLUTION) -> None:
        self._capacity = _check_window(retention, resolution)
        self._retention = retention
        self._resolution = resolution
        self._writers: dict[str, _Writer] = {}
        self._where: dict[str, tuple[str, ...]] = {}
        """Key -> the writers whose rows may hold it (kept up to date when a
        writer writes other keys, cleaned by ``expire``)."""
        self._layouts: dict[str, tuple[tuple[str, ...], Mapping[str, int]]] = {}
        """Writer -> the keys of its last row and their positions: the next
        row of the same keys shares both."""
        self._sequence = 0

    @property
    def retention(self) -> float:
        """Seconds of history kept."""
        return self._retention

    @property
    def resolution(self) -> float:
        """Seconds per bucket."""
        return self._resolution

    def record(self, writer: str, timestamp: float, keys: tuple[str, ...],
               values: Sequence[Mapping[str, float]]) -> None:
        """Store ``values[i]`` for ``keys[i]`` (distinct keys) in the bucket
        holding ``timestamp``, as ``writer`` wrote them.

        Error handling:
            A record older than the writer's window changes nothing; a NaN or
            infinite timestamp raises ValueError.
        """
        bucket = _bucket(timestamp, self._resolution)
        state = self._writers.get(writer)
        if state is None:
            state = self._writers[writer] = _Writer((writer,))
        if bucket < state.low or not keys:
            return
        layout = self._layouts.get(writer)
        if layout is None or layout[0] != keys:
            layout = self._layouts[writer] = (keys, {key: i for i, key in enumerate(keys)})
        if id(layout[0]) not in state.layouts:  # keys none of its rows has: found through it from now on
            where = self._where
            for key in keys:
                found = where.get(key)
                if found is None:
                    where[key] = state.solo
                elif writer not in found:
                    where[key] = (*found, writer)
        names = tuple(dict.fromkeys(chain.from_iterable(values)))
        columns = [_column(name, values) for name in names]
        self._sequence += 1
        rows = state.rows
        if rows and rows[-1].bucket == bucket and rows[-1].keys is layout[0] and not self._overtaken(
                writer, rows[-1], keys):
            self._merge(rows[-1], names, columns)  # again within a bucket: the last value wins
            rows[-1].sequence = self._sequence
        else:
            row = _Row(bucket, self._sequence, layout[0], layout[1], names, tuple(columns))
            if not rows or rows[-1].bucket <= bucket:
                rows.append(row)
            else:  # a late report: in bucket order
                rows.insert(bisect.bisect_right(rows, bucket, key=_BUCKET), row)
            uses = state.layouts.get(id(row.keys))
            state.layouts[id(row.keys)] = (row.keys, 1 if uses is None else uses[1] + 1)
        low = bucket - self._capacity + 1
        if low > state.low:
            self._advance(writer, state, low)

    def _overtaken(self, writer: str, row: _Row, keys: tuple[str, ...]) -> bool:
        """Whether another writer wrote one of ``keys`` in ``row``'s bucket
        after ``row``: merged into ``row``, this record would give the values
        it leaves out (kept from ``row``) ``row``'s new sequence, and they
        would outrank that writer's later ones (two probes of one host writing
        a process alternately). Then the record takes a row of its own. A key
        only this writer holds (nearly all) costs one lookup."""
        solo = self._writers[writer].solo
        where = self._where
        for key in keys:
            found = where.get(key, solo)
            if found is solo:
                continue
            for other in found:
                if other == writer:
                    continue
                for later in reversed(self._writers[other].rows):
                    if later.bucket < row.bucket:
                        break
                    if later.bucket == row.bucket and later.sequence > row.sequence and key in later.positions:
                        return True
        return False

    @staticmethod
    def _merge(row: _Row, names: tuple[str, ...], columns: list[bytes]) -> None:
        """Write ``columns`` over ``row``'s, leaving its values where theirs are NaN."""
        row_names, row_columns = list(row.names), list(row.columns)
        for name, column in zip(names, columns, strict=True):
            if name not in row_names:
                row_names.append(name)
                row_columns.append(column)
                continue
            position = row_names.index(name)
            values = array("f", column)
            if _has_nan(values):
                old = array("f", row_columns[position])
                row_columns[position] = array("f", [new if new == new else was
                                                    for new, was in zip(values, old, strict=True)]).tobytes()
            else:
                row_columns[position] = column
        row.names, row.columns = tuple(row_names), tuple(row_columns)

    def _advance(self, writer: str, state: _Writer, low: int) -> int:
        """Move ``writer``'s window to start at bucket ``low``: its older rows
        go, and with the last row of a layout, the keys no row of it has any
        more (from ``_where``). Returns the key values dropped."""
        state.low = low
        rows = state.rows
        if not rows or rows[0].bucket >= low:
            return 0
        cut = bisect.bisect_left(rows, low, key=_BUCKET)
        dropped, lost = 0, []
        for row in rows[:cut]:
            dropped += len(row.keys)
            keys, uses = state.layouts[id(row.keys)]
            if uses > 1:
                state.layouts[id(row.keys)] = (keys, uses - 1)
            else:
                del state.layouts[id(row.keys)]
                lost.append(keys)
        del rows[:cut]
        if lost:
            kept = set(chain.from_iterable(keys for keys, _uses in state.layouts.values()))
            where = self._where
            for key in set(chain.from_iterable(lost)) - kept:
                found = where.get(key, ())
                if writer in found:
                    if len(found) == 1:
                        del where[key]
                    else:
                        where[key] = tuple(w for w in found if w != writer)
        return dropped

    def points(self, key: str, since: float, until: float | None = None) -> list[Point]:
        """``key``'s buckets holding a value whose start lies in ``[since, until]``,
        in ascending time, each with only the metrics that have a value.

        Raises:
            ValueError: if ``since`` or ``until`` is NaN.
        """
        if math.isnan(since) or (until is not None and math.isnan(until)):
            raise ValueError(f"invalid time range: {since!r} .. {until!r}")
        res = self._resolution
        found: list[tuple[int, int, dict[str, float]]] = []
        for writer in self._where.get(key, ()):
            state = self._writers[writer]
            for row in state.rows:
                start = row.bucket * res
                if start < since or (until is not None and start > until) or row.bucket < state.low:
                    continue
                position = row.positions.get(key)
                if position is None:
                    continue
                offset = 4 * position
                # As ``MetricHistory`` reads them: float32's shortest decimal (0.1, not 0.10000000149011612).
                values = {name: float32_decimal(v) for name, column in zip(row.names, row.columns, strict=True)
                          if (v := _FLOAT32.unpack_from(column, offset)[0]) == v}
                if values:
                    found.append((row.bucket, row.sequence, values))
        by_bucket: dict[int, dict[str, float]] = {}
        for bucket, _sequence, values in sorted(found, key=lambda item: item[:2]):
            by_bucket.setdefault(bucket, {}).update(values)
        return [Point(bucket * res, values) for bucket, values in by_bucket.items()]

    def expire(self, now: float) -> ExpiryReport:
        """Drop the buckets a record at ``now`` would push out of every writer's
        window, and forget writers and keys left without any.

        Returns:
            Writers removed (as ``groups_removed``) and key values dropped
            (as ``points_removed``: one per key of each dropped row).
        """
        low = _bucket(now, self._resolution) - self._capacity + 1
        dropped = 0
        emptied = []
        for writer, state in self._writers.items():
            if low > state.low:
                dropped += self._advance(writer, state, low)
            if not state.rows:
                emptied.append(writer)
        for writer in emptied:
            del self._writers[writer]
            self._layouts.pop(writer, None)
        return ExpiryReport(groups_removed=len(emptied), points_removed=dropped)

    def forget(self, writer: str) -> int:
        """Drop every row of ``writer`` and the keys only they held, as expiry
        would once the window passed its newest row (a probe forgotten to make
        room for another: its rows would otherwise stay for the retention).
        Returns the key values dropped."""
        state = self._writers.pop(writer, None)
        if state is None:
            return 0
        self._layouts.pop(writer, None)
        return self._advance(writer, state, state.rows[-1].bucket + 1) if state.rows else 0

    def stats(self) -> HistoryStats:
        """Keys held (``groups``), key values held (``points``: one per key of
        each row) and the bytes of the value columns."""
        points = held = 0
        for state in self._writers.values():
            for row in state.rows:
                points += len(row.keys)
                held += len(row.columns) * _BYTES_HEADER + 4 * len(row.keys) * len(row.columns)
        return HistoryStats(groups=len(self._where), points=points, bytes=held)

    def __len__(self) -> int:
        """Keys held."""
        return len(self._where)

