"""Agents' reports at the deployment queue actor, with the real store: a
report is the acknowledgement of a delivery the server gave back too soon,
only the agent that received a command reports on it, and a report that says
something else than the recorded outcome is no duplicate."""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from tests.actors.test_deployment_queue import Enrolled, Held, audit, command, new_poll, open_enrolled, open_queue
from tests.conftest import settings_in
from tests.waiting import eventually
from trioscope.actors.deployment_queue import Create, Report, Undeliverable
from trioscope.actors.refusals import ReportConflict
from trioscope.domain.commands import (
    AGENT_GONE, NOT_ACKNOWLEDGED, POLL_CLOSED, TIMED_OUT, CommandEvent, CommandReport, CommandStatus,
)


@pytest.fixture
def settings(tmp_path):
    base = settings_in(tmp_path)
    return attrs.evolve(base, commands=attrs.evolve(base.commands, timeout_grace=0.0))


@pytest.fixture
def wall() -> Callable[[], float]:
    """The queue's wall clock, moving with trio's clock (a ``MockClock`` jump moves it too)."""
    offset: list[float] = []

    def now() -> float:
        if not offset:
            offset.append(time.time() - trio.current_time())
        return offset[0] + trio.current_time()

    return now


@pytest.fixture
def clock() -> trio.testing.MockClock:
    """Real speed (the store works in threads), plus ``jump`` to reach a deadline at once."""
    return trio.testing.MockClock(rate=1.0)


queue_of = asynccontextmanager(open_queue)
"""A deployment's queue actor with no directory (any agent id may poll), closed however the test ends."""


def report(deployment_hash: str, command_id: str, status: str = "success", **fields: Any) -> CommandReport:
    return CommandReport(command_id=command_id, deployment_hash=deployment_hash, status=status, **fields)


async def delivered_to(e: Enrolled, agent_id: str, n: int) -> str:
    """Create command ``cmd_<n>`` and hand it to a poll of ``agent_id``; its id."""
    await e.queue.ask(Create(command(e.deployment_hash, n), audit("command.create")))
    delivery = await e.queue.ask(Held(agent_id=agent_id).poll)
    assert delivery is not None and delivery.id == f"cmd_{n}"
    return delivery.id  # type: ignore[no-any-return]


# ---- a report acknowledges a delivery given back too soon ----------------------------------------

@pytest.mark.parametrize("reason", [NOT_ACKNOWLEDGED, POLL_CLOSED])
async def test_a_report_of_a_command_given_back_unacknowledged_is_its_acknowledgement_and_result(
        settings, reason) -> None:
    # The socket closed before its ``received`` arrived, but the agent ran the
    # command: its report was refused (409 "not delivered"), and the next poll
    # got the command again (run twice, the first result lost).
    async with open_enrolled(settings) as e:
        command_id = await delivered_to(e, e.agent_id, 1)
        await e.queue.ask(Undeliverable((await e.reader.command(command_id)), reason))
        assert (await e.reader.command(command_id)).status is CommandStatus.QUEUED

        done, changed = await e.queue.ask(Report(report(e.deployment_hash, command_id, result={"ran": 1}),
                                                 e.agent_id))
        assert changed and (done.status, done.result) == (CommandStatus.COMPLETED, {"ran": 1})
        stored = await e.reader.command(command_id)
        assert [h.event.value for h in stored.history[1:]] == ["deliver", "return", "deliver", "complete"]
        assert stored.history[3].detail == {"reason": "acknowledged by a report", "agent_id": e.agent_id}
        assert await e.queue.ask(new_poll(agent_id=e.agent_id)) is None  # not handed out again


async def test_a_progress_report_of_a_command_given_back_makes_it_executing(settings) -> None:
    async with open_enrolled(settings) as e:
        command_id = await delivered_to(e, e.agent_id, 2)
        await e.queue.ask(Undeliverable((await e.reader.command(command_id)), NOT_ACKNOWLEDGED))
        running, changed = await e.queue.ask(Report(report(e.deployment_hash, command_id, "executing", progress=10),
                                                    e.agent_id))
        assert changed and running.status is CommandStatus.EXECUTING
        assert await e.queue.ask(new_poll(agent_id=e.agent_id)) is None


# ---- only the agent that received a command reports on it --------------------------------------

async def test_the_receiving_agent_is_recorded_with_the_delivery(settings) -> None:
    async with open_enrolled(settings) as e:
        command_id = await delivered_to(e, e.agent_id, 3)
        stored = await e.reader.command(command_id)
        assert stored.history[-1].detail == {"agent_id": e.agent_id}


async def test_a_report_from_an_agent_that_never_received_the_command_is_refused(settings) -> None:
    # agent 1 has the command; the deployment's enrollment is renewed and
    # agent 2 enrolled: agent 2 completed agent 1's command with its own result.
    async with open_enrolled(settings) as e:
        command_id = await delivered_to(e, e.agent_id, 4)
        newcomer = await e.enroll()
        with pytest.raises(ReportConflict):  # delivered to another agent; or failed already, its agent retired
            await e.queue.ask(Report(report(e.deployment_hash, command_id, result={"forged": True}), newcomer))

        async def ended() -> Any:
            stored = await e.reader.command(command_id)
            return stored if stored.status is CommandStatus.FAILED else None

        stored = await eventually(ended, deadline=10)
        assert stored.result is None and stored.error == AGENT_GONE


async def test_a_command_given_back_is_acknowledged_only_by_the_agent_it_was_given_to(settings) -> None:
    async with open_enrolled(settings) as e:
        command_id = await delivered_to(e, e.agent_id, 5)
        await e.queue.ask(Undeliverable((await e.reader.command(command_id)), NOT_ACKNOWLEDGED))
        newcomer = await e.enroll()
        with pytest.raises(ReportConflict):
            await e.queue.ask(Report(report(e.deployment_hash, command_id), newcomer))
        # Nor does its poll naming the command as one it has (``last_command_id``).
        assert await e.queue.ask(new_poll(agent_id=newcomer, skip=command_id)) is None
        assert (await e.reader.command(command_id)).status is CommandStatus.QUEUED
        assert await e.queue.ask(new_poll(agent_id=newcomer)) is not None  # still queued: it goes out
        stored = await e.reader.command(command_id)
        assert stored.status is CommandStatus.SENT and stored.history[-1].detail == {"agent_id": newcomer}


# ---- a late report that says something else is no duplicate -----------------------------------

async def test_a_late_failure_after_the_time_out_is_recorded_not_answered_as_a_duplicate(settings, wall, clock) -> None:
    async with queue_of(settings, wall) as (deployment_hash, ref, reader, _):
        await ref.ask(Create(attrs.evolve(command(deployment_hash, 6), timeout_seconds=1), audit("command.create")))
        assert (await ref.ask(new_poll(agent_id="a"))).id == "cmd_6"
        clock.jump(2)

        async def timed_out() -> bool:
            return (await reader.command("cmd_6")).status is CommandStatus.FAILED

        await eventually(timed_out, deadline=5)
        # The agent's own "timeout" says what the server recorded: a repeat.
        same, changed = await ref.ask(Report(report(deployment_hash, "cmd_6", "timeout"), "a"))
        assert not changed and (same.status, same.error) == (CommandStatus.FAILED, TIMED_OUT)
        # Its error is another outcome: recorded beside the time-out (not "duplicate", which said it
        # was recorded already), once; the status and error stay the time-out's.
        late, changed = await ref.ask(Report(report(deployment_hash, "cmd_6", "failed", error="disk full"), "a"))
        assert changed and late.history[-1].event is CommandEvent.LATE_OUTCOME
        assert late.history[-1].detail["error"] == "disk full"
        with pytest.raises(ReportConflict, match="late outcome was recorded already"):
            await ref.ask(Report(report(deployment_hash, "cmd_6", "failed", error="out of memory"), "a"))
        stored = await reader.command("cmd_6")
        assert (stored.status, stored.error) == (CommandStatus.FAILED, TIMED_OUT)


async def test_a_repeated_final_report_is_a_duplicate_and_a_different_error_is_not(settings, wall) -> None:
    async with queue_of(settings, wall) as (deployment_hash, ref, _, _):
        await ref.ask(Create(command(deployment_hash, 7), audit("command.create")))
        assert (await ref.ask(new_poll(agent_id="a"))).id == "cmd_7"
        failed = report(deployment_hash, "cmd_7", "failed", error="exit 1", result={"code": 1})
        _, changed = await ref.ask(Report(failed, "a"))
        assert changed
        _, changed = await ref.ask(Report(failed, "a"))
        assert not changed
        with pytest.raises(ReportConflict):
            await ref.ask(Report(attrs.evolve(failed, error="exit 2"), "a"))
