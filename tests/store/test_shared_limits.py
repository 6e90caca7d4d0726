"""The replay window and rate limits in PostgreSQL (``_shared_limits``), two
``SharedLimits`` standing for two processes of one installation."""

from __future__ import annotations

import time
from collections.abc import Iterator

import psycopg
import pytest
import trio

from trioscope.store import _shared_limits
from trioscope.store._postgres_migrations import migrate
from trioscope.store._shared_limits import SharedLimits, SharedRateBudget, SharedReplayIds

WINDOW = 600.0
NOW = time.time()
"""A signing time (the shared ids go by the database's clock: not read)."""


@pytest.fixture
def processes(postgres_url: str) -> Iterator[tuple[SharedLimits, SharedLimits]]:
    with psycopg.connect(postgres_url, autocommit=True) as db:
        migrate(db)
    both = SharedLimits(postgres_url), SharedLimits(postgres_url)
    try:
        yield both
    finally:
        for limits in both:
            limits.close()


async def concurrently(*calls: object) -> list[object]:
    """Every call started at once; their answers in order."""
    answers: list[object] = [None] * len(calls)

    async def one(i: int, call: object) -> None:
        answers[i] = await call  # type: ignore[misc]  # the coroutines given

    async with trio.open_nursery() as nursery:
        for i, call in enumerate(calls):
            nursery.start_soon(one, i, call)
    return answers


async def test_checks_arriving_together_go_in_one_transaction(processes: tuple[SharedLimits, SharedLimits]) -> None:
    a, _ = processes
    replay = SharedReplayIds(a, WINDOW)
    answers = await concurrently(*(replay.first_use(f"agent/{n}", NOW) for n in range(30)))
    assert answers == [True] * 30
    assert a.batches_sent == 1  # all began in one pass of the scheduler: gathered into one batch


async def test_a_request_id_replayed_to_another_process_is_refused(
        processes: tuple[SharedLimits, SharedLimits]) -> None:
    a, b = processes
    assert await SharedReplayIds(a, WINDOW).first_use("agent/1", NOW)
    assert not await SharedReplayIds(b, WINDOW).first_use("agent/1", NOW)
    assert not await SharedReplayIds(a, WINDOW).first_use("agent/1", NOW)


async def test_one_request_id_twice_at_once_in_one_process_passes_once(
        processes: tuple[SharedLimits, SharedLimits]) -> None:
    a, _ = processes
    replay = SharedReplayIds(a, WINDOW)
    answers = await concurrently(*(replay.first_use(key, NOW) for key in ("agent/1", "agent/2", "agent/1")))
    assert answers[1] is True
    assert sorted([answers[0], answers[2]]) == [False, True]  # whichever Trio ran first


async def test_one_request_id_twice_at_once_in_two_processes_passes_once(
        processes: tuple[SharedLimits, SharedLimits]) -> None:
    answers = await concurrently(*(SharedReplayIds(p, WINDOW).first_use("agent/1", NOW) for p in processes * 3))
    assert sorted(map(bool, answers)) == [False] * 5 + [True]


async def test_a_limit_is_not_multiplied_by_the_processes_asking_at_once(
        processes: tuple[SharedLimits, SharedLimits]) -> None:
    budgets = [SharedRateBudget(p, "agent", 6) for p in processes]  # a burst of 10, then one every 10 s

    async def many(budget: SharedRateBudget) -> list[float]:
        return [await budget.acquire("agent-1") for _ in range(15)]

    started = time.monotonic()
    answers = await concurrently(*(many(budget) for budget in budgets * 4))
    refilled = int((time.monotonic() - started) // 10) + 1  # a token every 10 s (and one at the edge)
    waits = [wait for some in answers for wait in some]  # type: ignore[attr-defined]  # lists of floats
    # The burst once for eight askers in two processes (each alone would pass 10).
    assert 10 <= waits.count(0.0) <= 10 + refilled
    assert all(wait > 0 for wait in waits if wait)


async def test_a_busy_key_asks_the_database_for_tokens_in_leases(
        processes: tuple[SharedLimits, SharedLimits]) -> None:
    a, _ = processes
    budget = SharedRateBudget(a, "user", 60_000, lease_lifetime=60.0)
    assert [await budget.acquire("tenant\x00alice") for _ in range(100)] == [0.0] * 100
    # 1 + 2 + 4 + 8 + 16 + 16 x 5 leases (the share of a 6,000-token bucket does not bind)
    assert a.batches_sent == 10


async def test_a_refused_key_is_refused_here_until_the_bucket_has_a_token(
        processes: tuple[SharedLimits, SharedLimits]) -> None:
    a, _ = processes
    budget = SharedRateBudget(a, "agent", 1)  # a burst of 10, one a minute
    assert [await budget.acquire("agent-1") for _ in range(10)] == [0.0] * 10
    sent = a.batches_sent
    first = await budget.acquire("agent-1")
    assert 50 < first <= 60
    assert 0 < await budget.acquire("agent-1") <= first
    assert a.batches_sent == sent + 1


async def test_rows_whose_time_is_over_are_pruned_by_the_checks(
        processes: tuple[SharedLimits, SharedLimits], postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    a, _ = processes
    monkeypatch.setattr(_shared_limits, "PRUNE_EVERY", 1)
    await SharedRateBudget(a, "agent", 6).acquire("agent-1")  # a bucket full again 100 s after its last check
    await SharedReplayIds(a, WINDOW).first_use("agent/1", NOW)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        db.execute("UPDATE replay_ids SET seen_until = seen_until - %s", (WINDOW + 1,))
        db.execute("UPDATE rate_buckets SET at = at - 101")
    assert await SharedReplayIds(a, WINDOW).first_use("agent/2", NOW)
    with psycopg.connect(postgres_url, autocommit=True) as db:
        left = db.execute("SELECT (SELECT count(*) FROM replay_ids), (SELECT count(*) FROM rate_buckets)").fetchone()
    assert left == (1, 0)  # only the id just seen


async def test_checks_commit_without_waiting_for_the_disk(processes: tuple[SharedLimits, SharedLimits]) -> None:
    a, _ = processes
    assert await SharedReplayIds(a, WINDOW).first_use("agent/1", NOW)
    [db] = a._idle  # the connection the check used, idle again
    assert await db.execute("SHOW synchronous_commit") == [(b"off",)]
