"""The agent replay window and the per-agent and per-user rate limits, where
every replica sees the same: in this process's memory with SQLite (one
process), in PostgreSQL's tables with replicas (``_shared_limits``).

Both are small async interfaces the HTTP gate awaits; the in-memory ones wrap
the pure structures of ``trioscope.domain.rates`` and never wait.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Protocol

import attrs

from trioscope.domain.rates import RateLimiter, ReplayWindow


class ReplayIds(Protocol):
    """Agent request ids seen within the replay window."""

    @property
    def signed_since(self) -> float:
        """The oldest signing time (unix seconds) this guard can vouch for: a
        request signed earlier may have been seen where this guard cannot know."""

    async def first_use(self, key: str, signed_at: float) -> bool:
        """True (and remembered for the window) if ``key``, of a request
        signed at ``signed_at`` (unix seconds, by the agent's clock), was not
        seen in the window."""


class RateBudget(Protocol):
    """A token bucket per key (``RateLimiter``'s rate and burst)."""

    @property
    def per_minute(self) -> int: ...

    async def acquire(self, key: str) -> float:
        """0 if the request may go ahead (and is counted), else the seconds to wait."""


class LocalReplayIds:
    """This process's memory: it knows the ids of requests it served since it
    started, so it vouches for nothing signed before then.

    Both by the wall clock as it is set now, for the agents' signing times
    are on theirs: the start is when the process started as read now (the
    clock set back after it, by NTP or an operator fixing a clock that was
    ahead, every agent's request was refused as signed before the start for
    as long as the step); an id is remembered until ``window`` after it was
    signed, past which its request is refused as signed too long ago (by
    the monotonic clock, the clock set back by more than the allowed skew let
    a request seen once be taken again once its id was forgotten)."""

    def __init__(self, window: float) -> None:
        self._window = ReplayWindow(window)
        self._started = time.monotonic()

    @property
    def signed_since(self) -> float:
        # Whole seconds, as agents sign (X-Timestamp): one signed in the second it started is after it.
        return float(math.floor(time.time() - (time.monotonic() - self._started)))

    async def first_use(self, key: str, signed_at: float) -> bool:
        return self._window.first_use(key, time.time(), at=signed_at)


class LocalRateBudget:
    """This process's memory (Trio runs one handler at a time: no lock)."""

    def __init__(self, per_minute: int) -> None:
        self._per_minute = per_minute
        self._limiter = RateLimiter(per_minute)

    @property
    def per_minute(self) -> int:
        return self._per_minute

    async def acquire(self, key: str) -> float:
        return self._limiter.acquire(key, time.monotonic())


@attrs.frozen
class AgentAndUserLimits:
    """What ``open_limits`` gives the HTTP gate."""

    replay: ReplayIds
    per_agent: RateBudget
    per_user: RateBudget
    close: Callable[[], None]
    """Releases the database connections (nothing for the in-memory ones)."""


def open_limits(postgres_url: str | None, *, replay_window: float, per_agent: int,
                per_user: int) -> AgentAndUserLimits:
    """The replay window and the per-agent and per-user budgets (requests per
    minute): in PostgreSQL's tables when the store is PostgreSQL (replicas
    share them; connections opened on first use), else in this process's memory."""
    if postgres_url is None:
        return AgentAndUserLimits(replay=LocalReplayIds(replay_window), per_agent=LocalRateBudget(per_agent),
                                  per_user=LocalRateBudget(per_user), close=lambda: None)
    from ._shared_limits import SharedLimits, SharedRateBudget, SharedReplayIds  # psycopg: only with PostgreSQL
    shared = SharedLimits(postgres_url)
    return AgentAndUserLimits(replay=SharedReplayIds(shared, replay_window),
                              per_agent=SharedRateBudget(shared, "agent", per_agent),
                              per_user=SharedRateBudget(shared, "user", per_user), close=shared.close)

