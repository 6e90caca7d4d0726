"""A report from the report stream whose handing on fails in the roster is
left out, counted and logged, and the rest of its batch handed on: the roster
does not crash on it, which would drop the batch and have the report feed
offer it again, bad report included, for as long as the stream keeps it."""

from __future__ import annotations

import logging

import attrs
import pytest

from tests.actors.test_roster_actor import arrived, restarts, tracked
from trioscope.actors.roster import ReportArrived, ReportsArrived
from trioscope.runtime import open_actor_system
from trioscope.system import ROSTER, supervision_tree


def named(index: int, agent_id: str) -> ReportArrived:
    """Agent ``index``'s report under ``agent_id``: one the HTTP edge and the
    stream's reader refuse, so only a bug past them brings one here."""
    report = arrived(index)
    return attrs.evolve(report, report=attrs.evolve(report.report, agent_id=agent_id))


async def test_a_report_whose_handing_on_fails_is_left_out_and_the_rest_of_the_batch_handed_on(
        settings, caplog: pytest.LogCaptureFixture) -> None:
    batch = (arrived(1), named(3, ""), arrived(2), named(4, "agent/4"))
    async with open_actor_system(supervision_tree(settings)) as system:
        roster = system.lookup(ROSTER)
        with caplog.at_level(logging.DEBUG, logger="trioscope.actors.roster"):
            answer = await roster.ask(ReportsArrived(batch))
        assert (answer.count, answer.left_out) == (4, 2)
        assert tracked(system) == {"agent-1", "agent-2"}
        assert restarts(system, ROSTER) == 0
        # The roster goes on: a later batch is handed on as any.
        assert (await roster.ask(ReportsArrived((arrived(5),)))).count == 1
        assert "agent-5" in tracked(system)
    failures = [r for r in caplog.records if getattr(r, "event", None) == "bus_report_failed"]
    # Both failed alike (the actor's name): the first logged with its traceback, the second at debug level.
    assert [(r.levelno, r.exc_info is not None) for r in failures] == [(logging.ERROR, True), (logging.DEBUG, False)]
    assert "invalid child name" in failures[0].getMessage()
