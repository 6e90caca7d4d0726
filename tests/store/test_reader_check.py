"""The health checks' store read gives up with its caller: with PostgreSQL
away, each waited 10 s for a pooled connection whatever the caller's bound
(``/health`` took 10 s against its documented 2), and given-up probes held the
reads' places, which delayed the recovery."""

from __future__ import annotations

import threading

import trio

from tests.store.conftest import Store


async def test_a_check_whose_caller_gave_up_is_left_to_finish_in_its_thread(store: Store) -> None:
    reader = store.reader
    release = threading.Event()
    original = reader._reader.check
    reader._reader.check = lambda: (release.wait(30), original())[1]  # type: ignore[method-assign]  # a database that hangs
    try:
        with trio.fail_after(10):  # far below the hang: the check did not wait for its thread
            for _ in range(3):  # later ones wait for the first's place, and give up as well
                with trio.move_on_after(0.2) as given_up:
                    await reader.check()
                assert given_up.cancelled_caught
    finally:
        release.set()
    reader._reader.check = original  # type: ignore[method-assign]
    with trio.fail_after(30):
        await reader.check()  # the database back: checks answer again
        assert await reader.deployments() == []  # and the reads never lost their places
