"""The health checks' store read gives up with its caller: with PostgreSQL
away, each waited 10 s for a pooled connection whatever the caller's bound
(``/health`` took 10 s against its documented 2), and given-up probes held the
reads' places, which delayed the recovery."""

from __future__ import annotations

import functools
import threading
from typing import Any

import pytest
import trio

from tests.store.conftest import Store


async def test_a_check_whose_caller_gave_up_is_left_to_finish_in_its_thread(store: Store) -> None:
    reader = store.reader
    release = threading.Event()
    original = reader._checker.check
    reader._checker.check = lambda: (release.wait(30), original())[1]  # type: ignore[method-assign]  # a database that hangs
    try:
        with trio.fail_after(10):  # far below the hang: the check did not wait for its thread
            for _ in range(3):  # later ones wait for the first's place, and give up as well
                with trio.move_on_after(0.2) as given_up:
                    await reader.check()
                assert given_up.cancelled_caught
    finally:
        release.set()
    reader._checker.check = original  # type: ignore[method-assign]
    with trio.fail_after(30):
        await reader.check()  # the database back: checks answer again
        assert await reader.deployments() == []  # and the reads never lost their places


async def test_a_long_read_holds_up_neither_other_reads_nor_the_checks(store: Store,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite the reads had one connection: a listing of 2 million commands
    at a far offset (2.5 s) held every other tenant's reads behind it, and the
    health checks too (``/health/ready`` 503)."""
    reader = store.reader
    release, entered = threading.Event(), threading.Event()
    kind = type(reader._reader)
    audit = kind.audit

    def hanging(self: Any, *args: Any, **kwargs: Any) -> Any:
        entered.set()
        release.wait(30)
        return audit(self, *args, **kwargs)

    monkeypatch.setattr(kind, "audit", hanging)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(functools.partial(reader.audit, "t", action=None, actor=None, since=None, until=None,
                                             limit=10, offset=0))
        assert await trio.to_thread.run_sync(entered.wait, 10)
        try:
            with trio.fail_after(10):  # far below the hang
                await reader.check()
                assert await reader.deployments() == []
        finally:
            release.set()
