"""``Handoff``: one value from an actor to a task that waits for it later."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from trioscope.runtime import Handoff


async def waiting(handoff: Handoff[str], got: list[str], nursery: trio.Nursery) -> None:
    """A task waiting on ``handoff`` (appending what it receives to ``got``), once it waits."""
    async def wait() -> None:
        got.append(await handoff.receive())

    nursery.start_soon(wait)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_waiting_task_gets_the_value_given() -> None:
    handoff: Handoff[str] = Handoff()
    got: list[str] = []
    async with trio.open_nursery() as nursery:
        await waiting(handoff, got, nursery)
        assert handoff.give("cmd_1")
    assert got == ["cmd_1"]
    assert not handoff.holds


async def test_a_value_given_before_the_wait_is_held_for_it_and_only_one_is_taken() -> None:
    handoff: Handoff[str] = Handoff()
    assert handoff.give("cmd_1")
    assert not handoff.give("cmd_2")  # one value only
    assert handoff.holds
    assert await handoff.receive() == "cmd_1"
    with pytest.raises(trio.WouldBlock):
        handoff.receive_nowait()


async def test_once_the_waiter_closed_it_nothing_is_given() -> None:
    handoff: Handoff[str] = Handoff()
    handoff.close()
    assert handoff.closed
    assert not handoff.give("cmd_1")
    assert not handoff.holds


async def test_a_value_given_after_the_wait_was_cancelled_is_left_for_receive_nowait() -> None:
    handoff: Handoff[str] = Handoff()
    with trio.move_on_after(0):
        await handoff.receive()
    assert handoff.give("cmd_1")  # the waiter has not closed it yet
    assert handoff.receive_nowait() == "cmd_1"


async def test_ending_it_wakes_the_waiter_with_end_of_channel_and_refuses_values() -> None:
    handoff: Handoff[str] = Handoff()
    raised: list[type[BaseException]] = []

    async def wait() -> None:
        try:
            await handoff.receive()
        except trio.EndOfChannel as exc:
            raised.append(type(exc))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.testing.wait_all_tasks_blocked()
        handoff.end()
    assert raised == [trio.EndOfChannel]
    assert not handoff.give("cmd_1")
    with pytest.raises(trio.EndOfChannel):
        await handoff.receive()


async def test_only_one_value_is_given_even_while_the_waiter_has_not_run_yet() -> None:
    handoff: Handoff[str] = Handoff()
    got: list[str] = []
    async with trio.open_nursery() as nursery:
        await waiting(handoff, got, nursery)
        assert handoff.give("cmd_1")  # the waiter is rescheduled with it, not yet running
        assert not handoff.give("cmd_2")
    assert got == ["cmd_1"]
    assert not handoff.holds
