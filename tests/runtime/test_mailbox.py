"""Mailbox: bounded, FIFO, closable, cancellation-safe."""

import pytest
import trio
import trio.testing

from trioscope.runtime import ActorStopped, MailboxFull
from trioscope.runtime._mailbox import Mailbox, MailboxClosed


async def test_fifo_and_full_at_capacity():
    box = Mailbox(2, "/t")
    box.put_nowait("a")
    box.put_nowait("b")
    with pytest.raises(MailboxFull) as info:
        box.put_nowait("c")
    assert info.value.path == "/t" and info.value.capacity == 2
    assert [box.get_nowait(), box.get_nowait()] == ["a", "b"]
    with pytest.raises(trio.WouldBlock):
        box.get_nowait()


async def test_put_waits_for_room():
    box = Mailbox(1, "/t")
    box.put_nowait("first")
    done = []

    async def producer():
        await box.put("second")
        done.append(True)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        assert done == [] and len(box) == 1
        assert await box.get() == "first"
        await trio.testing.wait_all_tasks_blocked()
        assert done == [True]
    assert box.get_nowait() == "second"


async def test_close_refuses_new_items_but_keeps_queued_ones():
    box = Mailbox(4, "/t")
    box.put_nowait(1)
    box.close()
    with pytest.raises(ActorStopped):
        box.put_nowait(2)
    assert await box.get() == 1
    with pytest.raises(MailboxClosed):
        await box.get()


async def test_close_wakes_a_waiting_sender_with_actor_stopped():
    box = Mailbox(1, "/t")
    box.put_nowait("x")
    async with trio.open_nursery() as nursery:
        errors = []

        async def producer():
            try:
                await box.put("y")
            except ActorStopped as exc:
                errors.append(exc)

        nursery.start_soon(producer)
        await trio.testing.wait_all_tasks_blocked()
        box.close()
    assert len(errors) == 1


async def test_cancelled_get_loses_nothing():
    box = Mailbox(4, "/t")
    with trio.move_on_after(0):
        await box.get()
    box.put_nowait("kept")
    with trio.CancelScope() as scope:
        scope.cancel()
        with pytest.raises(trio.Cancelled):
            await box.get()
    assert box.get_nowait() == "kept"


async def test_high_water_mark_and_take_all():
    box = Mailbox(10, "/t")
    for i in range(5):
        box.put_nowait(i)
    box.get_nowait()
    box.put_nowait(5)
    assert box.high_water == 5
    assert box.take_all() == [1, 2, 3, 4, 5]
    assert len(box) == 0 and box.high_water == 5


def test_capacity_must_be_positive():
    with pytest.raises(ValueError, match="invalid mailbox capacity: 0"):
        Mailbox(0, "/t")
