"""Rate limits, what each client holds at once, the replay window, how
often something frequent is logged, and whether a failure stands: small pure
structures with the clock passed in."""

from __future__ import annotations

import contextlib
import logging
import math
from collections import Counter, OrderedDict
from collections.abc import Hashable, Iterator
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)


class TokenBuckets(Generic[K]):
    """A token bucket per key, refilled at ``rate`` tokens a second up to
    ``burst``; what is taken from one may leave it in debt (below 0), waited
    off at the same rate. Keys whose bucket is full again are forgotten (a new
    one starts full: forgetting loses nothing), and the least recently drawn
    past ``max_keys``, so memory follows the active keys. The bucket of
    ``RateLimiter`` and of the HTTP edge's read time share."""

    def __init__(self, rate: float, burst: float, *, max_keys: int = 100_000) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self._buckets: OrderedDict[K, tuple[float, float]] = OrderedDict()
        """Key -> (tokens, when), least recently drawn first."""

    def __len__(self) -> int:
        return len(self._buckets)

    def __iter__(self) -> Iterator[K]:
        """The keys remembered, least recently drawn first."""
        return iter(self._buckets)

    def __contains__(self, key: object) -> bool:
        return key in self._buckets

    def left(self, key: K, now: float) -> float:
        """Tokens in ``key``'s bucket at ``now`` (negative: its debt)."""
        tokens, at = self._buckets.get(key, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate)

    def draw(self, key: K, cost: float, now: float) -> None:
        """Take ``cost`` tokens from ``key``'s bucket at ``now`` (0: it is
        only touched, the last to go past ``max_keys``), even into debt."""
        tokens = self.left(key, now) - cost
        self._buckets.pop(key, None)
        self._buckets[key] = (tokens, now)
        self._forget_full(now)

    def _forget_full(self, now: float) -> None:
        while self._buckets:
            key, (tokens, at) = next(iter(self._buckets.items()))
            if tokens + (now - at) * self.rate < self.burst and len(self._buckets) <= self.max_keys:
                return
            del self._buckets[key]  # full again (or too many keys): forgetting it loses nothing


class RateLimiter:
    """A token bucket per key (``TokenBuckets``): ``per_minute`` requests a
    minute, bursts up to ``burst`` (default a tenth of that, at least 10),
    never into debt."""

    def __init__(self, per_minute: int, *, burst: int | None = None, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(burst if burst is not None else max(10, per_minute // 10))
        self.max_keys = max_keys
        self._buckets: TokenBuckets[str] = TokenBuckets(self.rate, self.burst, max_keys=max_keys)

    def acquire(self, key: str, now: float, cost: float = 1.0) -> float:
        """0 if the request may go ahead (and is counted, ``cost`` tokens of it;
        at most the burst), else the seconds to wait."""
        cost = min(cost, self.burst)
        tokens = self._buckets.left(key, now)
        if tokens >= cost:
            self._buckets.draw(key, cost, now)
            return 0.0
        self._buckets.draw(key, 0.0, now)  # refused: not counted
        return (cost - tokens) / self.rate


class RefusalSampler:
    """Which refusals of clients who named nobody (no token, a bad one) are
    recorded one by one in the audit log: ``per_minute`` a client source
    (a token bucket each, as ``RateLimiter``) and ``total_per_minute`` over
    all of them. The others are counted by source, and the source's next
    recorded refusal says how many were left out. One address sending bad
    tokens wrote ~90 rows a second, kept for the history retention (30 days:
    ~4 GB a day), and every other address or IPv6 /64 could do as much."""

    def __init__(self, per_minute: int = 30, total_per_minute: int | None = 120, *,
                 max_sources: int = 100_000) -> None:
        """``total_per_minute`` None: no cap over all sources (each is
        sampled alone: one tenant's flood leaves out none of another's)."""
        self.each = RateLimiter(per_minute, max_keys=max_sources)
        self.all = RateLimiter(total_per_minute) if total_per_minute is not None else None
        self.max_sources = max_sources
        self._left_out: OrderedDict[str, int] = OrderedDict()
        """Refusals not recorded, by source, since its last recorded one (the oldest sources forgotten beyond ``max_sources``)."""
        self.left_out = 0
        """Refusals not recorded, over the process's life."""

    def admit(self, source: str, now: float) -> int | None:
        """None: leave this refusal out (counted); else record it, with how many
        of the source's were left out since its last recorded one."""
        if self.each.acquire(source, now) or (self.all is not None and self.all.acquire("", now)):
            self.left_out += 1
            self._left_out[source] = self._left_out.pop(source, 0) + 1
            while len(self._left_out) > self.max_sources:
                self._left_out.popitem(last=False)
            return None
        return self._left_out.pop(source, 0)

    def not_recorded(self, source: str, count: int) -> None:
        """``count`` refusals admitted (one, and those it said were left out
        before it) could not be recorded after all (the store had no room):
        counted again as left out, so the source's next recorded one says so."""
        self.left_out += count
        self._left_out[source] = self._left_out.pop(source, 0) + count
        while len(self._left_out) > self.max_sources:
            self._left_out.popitem(last=False)


class Lull:
    """Whether something that may happen thousands of times a second is said
    now: once, then at most once every ``interval`` seconds, each time said
    counting the times not said since the last (``due``); or said at warning
    level then and at debug level between (``level``). Pure: ``now`` is passed in."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._next = -math.inf
        self._unsaid = 0

    def due(self, now: float) -> int | None:
        """One more time: None if it is not to be said; else how many were
        not said before it (since the last time said)."""
        if now < self._next:
            self._unsaid += 1
            return None
        self._next = now + self.interval
        unsaid, self._unsaid = self._unsaid, 0
        return unsaid

    def level(self, now: float) -> int:
        """One more time: the level to log it at, ``logging.WARNING`` when
        ``due``, else ``logging.DEBUG``."""
        return logging.WARNING if self.due(now) is not None else logging.DEBUG


class Lulls(Generic[K]):
    """A ``Lull`` of each key (a cause of failure), at most ``capacity`` keys
    remembered (the one said longest ago forgotten first): each cause said
    once an interval, whatever else is said meanwhile."""

    def __init__(self, interval: float, capacity: int = 256) -> None:
        self.interval = interval
        self.capacity = capacity
        self._lulls: OrderedDict[K, Lull] = OrderedDict()

    def due(self, key: K, now: float) -> int | None:
        """``Lull.due`` of ``key``'s lull."""
        lull = self._lulls.get(key)
        if lull is None:
            lull = self._lulls[key] = Lull(self.interval)
            if len(self._lulls) > self.capacity:
                self._lulls.popitem(last=False)
        unsaid = lull.due(now)
        if unsaid is not None:
            self._lulls.move_to_end(key)
        return unsaid


class FirstSeen(Generic[K]):
    """Which keys were seen already, to say something once per key (a cause of
    failure, an agent id) and quietly after: one bad message may be one of
    thousands alike. At most ``capacity`` keys are remembered; past them every
    key counts as seen, so memory stays bounded whoever sends what."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._seen: set[K] = set()

    def __len__(self) -> int:
        return len(self._seen)

    def first(self, key: K) -> bool:
        """True (and remembered) the first time ``key`` is seen, while there is room."""
        if key in self._seen or len(self._seen) >= self.capacity:
            return False
        self._seen.add(key)
        return True


class Outage:
    """What has been said of a failure that lasts while it is retried every
    few seconds (a server out of reach): each kind of failure is said when
    it begins, or turns into another kind, not at every attempt; once it is
    ``over``, the next one is said again."""

    def __init__(self) -> None:
        self.said: str | None = None
        """The kind of failure said last in this outage (None: nothing said yet, or none under way)."""

    def changed(self, kind: str) -> bool:
        """True (and remembered) if ``kind`` is not what was said last: then it is said."""
        if kind == self.said:
            return False
        self.said = kind
        return True

    def first(self, kind: str) -> bool:
        """True (and remembered) if nothing was said of this outage yet: a
        failure another kind already said, in other words, is left unsaid."""
        if self.said is not None:
            return False
        self.said = kind
        return True

    def over(self) -> None:
        self.said = None


class StandingFailure:
    """A failure of something many callers use that stands until a check of
    the whole of it works, not until one use works: a read of a table that
    answers says nothing of reads of the table that is locked. While it
    stands, the check is due ``interval`` seconds after the first failure
    (one just failed: looking at once would find the same) and then at most
    once every ``interval`` seconds, whoever asks how often: each of many
    callers asking (load balancers polling readiness every second) costs
    nothing but the one due."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.reason: str | None = None
        """Why the latest failure failed (None: none stands)."""
        self._checked_at = -math.inf

    def failed(self, reason: str, now: float) -> None:
        """A use (or the check) failed: the failure stands, for ``reason``."""
        if self.reason is None:
            self._checked_at = now
        self.reason = reason

    def check_due(self, now: float) -> bool:
        """True (and the check counted as made now) if a failure stands and
        its check is due: the caller checks, and says ``over`` if it worked."""
        if self.reason is None or now - self._checked_at < self.interval:
            return False
        self._checked_at = now
        return True

    def over(self) -> None:
        """The check worked: no failure stands."""
        self.reason = None


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class ReplayWindow:
    """Request ids seen within the last ``window`` seconds."""

    def __init__(self, window: float = 600.0, *, max_ids: int = 1_000_000) -> None:
        self.window = window
        self.max_ids = max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_use(self, request_id: str, now: float, at: float | None = None) -> bool:
        """True (and remembered) if ``request_id`` was not seen in the window:
        from when it was seen (``at``, the time it was signed, if given; else
        ``now``) for ``window`` seconds of ``now``'s clock."""
        seen_at = self._seen.get(request_id)
        if seen_at is not None and now - seen_at < self.window:
            return False  # checked before evicting: a full window must not forget a live id
        while self._seen:
            oldest, oldest_at = next(iter(self._seen.items()))
            if now - oldest_at < self.window and len(self._seen) < self.max_ids:
                break
            del self._seen[oldest]
        self._seen.pop(request_id, None)
        self._seen[request_id] = now if at is None else at
        return True


class Holdings(Generic[K]):
    """How many of something each key holds now (a user's store listings or
    PromQL reads, an address's WebSockets, a tenant's live views): counted in
    by ``take``, out by ``give_back``, with an entry per key that holds any and
    no more (the keys are clients' addresses and users: memory follows what is
    open now, not who ever came)."""

    def __init__(self) -> None:
        self._counts: Counter[K] = Counter()

    def __len__(self) -> int:
        return len(self._counts)

    def count(self, key: K) -> int:
        return self._counts.get(key, 0)

    def take(self, key: K) -> None:
        self._counts[key] += 1

    def give_back(self, key: K) -> None:
        left = self._counts[key] - 1
        if left > 0:
            self._counts[key] = left
        else:
            del self._counts[key]

    @contextlib.contextmanager
    def held(self, key: K) -> Iterator[None]:
        """One of ``key``'s, taken for the block."""
        self.take(key)
        try:
            yield
        finally:
            self.give_back(key)
