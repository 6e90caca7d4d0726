"""Deployments' command queues as the edge reaches them: through the queues'
owner, which starts a queue that is not running, so that no request is lost to
a queue stopping."""

from __future__ import annotations

from typing import Any

from trioscope.actors.queue_owner import ForDeployment

from ._services import services


async def ask_queue(deployment_hash: str, message: Any, timeout: float = 10.0) -> Any:
    """Ask the deployment's queue actor, through the queues' owner (which
    starts it if it is not running and forwards the message: the queue answers)."""
    return await services().queue_owner.ask(ForDeployment(deployment_hash, message), timeout)
