"""Log follows of containers (``trioscope.actors.log_follows``) as the edge
reaches them: what makes a command a follow, and the follows actor's refusals
as HTTP errors, one translation for the user API, the agent API and the agent
socket."""

from __future__ import annotations

import logging
import time
from typing import Any

from trioscope.actors.log_follows import Entries, StopFollow
from trioscope.domain.commands import CreateCommand, LogBatch
from trioscope.domain.log_follows import FOLLOWED_TYPE, Admission, FollowEnded, FollowLimitReached, UnknownFollow
from trioscope.runtime import ActorNotFound, ActorStopped, AskTimeout, MailboxFull
from trioscope.system import LOG_FOLLOWS

from ._errors import ApiError, field_error
from ._services import services

log = logging.getLogger(__name__)


def follow_container(create: CreateCommand) -> str | None:
    """The container a ``docker.logs`` command with ``follow: true`` follows
    (None: not a follow); 400 naming the field when it is not one."""
    if create.type != FOLLOWED_TYPE or "follow" not in create.parameters:
        return None
    follow = create.parameters["follow"]
    if type(follow) is not bool:
        raise _bad_parameter("follow", "must be true or false")
    if not follow:
        return None
    container = create.parameters.get("container") or create.parameters.get("container_id")
    if not isinstance(container, str) or not container or len(container) > 256:
        raise _bad_parameter("container", "a follow needs the container's id or name (at most 256 characters)")
    tail = create.parameters.get("tail", 10)
    if type(tail) is not int or not 0 <= tail <= MAX_FOLLOW_TAIL:
        raise _bad_parameter("tail", f"must be an integer from 0 to {MAX_FOLLOW_TAIL} (lines of history first)")
    return container


MAX_FOLLOW_TAIL = 10_000
"""Lines of history a follow may start with (the probe's own bound)."""


def _bad_parameter(name: str, message: str) -> ApiError:
    return field_error("invalid_command", f"$.parameters.{name}", message)


async def ask_follows(message: Any) -> Any:
    """Ask the follows actor; its refusals as HTTP errors (429 over a count, 404, 410)."""
    try:
        return await services().system.lookup(LOG_FOLLOWS).ask(message, timeout=10.0)
    except FollowLimitReached as exc:
        raise ApiError(429, "follow_limit_reached", str(exc), details={"limit": exc.limit, "setting": exc.setting},
                       headers={"Retry-After": "10"}) from None
    except UnknownFollow:
        raise ApiError(404, "follow_not_found", "no log follow of this command in this deployment (not a follow, "
                       "or the server restarted since: start it again)") from None
    except FollowEnded as exc:
        raise ApiError(410, "follow_ended", str(exc), details={"reason": exc.reason}) from None


async def admit_log_entries(batch: LogBatch) -> Admission:
    """Hand an agent's batch of log lines to the follows actor: the lines its
    bounds pass go to users as ``log_entry`` events."""
    return await ask_follows(Entries(batch.deployment_hash, batch.command_id, tuple(batch.entries),  # type: ignore[no-any-return]  # replies are untyped; Entries' is an Admission
                                      time.time()))


async def end_follow(command_id: str, reason: str) -> None:
    """End a follow if there is one, and wait until it has: every batch of
    its lines admitted before is with the notifier, and none is after."""
    try:
        await services().system.lookup(LOG_FOLLOWS).ask(StopFollow(command_id, reason), timeout=5.0)
    except (MailboxFull, ActorStopped, ActorNotFound, AskTimeout):
        log.warning("follow %s not stopped at once: the follows actor is busy or away; its limits end it", command_id)


def stop_follow(command_id: str, reason: str) -> None:
    """End a follow if there is one (its command was not queued): no more of
    its lines reach users. Never waits. A follow whose command finishes, however
    it does, is ended by the command's queue actor."""
    try:
        stopped = services().system.lookup(LOG_FOLLOWS).offer(StopFollow(command_id, reason))
    except ActorNotFound:
        stopped = False
    if not stopped:
        log.warning("follow %s not stopped at once: the follows actor is busy or away; its limits end it", command_id)
