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


async def test_a_keyed_item_takes_the_place_and_turn_of_the_one_of_its_key_still_waiting():
    box = Mailbox(4, "/t", keyed_capacity=2)
    box.put_keyed_nowait("a", "a1")
    box.put_nowait("plain")
    box.put_keyed_nowait("b", "b1")
    box.put_keyed_nowait("a", "a2")
    assert (len(box), box.replaced) == (3, 1)
    assert [box.get_nowait() for _ in range(3)] == ["a2", "plain", "b1"]
    box.put_keyed_nowait("a", "a3")  # its earlier one was taken: queued anew, last
    assert box.get_nowait() == "a3"


async def test_keyed_items_have_a_capacity_of_their_own():
    box = Mailbox(1, "/t", keyed_capacity=1)
    box.put_nowait("plain")
    box.put_keyed_nowait("a", 1)  # a full mailbox still takes a key's item
    with pytest.raises(MailboxFull) as info:
        box.put_keyed_nowait("b", 1)
    assert info.value.capacity == 1
    box.put_keyed_nowait("a", 2)  # replacing takes no room
    with pytest.raises(MailboxFull):
        box.put_nowait("another")
    assert box.take_all() == ["plain", 2]
    box.put_keyed_nowait("b", 3)
    assert box.get_nowait() == 3


async def test_no_keyed_items_without_a_keyed_capacity_and_none_once_closed():
    box = Mailbox(4, "/t")
    with pytest.raises(MailboxFull):
        box.put_keyed_nowait("a", 1)
    box = Mailbox(4, "/t", keyed_capacity=4)
    box.close()
    with pytest.raises(ActorStopped):
        box.put_keyed_nowait("a", 1)
