"""A deployment's queue actor beside another replica's queue for the same
deployment (a second queue actor on the same store, as another server process
would run): what the other commits reaches it as ``Refresh``, and a request
whose command the other changed first is decided again on what it is now."""

from __future__ import annotations

import time
from datetime import UTC, datetime

import attrs
import pytest

from tests.actors.test_deployment_queue import Held, audit, command, new_poll, queue, settings, wall  # noqa: F401 - fixtures
from trioscope.actors.deployment_queue import Cancel, Create, Refresh, Reload, Report, Snapshot, queue_spec
from trioscope.actors.log_follows import Entries, StartFollow
from trioscope.domain.commands import CommandReport, CommandStatus, LogEntry
from trioscope.domain.log_follows import FollowEnded
from trioscope.runtime import ActorRef
from trioscope.system import LOG_FOLLOWS, QUEUES, STORE


def other_replica(queue, settings) -> ActorRef:  # noqa: ANN001 - the fixtures' tuples
    deployment_hash, _, reader, system = queue
    spec = attrs.evolve(queue_spec(deployment_hash, settings, store=system.lookup(STORE), reader=reader),
                        name=f"{deployment_hash}-replica")
    return system.lookup(QUEUES).ensure_child(spec)


async def test_a_command_created_by_the_other_replica_reaches_a_waiting_poll_on_refresh(queue, settings) -> None:
    deployment_hash, here, reader, _ = queue
    there = other_replica(queue, settings)
    waiting = Held()
    assert await here.ask(waiting.poll) is None
    created = await there.ask(Create(command(deployment_hash, 1), audit("command.create")))
    assert waiting.answer() is None  # nothing told this queue yet
    await here.ask(Refresh(created))
    delivered = waiting.answer()
    assert delivered is not None and delivered.id == "cmd_1"
    assert (await reader.command("cmd_1")).status is CommandStatus.SENT


async def test_a_refresh_older_than_what_the_queue_knows_changes_nothing(queue, settings) -> None:
    deployment_hash, here, reader, _ = queue
    created = await here.ask(Create(command(deployment_hash, 2), audit("command.create")))
    delivered = await here.ask(new_poll())
    assert delivered.id == "cmd_2"
    await here.ask(Report(CommandReport(command_id="cmd_2", deployment_hash=deployment_hash, status="success", result={}), "agent"))
    await here.ask(Refresh(created))  # the change feed's read of an earlier version, late
    assert await here.ask(Snapshot()) == []  # not brought back
    assert await here.ask(new_poll()) is None


async def test_a_cancel_after_the_other_replica_delivered_asks_the_agent(queue, settings) -> None:
    deployment_hash, here, reader, _ = queue
    await here.ask(Create(command(deployment_hash, 3), audit("command.create")))
    there = other_replica(queue, settings)
    assert (await there.ask(new_poll())).id == "cmd_3"  # delivered there; this queue still holds it queued
    cancelled = await here.ask(Cancel("cmd_3", audit("command.cancel")))
    assert (cancelled.status, cancelled.cancel_requested) == (CommandStatus.SENT, True)
    stored = await reader.command("cmd_3")
    assert [h.status for h in stored.history] == [CommandStatus.QUEUED, CommandStatus.SENT, CommandStatus.SENT]


async def test_a_report_for_a_command_the_other_replica_delivered_is_taken(queue, settings) -> None:
    deployment_hash, here, reader, _ = queue
    await here.ask(Create(command(deployment_hash, 4), audit("command.create")))
    there = other_replica(queue, settings)
    assert (await there.ask(new_poll())).id == "cmd_4"
    done, changed = await here.ask(Report(CommandReport(command_id="cmd_4", deployment_hash=deployment_hash, status="success", result={}), "agent"))
    assert changed and done.status is CommandStatus.COMPLETED
    assert (await reader.command("cmd_4")).status is CommandStatus.COMPLETED


@pytest.mark.parametrize("learnt_by", ["refresh", "reload"])
async def test_a_follow_whose_command_the_other_replica_finished_ends_where_it_was_started(
        queue, settings, learnt_by: str) -> None:  # noqa: ANN001 - the fixtures
    """The follow lives where the user started it; the command finished on the
    other replica (its agent's report there). This replica learns of it by the
    change feed (``Refresh``) or by reading every open command again after the
    feed reconnected (``Reload``): either way the follow ends (a reviewer's:
    only ``Refresh`` ended it) and its places are free."""
    deployment_hash, _, reader, system = queue
    follows = system.lookup(LOG_FOLLOWS)
    here = system.lookup(QUEUES).ensure_child(attrs.evolve(
        queue_spec(deployment_hash, settings, store=system.lookup(STORE), reader=reader, follows_path=LOG_FOLLOWS),
        name=f"{deployment_hash}-here"))
    follow = attrs.evolve(command(deployment_hash, 5), type="docker.logs",
                          parameters={"follow": True, "container": "web"})
    await here.ask(Create(follow, audit("command.create")))
    there = other_replica(queue, settings)  # another process's (it reads the command as it starts): not these follows
    await follows.ask(StartFollow("cmd_5", "t", "u", deployment_hash, "web", 300.0, time.time()))
    assert (await there.ask(new_poll())).id == "cmd_5"
    done, _ = await there.ask(Report(CommandReport(command_id="cmd_5", deployment_hash=deployment_hash,
                                                   status="success", result={}), "agent"))
    line = LogEntry(timestamp=datetime.now(UTC), level="info", message="still?", source="stdout")
    assert (await follows.ask(Entries(deployment_hash, "cmd_5", (line,), time.time()))).accepted == (0,)
    await here.ask(Refresh(done) if learnt_by == "refresh" else Reload())
    with pytest.raises(FollowEnded) as ended:
        await follows.ask(Entries(deployment_hash, "cmd_5", (line,), time.time()))
    assert ended.value.reason == "finished"
