"""The encoded edges of big views, in runs shared across versions.

Edges are three-field records, encoded when read (``Edge``): caching each one's JSON
would cost ~90 MB at 200,000 edges. But a listing of 200,000 edges encodes
~40 MB of JSON per request (~130 ms of CPU), almost all of it the same as the
last version's: a report changes only its own agent's edges, and an edge that
does not change is the very same object in the next version (``publish``
copies the maps, not the edges).

So a view's edges, in their order, are cut into runs of ~``RUN`` edges and
each run's encoding is kept, keyed by the identities of its edges. A run's
end is decided by its last edge alone (its identity, not its position), so an
edge added, changed or removed changes the run it is in and no other: the
others are found again in the next version. The key is made from the objects'
ids and the run holds the edges themselves, so no other object can take one
of their ids while the run is kept: an equal key is the same edges, whose
encoding never changes.

Bounded: at most ``limit`` bytes (encodings, keys and the runs' tuples), least
recently used first out; and each complete listing of a view's newest version
drops that view's runs it did not use (those of changed or expired edges), so
what is kept is about one encoding of each listed view. Used from one thread
(the event loop's): no lock.
"""

from __future__ import annotations

import sys
from array import array
from collections import OrderedDict
from collections.abc import Iterator, Mapping
from itertools import compress, count, repeat
from operator import mod, not_

import attrs

from ._model import Edge, View, edge_entries

EDGE_CACHE_BYTES = 64 * 1024 * 1024
"""The default bound: the runs of a 1,000-host topology (~197,000 process edges)
take ~43 MB."""

RUN = 1021
"""About this many edges per run (a prime: runs end where an edge's id, a
multiple of 16, is a multiple of it): ~200 KB of JSON, ~1 ms to encode."""

_RUN_OVERHEAD = 200
"""Bytes per kept run besides its encoding, key and tuple: the record and its
slot in the table."""


@attrs.define(slots=True)
class _Run:
    edges: tuple[Edge, ...]
    """What keeps the key's ids from being reused while the run is kept."""
    encoded: bytes
    """``,"<id>":{...}`` of each edge: a leading comma, so that runs are sent as
    they are, one after the other."""
    view: View
    size: int
    used: int
    """The listing (``EdgeCache.entries`` call) that last used it."""


@attrs.frozen
class EdgeCacheStats:
    """What an ``EdgeCache`` holds, and how well it serves."""

    bytes: int
    """Accounted bytes: encodings, keys, the runs' tuples and records."""
    runs: int
    limit: int
    hits: int
    """Runs found encoded, since the start."""
    misses: int
    """Runs encoded, since the start."""


class EdgeCache:
    """Encoded runs of edges, shared by every version of one graph.

    Args:
        limit: the bound, in bytes (see the module).
        run: edges per run, on average; a prime (tests make runs short).
    """

    def __init__(self, limit: int = EDGE_CACHE_BYTES, run: int = RUN) -> None:
        self.limit, self.run, self.max_run = limit, run, 4 * run
        self.size = 0
        self.hits = 0
        self.misses = 0
        self._runs: OrderedDict[bytes, _Run] = OrderedDict()
        self._listings = count(1)
        self._swept: dict[View, int] = {}
        """The newest version a complete listing of each view swept at."""

    def stats(self) -> EdgeCacheStats:
        return EdgeCacheStats(self.size, len(self._runs), self.limit, self.hits, self.misses)

    def entries(self, view: View, version: int, edges: Mapping[tuple[str, str], Edge]) -> Iterator[bytes]:
        """``"<id>":{...}`` of each of ``edges`` (``view``'s in version
        ``version``), in their order, each after a comma, in runs of ~``run``:
        the same bytes as ``edge_entries`` of them all, with a leading comma."""
        listing = next(self._listings)
        values = list(edges.values())
        ids = array("Q", map(id, values))
        start = 0
        longest = self.max_run
        for end in compress(count(1), map(not_, map(mod, ids, repeat(self.run)))):
            while end - start > longest:
                # A stretch of edges none of which ends a run.
                yield self._run(view, listing, values, ids, start, start + longest)
                start += longest
            yield self._run(view, listing, values, ids, start, end)
            start = end
        while start < len(values):
            stop = min(start + longest, len(values))
            yield self._run(view, listing, values, ids, start, stop)
            start = stop
        if version >= self._swept.get(view, 0):
            self._swept[view] = version
            self._sweep(view, listing)

    def _run(self, view: View, listing: int, values: list[Edge], ids: array[int], start: int, end: int) -> bytes:
        key = ids[start:end].tobytes()
        run = self._runs.get(key)
        if run is not None:
            self.hits += 1
            run.used = listing
            self._runs.move_to_end(key)
            return run.encoded
        self.misses += 1
        edges = tuple(values[start:end])
        encoded = b"," + edge_entries(edges)
        size = len(encoded) + sys.getsizeof(key) + sys.getsizeof(edges) + _RUN_OVERHEAD
        if self._room(size, listing):
            self._runs[key] = _Run(edges, encoded, view, size, listing)
            self.size += size
        return encoded

    def _room(self, size: int, listing: int) -> bool:
        """Whether ``size`` more bytes fit, once runs used least recently are
        dropped: not at the cost of runs this listing used (a view larger than
        the bound keeps its first runs rather than none)."""
        if size > self.limit:
            return False
        while self.size + size > self.limit:
            key, oldest = next(iter(self._runs.items()))
            if oldest.used >= listing:
                return False
            del self._runs[key]
            self.size -= oldest.size
        return True

    def _sweep(self, view: View, listing: int) -> None:
        """Drop ``view``'s runs that neither this complete listing of its
        newest version nor a later one used: runs of edges since changed or
        gone."""
        stale = [key for key, run in self._runs.items() if run.view is view and run.used < listing]
        for key in stale:
            self.size -= self._runs.pop(key).size
