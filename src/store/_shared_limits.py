"""The replay window and the per-agent and per-user rate limits in PostgreSQL,
shared by every replica of the database (tables ``replay_ids`` and
``rate_buckets``, schema version 2).

Each check is one statement that decides and records at once (an upsert on
the row's primary key: PostgreSQL's row lock makes concurrent checks of one
key from any replicas take their turn), timed by the database's clock, so
replicas' clocks need not agree. A request id replayed to another replica
finds its row; a token bucket is drained by the requests of every replica
together, so a limit is not multiplied by the number of replicas.

Rows whose time is over (ids older than the window, buckets full again) are
deleted now and then by the checks themselves, a bounded batch at a time.
"""

from __future__ import annotations

import functools
import hashlib
import itertools
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg_pool import ConnectionPool

from trioscope.domain.rates import RateLimiter

T = TypeVar("T")

POOL_SIZE = 4
"""Connections for these checks (every signed agent request and every user
request makes one), apart from the store's readers."""
CONNECT_TIMEOUT = 10.0
PRUNE_EVERY = 1000
"""Checks between two deletions of rows whose time is over."""
PRUNE_BATCH = 5000

_NOW = "extract(epoch from clock_timestamp())"

_FIRST_USE = f"""
INSERT INTO replay_ids AS r (id, seen_until) VALUES (%(id)s, {_NOW} + %(window)s)
ON CONFLICT (id) DO UPDATE SET seen_until = EXCLUDED.seen_until WHERE r.seen_until < {_NOW}
RETURNING 1
"""
"""A row back: first use (new, or seen longer ago than the window); none: a replay."""

_REFILLED = f"LEAST(%(burst)s, b.tokens + ({_NOW} - b.at) * %(rate)s)"
_ACQUIRE = f"""
INSERT INTO rate_buckets AS b (key, tokens, at, granted) VALUES (%(key)s, %(burst)s - 1, {_NOW}, true)
ON CONFLICT (key) DO UPDATE SET
    granted = {_REFILLED} >= 1,
    tokens = {_REFILLED} - CASE WHEN {_REFILLED} >= 1 THEN 1 ELSE 0 END,
    at = {_NOW}
RETURNING granted, tokens
"""
"""A token bucket's refill, check and charge in one statement (the SET
expressions all read the row as it was)."""

_PRUNE_REPLAY = f"""
DELETE FROM replay_ids WHERE id IN (SELECT id FROM replay_ids WHERE seen_until < {_NOW} LIMIT %(batch)s)
"""
_PRUNE_BUCKETS = f"""
DELETE FROM rate_buckets WHERE key IN (
    SELECT key FROM rate_buckets WHERE at < {_NOW} - %(full_after)s LIMIT %(batch)s)
"""


class SharedLimits:
    """The connections the checks share (opened on first use, in a worker thread)."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self._pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            url, min_size=1, max_size=pool_size, open=False, name="trioscope-limits",
            kwargs={"autocommit": True})
        self._opened = False
        self._opening = threading.Lock()  # the first checks arrive together, each in its worker thread
        self._limiter = trio.CapacityLimiter(pool_size)
        self._checks = itertools.count(1)

    def _open(self) -> None:
        with self._opening:
            if not self._opened:
                self._pool.open(wait=True, timeout=CONNECT_TIMEOUT)
                self._opened = True

    async def run(self, statement: str, args: dict[str, Any], prune: tuple[str, dict[str, Any]]) -> Any:
        """``statement``'s first row (None: no row), and every ``PRUNE_EVERY`` checks ``prune`` too."""
        pruning = next(self._checks) % PRUNE_EVERY == 0
        return await self._call(functools.partial(self._execute, statement, args, prune if pruning else None))

    def _execute(self, statement: str, args: dict[str, Any], prune: tuple[str, dict[str, Any]] | None) -> Any:
        self._open()
        with self._pool.connection() as db:
            row = db.execute(statement, args).fetchone()
            if prune is not None:
                db.execute(prune[0], prune[1])
            return row

    async def _call(self, fn: Callable[[], T]) -> T:
        return await trio.to_thread.run_sync(fn, limiter=self._limiter)

    def close(self) -> None:
        self._pool.close()


class SharedReplayIds:
    """Request ids in ``replay_ids``: every replica's, for the whole window,
    kept across restarts, so a request signed before this process started is
    checked like any other."""

    def __init__(self, limits: SharedLimits, window: float) -> None:
        self._limits = limits
        self._window = window

    @property
    def signed_since(self) -> float:
        return 0.0

    async def first_use(self, key: str) -> bool:
        row = await self._limits.run(_FIRST_USE, {"id": _key(key), "window": self._window},
                                     (_PRUNE_REPLAY, {"batch": PRUNE_BATCH}))
        return row is not None


class SharedRateBudget:
    """Token buckets in ``rate_buckets``, one row per ``scope`` and key."""

    def __init__(self, limits: SharedLimits, scope: str, per_minute: int) -> None:
        shape = RateLimiter(per_minute)  # the same rate and burst as one process's limiter
        self._limits = limits
        self._scope = scope
        self._per_minute = per_minute
        self._args = {"rate": shape.rate, "burst": shape.burst}
        self._full_after = shape.burst / shape.rate

    @property
    def per_minute(self) -> int:
        return self._per_minute

    async def acquire(self, key: str) -> float:
        granted, tokens = await self._limits.run(
            _ACQUIRE, {**self._args, "key": _key(f"{self._scope}\x00{key}")},
            (_PRUNE_BUCKETS, {"full_after": self._full_after, "batch": PRUNE_BATCH}))
        if granted:
            return 0.0
        return max(0.0, (1.0 - float(tokens)) / float(self._args["rate"]))


def _key(text: str) -> str:
    """A fixed-size key for any text a client sends (PostgreSQL text takes no NUL)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
