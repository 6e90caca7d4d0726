"""The rules that pace the resets of many clients (``ResetBudget``), with plain
values: an address's turns one at a time and within its share of time, the
addresses waiting taking turns, and the frames held by an address and by all
within their room."""

from __future__ import annotations

import math

import pytest

from trioscope.domain.reset_budget import ResetBudget

MIB = 1024 * 1024


def budget(share: float = 1.0, builds: int = 2, per_address: int = 10 * MIB, total: int = 100 * MIB) -> ResetBudget:
    return ResetBudget(share=share, builds=builds, bytes_per_address=per_address, total_bytes=total)


@pytest.mark.parametrize(("share", "builds", "per_address", "total"),
                         [(0.0, 1, 1, 1), (1.5, 1, 1, 1), (0.5, 0, 1, 1), (0.5, 1, 0, 1), (0.5, 1, 1, 0)])
def test_an_invalid_budget_names_its_values(share, builds, per_address, total):
    with pytest.raises(ValueError, match=f"share {share}, builds {builds}"):
        ResetBudget(share=share, builds=builds, bytes_per_address=per_address, total_bytes=total)


def test_an_address_builds_one_at_a_time_first_come_first():
    rules = budget()
    for ticket in ("a1", "a2", "a3"):
        rules.ask("A", ticket)
    assert rules.grant(0.0) == ["a1"]
    assert rules.grant(0.0) == []  # a1 still has the address's turn
    rules.done("A", 0.0, took=0.0)
    assert rules.grant(0.0) == ["a2"]


def test_after_a_build_the_address_waits_for_its_share_of_time():
    rules = budget(share=0.25)
    rules.ask("A", "a1")
    rules.ask("A", "a2")
    assert rules.grant(10.0) == ["a1"]
    rules.done("A", 10.0, took=0.5)  # a quarter of the time: 1.5 s more without building
    assert rules.wake_at("A", "a2", 10.0) == pytest.approx(11.5)
    assert rules.wake_at("A", "a1", 10.0) == math.inf  # not waiting
    assert rules.grant(11.4) == []
    assert rules.wake_at("A", "a2", 11.5) == math.inf  # its time has come: a grant, or another wait
    assert rules.grant(11.5) == ["a2"]


def test_a_new_client_of_a_paced_address_waits_too():
    rules = budget(share=0.5)
    rules.ask("A", "a1")
    rules.grant(0.0)
    rules.done("A", 0.0, took=2.0)
    rules.ask("A", "a2")  # the address's time is not over, though nothing else waited
    assert rules.grant(1.0) == []
    assert rules.grant(2.0) == ["a2"]


def test_addresses_take_turns_and_the_server_builds_at_most_builds_at_once():
    rules = budget(builds=2)
    for ticket in ("a1", "a2", "a3"):
        rules.ask("A", ticket)
    rules.ask("B", "b1")
    rules.ask("C", "c1")
    assert rules.grant(0.0) == ["a1", "b1"]  # C waits for a free build, though it is its turn
    rules.done("A", 0.0, took=0.0)
    assert rules.grant(0.0) == ["c1"]  # not a2: A has just had its turn
    rules.done("B", 0.0, took=0.0)
    assert rules.grant(0.0) == ["a2"]


def test_a_cancelled_ticket_is_never_granted():
    rules = budget()
    rules.ask("A", "a1")
    rules.ask("A", "a2")
    rules.cancel("A", "a1", 0.0)
    assert rules.grant(0.0) == ["a2"]
    rules.done("A", 0.0, took=0.0)
    rules.cancel("A", "gone", 0.0)  # one granted or unknown: nothing happens
    assert rules.grant(0.0) == []


def test_a_frame_several_clients_of_an_address_hold_counts_once():
    rules = budget(per_address=10 * MIB)
    for _ in range(100):
        rules.hold("A", 1, 4 * MIB)
    assert rules.holds("A") == rules.held_bytes == 4 * MIB
    for _ in range(99):
        rules.release("A", 1, 0.0)
    assert rules.holds("A") == 4 * MIB
    rules.release("A", 1, 0.0)
    assert rules.holds("A") == rules.held_bytes == 0


def test_no_turn_while_the_address_holds_its_room_until_it_is_sent():
    rules = budget(per_address=10 * MIB)
    rules.hold("A", 1, 6 * MIB)
    rules.hold("A", 2, 6 * MIB)  # over: a frame may take it past, but none starts beyond
    rules.ask("A", "a1")
    rules.ask("B", "b1")
    assert rules.grant(0.0) == ["b1"]
    assert not rules.may_take("A", 3)  # a frame built already (for another client) too
    assert rules.may_take("A", 2)  # one it holds costs it nothing more
    rules.release("A", 1, 0.0)
    assert rules.grant(0.0) == ["a1"]


def test_an_address_that_holds_nothing_may_start_one_frame_however_large():
    rules = budget(per_address=MIB, total=2 * MIB)
    rules.ask("A", "a1")
    assert rules.grant(0.0) == ["a1"]
    rules.hold("A", 1, 50 * MIB)
    rules.done("A", 0.0, took=0.0)
    rules.ask("A", "a2")
    assert rules.grant(0.0) == []


def test_beyond_the_total_only_frames_held_already_may_be_taken():
    rules = budget(per_address=10 * MIB, total=10 * MIB)
    rules.hold("A", 1, 6 * MIB)
    rules.hold("B", 2, 6 * MIB)
    rules.ask("C", "c1")
    assert rules.grant(0.0) == []
    assert rules.may_take("C", 1)  # the same bytes, sent to one more client
    assert not rules.may_take("C", 3)
    rules.hold("C", 1, 6 * MIB)
    assert rules.held_bytes == 12 * MIB and rules.holds("C") == 6 * MIB
    rules.release("A", 1, 0.0)
    assert rules.held_bytes == 12 * MIB  # C still holds it
    rules.release("B", 2, 0.0)
    assert rules.grant(0.0) == ["c1"]


def test_addresses_that_cost_nothing_any_more_are_forgotten():
    rules = budget(share=0.5)
    for index in range(1000):
        address = f"10.0.{index // 256}.{index % 256}"
        rules.ask(address, index)
        assert rules.grant(float(index)) == [index]
        rules.done(address, float(index), took=0.5)  # each waits 0.5 s after its build
        rules.hold(address, index, 100)
        rules.release(address, index, float(index))
    assert len(rules._addresses) <= 128


async def test_waiting_clients_get_their_turns_in_time_also_when_the_first_leaves(autojump_clock):
    """``ResetTurns`` under a mock clock: each turn ends after a second of
    work, so the address's next starts 3 s later (a quarter of the time); the
    first client waiting leaves meanwhile, and the next still has its turn then."""
    import trio

    from trioscope.actors.reset_turns import ResetTurns

    turns = ResetTurns(budget(share=0.25))
    started: dict[str, float] = {}

    async def client(name: str, task_status: trio.TaskStatus[trio.CancelScope] = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            turn = await turns.turn("A")
            started[name] = trio.current_time()
            turn.done(took=1.0)

    with trio.fail_after(60):  # mock seconds: a client that is never woken fails, not hangs
        async with trio.open_nursery() as nursery:
            first = await turns.turn("A")  # the address is building
            scopes = [await nursery.start(client, f"c{index}") for index in range(4)]
            first.done(took=1.0)
            scopes[0].cancel()  # the first waiting leaves before its turn
    assert sorted(started) == ["c1", "c2", "c3"]
    assert [started[name] for name in ("c1", "c2", "c3")] == pytest.approx([3.0, 6.0, 9.0])
