"""Stopping the asyncio thread nats-py runs in (``AsyncioThread.stop``): the
coroutines still running on its loop end before the loop is closed."""

from __future__ import annotations

import asyncio
import gc
import logging
import threading

import pytest
import trio

from trioscope.bus import AsyncioThread
from trioscope.bus import _loop


async def test_a_coroutine_whose_caller_went_away_just_before_the_stop_ends_before_the_loop_closes(
        caplog: pytest.LogCaptureFixture) -> None:
    """As at a stop while the bus is unreachable: the attempt to connect is
    cancelled by Trio and the loop stopped right after."""
    thread = AsyncioThread()
    thread.start()
    started, ended = threading.Event(), threading.Event()

    async def connecting() -> None:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            await asyncio.sleep(0.05)  # closing what it opened, as nats.connect does when cancelled
            ended.set()
            raise

    async with trio.open_nursery() as nursery:
        nursery.start_soon(thread.run, connecting)
        assert await trio.to_thread.run_sync(started.wait, 10)  # under way in the loop, then its caller goes
        nursery.cancel_scope.cancel()
    thread.stop()  # the coroutine's cancellation and the stop arrive together
    assert ended.is_set() and thread.loop.is_closed()
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        gc.collect()
    assert "Task was destroyed but it is pending" not in caplog.text


async def test_tasks_started_on_the_loop_are_cancelled_and_their_failures_retrieved_at_the_stop(
        caplog: pytest.LogCaptureFixture) -> None:
    thread = AsyncioThread()
    thread.start()
    ended: list[str] = []
    tasks: list[asyncio.Task[None]] = []

    async def reading() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            ended.append("reading")

    async def failing_on_cancel() -> None:
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            raise RuntimeError("cleanup failed") from None

    async def start_both() -> None:
        loop = asyncio.get_running_loop()
        tasks.append(loop.create_task(reading(), name="reading"))
        tasks.append(loop.create_task(failing_on_cancel(), name="failing"))
        await asyncio.sleep(0)

    await thread.run(start_both)
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        thread.stop()
        gc.collect()
    assert ended == ["reading"] and thread.loop.is_closed()
    assert "was destroyed" not in caplog.text and "never retrieved" not in caplog.text


async def test_a_task_that_outlasts_its_cancellation_is_left_after_the_grace_period(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    monkeypatch.setattr(_loop, "STOP_GRACE", 0.2)
    thread = AsyncioThread()
    thread.start()
    release = threading.Event()

    async def stubborn() -> None:
        while not release.is_set():
            try:
                await asyncio.sleep(0.01)
            except asyncio.CancelledError:
                pass

    tasks: list[asyncio.Task[None]] = []

    async def start() -> None:
        tasks.append(asyncio.get_running_loop().create_task(stubborn(), name="stubborn"))

    await thread.run(start)
    with caplog.at_level(logging.WARNING, logger=_loop.__name__):
        thread.stop(timeout=5.0)
    assert not thread._thread.is_alive()  # the thread ended all the same
    assert "did not end within" in caplog.text and "stubborn" in caplog.text
    release.set()  # and run here to its end, not destroyed pending with the loop
    thread.loop.run_until_complete(asyncio.wait(asyncio.all_tasks(thread.loop)))
    thread.loop.close()


def test_a_thread_never_started_closes_its_loop_at_the_stop() -> None:
    thread = AsyncioThread()
    thread.stop()
    assert thread.loop.is_closed()
