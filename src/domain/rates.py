"""Rate limits and the replay window: small pure structures with the clock passed in."""

from __future__ import annotations

import math
from collections import OrderedDict


class RateLimiter:
    """A token bucket per key: ``per_minute`` requests a minute, bursts up to a
    tenth of that (at least 10). Keys idle long enough to be full again are
    forgotten, so memory follows the active keys."""

    def __init__(self, per_minute: int, *, max_keys: int = 100_000) -> None:
        self.rate = per_minute / 60.0
        self.burst = float(max(10, per_minute // 10))
        self.max_keys = max_keys
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def acquire(self, key: str, now: float) -> float:
        """0 if the request may go ahead (and is counted), else the seconds to wait."""
        tokens, at = self._buckets.pop(key, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        if tokens >= 1.0:
            self._buckets[key] = (tokens - 1.0, now)
            self._trim(now)
            return 0.0
        self._buckets[key] = (tokens, now)
        return (1.0 - tokens) / self.rate

    def _trim(self, now: float) -> None:
        refill = self.burst / self.rate
        while self._buckets:
            key, (_, at) = next(iter(self._buckets.items()))
            if now - at < refill and len(self._buckets) <= self.max_keys:
                return
            del self._buckets[key]  # full again (or too many keys): forgetting it loses nothing


def retry_after(seconds: float) -> str:
    """A Retry-After header value: whole seconds, at least 1."""
    return str(max(1, math.ceil(seconds)))


class ReplayWindow:
    """Request ids seen within the last ``window`` seconds."""

    def __init__(self, window: float = 600.0, *, max_ids: int = 1_000_000) -> None:
        self.window = window
        self.max_ids = max_ids
        self._seen: OrderedDict[str, float] = OrderedDict()

    def first_use(self, request_id: str, now: float) -> bool:
        """True (and remembered) if ``request_id`` was not seen in the window."""
        seen_at = self._seen.get(request_id)
        if seen_at is not None and now - seen_at < self.window:
            return False  # checked before evicting: a full window must not forget a live id
        while self._seen:
            oldest, at = next(iter(self._seen.items()))
            if now - at < self.window and len(self._seen) < self.max_ids:
                break
            del self._seen[oldest]
        self._seen.pop(request_id, None)
        self._seen[request_id] = now
        return True
