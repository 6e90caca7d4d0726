"""Rate-limit tokens a process has taken from a shared bucket ahead of need:
the pure bookkeeping of ``_shared_limits``' leases, the clock passed in.

A process that asks the database for one token per request pays a
transaction per request. It asks for several at once instead, and hands
them out itself; what it takes is taken from the shared bucket, so the
tokens handed out by all processes together never exceed what the one
bucket allows. The costs are a refill latency and a short delay:

* a process may hold tokens another one needs (refused while the bucket is
  empty and this process still holds some): so a lease is small while the
  bucket is low (at most ``SHARE`` of what it last had) and starts at one
  token per key, doubling only while the process uses up its leases within
  their lifetime (a key requested often *here*);
* a token is handed out up to ``lifetime`` seconds after it was taken, so in
  a short window up to a lease per process beyond the burst can go through
  (never more in total than taken); unused tokens are dropped then, and the
  next lease is halved.
"""

from __future__ import annotations

import math
from collections import OrderedDict

import attrs

SHARE = 0.25
"""At most this part of the tokens the bucket last had is leased at once: the
other processes still find some while this one holds its lease."""


@attrs.define
class _Lease:
    tokens: int = 0
    """Taken from the bucket, not handed out yet."""
    expires: float = -math.inf
    size: int = 1
    """Tokens the next lease asks for (before ``SHARE`` of the bucket caps it)."""
    left: float = math.inf
    """The bucket's tokens after this process's last lease of this key..."""
    left_at: float = -math.inf
    """... and when (refilled since at the bucket's rate)."""
    refused_until: float = -math.inf
    """The bucket had not a token for this process until then."""


class TokenLeases:
    """Leases of one shared budget (one rate and burst), per key.

    Args:
        rate: the bucket's refill, tokens a second.
        burst: the bucket's size.
        lifetime: seconds a leased token may be handed out after it was taken.
        max_size: the most tokens one lease asks for.
        max_keys: keys remembered (the least recently used are forgotten, with
            their leases: tokens lost, never handed out twice).
    """

    def __init__(self, *, rate: float, burst: float, lifetime: float, max_size: int,
                 max_keys: int = 100_000) -> None:
        if rate <= 0 or burst < 1 or lifetime <= 0 or max_size < 1 or max_keys < 1:
            raise ValueError(f"invalid lease shape: rate {rate}, burst {burst}, lifetime {lifetime}, "
                             f"max_size {max_size}, max_keys {max_keys}")
        self.rate = rate
        self.burst = burst
        self.lifetime = lifetime
        self.max_size = max_size
        self.max_keys = max_keys
        self._leases: OrderedDict[str, _Lease] = OrderedDict()

    def take(self, key: str, now: float) -> float | None:
        """0.0: a leased token handed out; > 0: refused, the seconds until the
        bucket has one; None: nothing leased, ask the bucket for ``want``."""
        lease = self._leases.get(key)
        if lease is None:
            return None
        self._leases.move_to_end(key)
        if lease.tokens and now >= lease.expires:
            lease.tokens = 0  # too old to hand out: dropped, and the next lease smaller
            lease.size = max(1, lease.size // 2)
        if lease.tokens:
            lease.tokens -= 1
            if not lease.tokens:  # used up within its lifetime: this key is busy here
                lease.size = min(self.max_size, lease.size * 2)
            return 0.0
        if now < lease.refused_until:
            return lease.refused_until - now
        return None

    def want(self, key: str, now: float) -> int:
        """Tokens to ask the bucket for (all or none), at least 1."""
        lease = self._leases.get(key)
        if lease is None:
            return 1
        left = min(self.burst, lease.left + (now - lease.left_at) * self.rate)
        return max(1, min(lease.size, math.floor(left * SHARE)))

    def leased(self, key: str, count: int, left: float, now: float) -> None:
        """The bucket gave ``count`` tokens (the caller hands out one of them
        with ``take`` next) and has ``left``."""
        lease = self._lease(key)
        lease.tokens += count
        lease.expires = now + self.lifetime
        lease.left, lease.left_at = left, now
        lease.refused_until = -math.inf

    def refused(self, key: str, wanted: int, left: float, now: float) -> float | None:
        """The bucket had fewer than ``wanted`` tokens: ``left``. None: it has
        one at least, ask again for one (``want`` is 1 now); else the seconds
        until it has one, and until then this key is refused here without
        asking the bucket (no other process can make that sooner: they only take)."""
        lease = self._lease(key)
        lease.left, lease.left_at = left, now
        lease.size = 1
        if wanted > 1 and left >= 1:
            return None
        wait = max(0.0, (1.0 - left) / self.rate)
        lease.refused_until = now + wait
        return wait

    def _lease(self, key: str) -> _Lease:
        lease = self._leases.get(key)
        if lease is None:
            lease = self._leases[key] = _Lease()
            while len(self._leases) > self.max_keys:
                self._leases.popitem(last=False)
        else:
            self._leases.move_to_end(key)
        return lease
