"""Deployments' command queues as the edge reaches them: through the queues'
owner, which starts a queue that is not running, so that no request is lost to
a queue stopping."""

from __future__ import annotations

from typing import Any

from trioscope.actors.deployment_queue import Report
from trioscope.actors.queue_owner import ForDeployment
from trioscope.domain.commands import Command, CommandReport, report_outcome
from trioscope.runtime import Cutoff

from ._agent_presence import finished_running
from ._services import services


async def ask_queue(deployment_hash: str, message: Any, timeout: float = 10.0, cutoff: Cutoff | None = None) -> Any:
    """Ask the deployment's queue actor, through the queues' owner (which
    starts it if it is not running and forwards the message: the queue
    answers); ``cutoff`` as ``ActorRef.ask``'s."""
    return await services().queue_owner.ask(ForDeployment(deployment_hash, message), timeout, cutoff=cutoff)


async def report_to_queue(agent_id: str, report: CommandReport) -> tuple[Command | None, bool]:
    """An agent's report of a command (over HTTP or its socket), to its
    deployment's queue: answered with the command as it stands (None: no such
    command) and whether the report changed it. A final one ends the agent's
    running it (``finished_running``), whatever the queue made of it (refused
    as conflicting, or not answered): the agent says it is done with it."""
    try:
        answer: tuple[Command | None, bool] = await ask_queue(report.deployment_hash, Report(report, agent_id))
        return answer
    finally:
        if report_outcome(report) is not None:
            finished_running(agent_id, report.command_id)
