"""The replay window and the per-agent and per-user rate limits in PostgreSQL,
shared by every replica of the database (tables ``replay_ids`` and
``rate_buckets``, schema version 2).

Each check decides and records at once (an upsert on the row's primary key:
PostgreSQL's row lock makes concurrent checks of one key from any replicas
take their turn), timed by the database's clock, so replicas' clocks need not
agree. A request id replayed to another replica finds its row; a token bucket
is drained by the requests of every replica together, so a limit is not
multiplied by the number of replicas.

What it costs, per process: the checks that arrive within ``GATHER`` of a
batch's first go together, one statement and one transaction for all of
them (group commit, as the store's writer does), run by Trio on the
connection's socket (``_trio_connection``), not in a worker thread; and rate-limit tokens are
taken from a bucket several at a time when a key is busy here
(``_token_leases``), so most requests of a busy agent or user are counted
without asking the database at all.

A batch's transaction does not wait for its flush to disk
(``synchronous_commit`` off on these connections: ~4% less CPU per command
end to end with 2 workers, the checks answered sooner). Every replica sees
it once committed, so a replica killed loses nothing of it; only a crash of
PostgreSQL itself can lose the last fraction of a second of ids and buckets,
after which a request first seen in that moment could be taken once more
within its window. The store's writer, whose rows are what is acknowledged,
still waits for the disk.

Rows whose time is over (ids older than the window, buckets full again) are
deleted now and then by the checks themselves, a bounded batch at a time.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Sequence

import attrs
import psycopg
import psycopg.errors
import trio

from trioscope.domain.rates import RateLimiter

from ._token_leases import TokenLeases
from ._postgres import DEFAULT_TIMEOUTS
from ._trio_connection import Row, TrioConnection, array_text, connect_trio

BATCHES_IN_FLIGHT = 4
"""Batches sent at once (each gathered for ``GATHER``); a batch gathered while
as many are in flight waits for one of them to come back.
On a busy event loop a check that waits for a batch to come back before its
own can go waits a whole pass of the scheduler more (checks took 12-17 ms at
the median under the end-to-end load with 2 in flight, against ~0.5 ms alone):
4 in flight cost 0.90x the CPU per command of 2 and served ~10% more commands
end to end (2 workers, same run); 6 did no better than 4."""
GATHER = 0.001
"""Seconds the first check of a batch waits for others to join it. A worker of
``--workers 2`` sees half the requests of one, so checks seldom met by
chance (most batches held one check): waiting 1 ms, 2 workers served the
e2e load at 1.03x / 1.10x the commands per server CPU-second (A/B, session
32; 2 ms: 0.96x). A signed request waits that much longer."""
POOL_SIZE = BATCHES_IN_FLIGHT
"""Connections for these checks (one per batch in flight), apart from the store's readers."""
PRUNE_EVERY = 1000
"""Batches between two deletions of rows whose time is over."""
PRUNE_BATCH = 5000
DEADLOCK_RETRIES = 3
"""Batches lock their rows in key order, replay ids first, so replicas' batches
should not wait for each other in a circle; should PostgreSQL still find one,
the batch (rolled back whole) is sent again."""
LEASE_LIFETIME = 1.0
"""Seconds a leased token may be handed out after it was taken."""
LEASE_MAX = 16
"""The most tokens one lease takes."""

_NOW = "extract(epoch from clock_timestamp())"

_REFILLED = f"LEAST(a.burst, b.tokens + ({_NOW} - b.at) * a.rate)"
_ASK = "(SELECT {value} FROM asks AS a WHERE a.key = b.key)"

_BATCH = f"""
WITH asks AS (
    SELECT * FROM unnest($1::text[], $2::int[], $3::float8[], $4::float8[]) AS a(key, want, rate, burst)),
first AS (
    INSERT INTO replay_ids AS r (id, seen_until)
    SELECT id, {_NOW} + w FROM unnest($5::text[], $6::float8[]) AS i(id, w) ORDER BY id
    ON CONFLICT (id) DO UPDATE SET seen_until = EXCLUDED.seen_until WHERE r.seen_until < {_NOW}
    RETURNING r.id),
leased AS (
    INSERT INTO rate_buckets AS b (key, tokens, at, granted)
    SELECT key, burst - want, {_NOW}, true FROM asks ORDER BY key
    ON CONFLICT (key) DO UPDATE SET
        granted = {_ASK.format(value=f"{_REFILLED} >= a.want")},
        tokens = {_ASK.format(value=f"{_REFILLED} - CASE WHEN {_REFILLED} >= a.want THEN a.want ELSE 0 END")},
        at = {_NOW}
    RETURNING b.key, b.granted, b.tokens)
SELECT false, id, NULL::boolean, NULL::float8 FROM first
UNION ALL SELECT true, key, granted, tokens FROM leased
"""
"""One batch: each replay id's first use (its row back: new, or seen longer
ago than its window; no row: a replay) and each lease (all the tokens it
wants or none, and the tokens left; the SET expressions all read the row as
it was). Rows are locked in key order, replay ids first. Parameters: the
leases' keys, tokens wanted, rates and bursts, then the replay ids and their
windows, each an array (``array_text``: keys are hex digests, ``_key``)."""

_PRUNE_REPLAY = f"""
DELETE FROM replay_ids WHERE id IN (SELECT id FROM replay_ids WHERE seen_until < {_NOW} LIMIT $1::int)
"""
_PRUNE_BUCKETS = f"""
DELETE FROM rate_buckets WHERE key IN (
    SELECT key FROM rate_buckets WHERE at < {_NOW} - $1::float8 LIMIT $2::int)
"""


@attrs.define(eq=False)
class _Check:
    """A replay id or a lease waiting for its batch."""

    key: str
    """A replay id, or a bucket's key (hashed: ``_key``)."""
    window: float = 0.0
    """A replay id's window."""
    want: int = 0
    """A lease's tokens (0: this is a replay id)."""
    rate: float = 0.0
    burst: float = 0.0
    granted: bool = False
    """A replay id: first use; a lease: all tokens given."""
    left: float = 0.0
    """A lease: the bucket's tokens after it."""
    error: BaseException | None = None
    done: trio.Event = attrs.field(factory=trio.Event)
    """Its batch was answered."""


class SharedLimits:
    """The connections the checks share (opened on first use) and the batches they go in."""

    def __init__(self, url: str, *, pool_size: int = POOL_SIZE) -> None:
        self._url = url
        self._idle: list[TrioConnection] = []
        """Connections not running a batch (at most ``pool_size``: one per batch in flight)."""
        self._in_flight = trio.Semaphore(min(BATCHES_IN_FLIGHT, pool_size))
        self._waiting: list[_Check] = []
        self._gathering = False
        self._replay_ids: set[str] = set()
        """The replay ids waiting or in flight: a second check of one is a replay."""
        self._batches = itertools.count(1)
        self._full_after = 0.0
        """Seconds after which every budget's bucket is full again (rows that old can go)."""
        self.batches_sent = 0
        """Batches (transactions) sent so far: what a test or bench counts."""

    def add_budget(self, full_after: float) -> None:
        """A budget whose buckets are full again ``full_after`` seconds after their last check."""
        self._full_after = max(self._full_after, full_after)

    async def first_use(self, replay_id: str, window: float) -> bool:
        """True (and recorded for ``window`` seconds) if no replica saw ``replay_id`` within it."""
        if replay_id in self._replay_ids:
            return False  # the same id twice at once, here: one of them at least is a replay
        self._replay_ids.add(replay_id)
        try:
            check = await self._check(_Check(replay_id, window=window))
        finally:
            self._replay_ids.discard(replay_id)
        return check.granted

    async def lease(self, key: str, want: int, rate: float, burst: float) -> tuple[bool, float]:
        """Whether the bucket ``key`` gave ``want`` tokens (all or none), and its tokens left."""
        check = await self._check(_Check(key, want=want, rate=rate, burst=burst))
        return check.granted, check.left

    async def _check(self, check: _Check) -> _Check:
        self._waiting.append(check)
        if not self._gathering:
            # The first check of a batch waits GATHER for others to join, then
            # sends them all; the next check to arrive after that gathers the next.
            # Shielded: the checks of other requests that joined go with it (and a
            # query cancelled midway would leave its connection unusable).
            with trio.CancelScope(shield=True):
                self._gathering = True
                try:
                    await trio.sleep(GATHER)
                finally:
                    self._gathering = False
                batch, self._waiting = self._waiting, []
                async with self._in_flight:
                    await self._send(batch)
        await check.done.wait()  # the batch that took it (gathered by another request) is answered
        if check.error is not None:
            raise check.error
        return check

    async def _send(self, batch: list[_Check]) -> None:
        """Decide every check of ``batch`` (or fail them all with the error)."""
        pruning = next(self._batches) % PRUNE_EVERY == 0
        try:
            rows = await self._execute(batch, pruning)  # shielded by ``_check``
        except BaseException as exc:
            for check in batch:
                check.error = exc
                check.done.set()
            raise
        self.batches_sent += 1
        # Rows as PostgreSQL's text: booleans b"t" / b"f", the key, NULLs for a replay id's row.
        answers = {(is_lease == b"t", key.decode() if key else ""): (granted, left)
                   for is_lease, key, granted, left in rows}
        for check in batch:
            answer = answers.get((check.want > 0, check.key))
            if check.want:
                assert answer is not None and answer[1] is not None, "every lease's bucket row comes back"
                check.granted, check.left = answer[0] == b"t", float(answer[1])
            else:
                check.granted = answer is not None
            check.done.set()

    async def _execute(self, batch: Sequence[_Check], pruning: bool) -> list[Row]:
        """One batch on an idle connection (a new one if none is idle, or the
        idle ones are gone); a connection that failed is dropped, the next batch
        opens another. A batch is not sent again after a failure: its replay
        ids may have been recorded."""
        replays = [c for c in batch if not c.want]
        leases = [c for c in batch if c.want]
        params = [array_text(c.key for c in leases), array_text(c.want for c in leases),
                  array_text(repr(c.rate) for c in leases), array_text(repr(c.burst) for c in leases),
                  array_text(c.key for c in replays), array_text(repr(c.window) for c in replays)]
        db = await self._idle_or_new()
        try:
            for attempt in range(DEADLOCK_RETRIES):
                try:
                    rows = await db.execute_prepared(b"limits_batch", _BATCH, params)
                    break
                except psycopg.errors.DeadlockDetected:
                    if attempt == DEADLOCK_RETRIES - 1:
                        raise
            if pruning:
                await db.execute(_PRUNE_REPLAY, [str(PRUNE_BATCH).encode()])
                await db.execute(_PRUNE_BUCKETS, [repr(self._full_after).encode(), str(PRUNE_BATCH).encode()])
        except BaseException:
            db.discard()
            raise
        self._idle.append(db)
        return rows

    async def _idle_or_new(self) -> TrioConnection:
        """An idle connection that is still there (a server restarted since leaves
        every idle one dead: each is dropped unused), else a new one."""
        while self._idle:
            db = self._idle.pop()
            if not db.lost():
                return db
            db.discard()
        return await self._connect()

    async def _connect(self) -> TrioConnection:
        """A connection whose commits do not wait for the disk (see the module docstring)."""
        db = await connect_trio(self._url)
        try:
            await db.execute("SET synchronous_commit = off")
            await db.execute(DEFAULT_TIMEOUTS)
        except BaseException:
            db.discard()
            raise
        return db

    def close(self) -> None:
        for db in self._idle:
            db.discard()
        self._idle.clear()


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

    async def first_use(self, key: str, signed_at: float) -> bool:
        # By the database's clock, every replica's the same (``signed_at`` not needed).
        return await self._limits.first_use(_key(key), self._window)


class SharedRateBudget:
    """Token buckets in ``rate_buckets``, one row per ``scope`` and key, taken
    from in leases (``_token_leases``)."""

    def __init__(self, limits: SharedLimits, scope: str, per_minute: int, *,
                 lease_lifetime: float = LEASE_LIFETIME, lease_max: int = LEASE_MAX) -> None:
        shape = RateLimiter(per_minute)  # the same rate and burst as one process's limiter
        self._limits = limits
        self._scope = scope
        self._per_minute = per_minute
        self._leases = TokenLeases(rate=shape.rate, burst=shape.burst, lifetime=lease_lifetime, max_size=lease_max)
        limits.add_budget(shape.burst / shape.rate)
        self._asking: dict[str, trio.Event] = {}
        """Keys this process is asking the bucket for now: one lease at a time per key."""

    @property
    def per_minute(self) -> int:
        return self._per_minute

    async def acquire(self, key: str) -> float:
        leases = self._leases
        while True:
            answer = leases.take(key, time.monotonic())
            if answer is not None:
                return answer
            asking = self._asking.get(key)
            if asking is not None:  # its answer may do for this request too
                await asking.wait()
                continue
            asking = self._asking[key] = trio.Event()
            try:
                want = leases.want(key, time.monotonic())
                granted, left = await self._limits.lease(
                    _key(f"{self._scope}\x00{key}"), want, leases.rate, leases.burst)
                if granted:
                    leases.leased(key, want, left, time.monotonic())
                else:
                    wait = leases.refused(key, want, left, time.monotonic())
                    if wait is not None:
                        return wait
            finally:
                del self._asking[key]
                asking.set()


def _key(text: str) -> str:
    """A fixed-size key for any text a client sends (PostgreSQL text takes no NUL)."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
