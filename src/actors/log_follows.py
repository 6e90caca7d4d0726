"""Live container logs (``/root/log_follows``): the follows open now, and the
lines agents send of them passed on as ``log_entry`` events.

A follow is registered when its command is created (``StartFollow``, refused
past the counts), ended when the user stops it, its command finishes, or a
limit is reached; the agent's batches (``Entries``) are admitted against the
follow's bounds and each line that passes goes to the notifier once, for the
user who asked for it and the tenant's admins.
"""

from __future__ import annotations

from typing import Any

import attrs

from trioscope.config import Settings
from trioscope.domain.commands import LogEntry
from trioscope.domain.log_follows import (
    Admission, Follow, FollowEnded, FollowLimitReached, FollowLimits, LogFollows, UnknownFollow,
)
from trioscope.runtime import Actor, ActorRef, ActorSpec, Restart
from trioscope.wire import format_timestamp

from .notifier import publish


@attrs.frozen
class StartFollow:
    """Answered with the ``Follow``; raises ``FollowLimitReached``."""

    command_id: str
    tenant: str
    user_id: str
    deployment_hash: str
    container: str
    seconds: float
    now: float


@attrs.frozen
class StopFollow:
    """End a follow (``reason``: ``stopped``, ``finished``); answered with whether it was open."""

    command_id: str
    reason: str


@attrs.frozen
class Entries:
    """A batch of an agent's lines; answered with the ``Admission``; raises
    ``UnknownFollow`` or ``FollowEnded``."""

    deployment_hash: str
    command_id: str
    entries: tuple[LogEntry, ...]
    now: float


def follow_limits(settings: Settings) -> FollowLimits:
    c = settings.commands
    return FollowLimits(per_user=c.follow_max_per_user, per_agent=c.follow_max_per_agent,
                        lines_per_second=c.follow_lines_per_second, max_bytes=c.follow_max_bytes,
                        max_seconds=c.follow_max_duration)


def log_entry_event(follow: Follow, entry: LogEntry) -> dict[str, Any]:
    """The seed's ``log_entry`` event, with the command and container it belongs to."""
    return {"type": "log_entry", "timestamp": format_timestamp(entry.timestamp), "level": entry.level,
            "message": entry.message, "source": entry.source, "command_id": follow.command_id,
            "deployment_hash": follow.deployment_hash, "container": follow.container}


class LogFollowsActor(Actor):
    refusals = (FollowLimitReached, UnknownFollow, FollowEnded)

    def __init__(self, limits: FollowLimits, notifier_path: str) -> None:
        self.follows = LogFollows(limits)
        self.notifier_path = notifier_path

    async def on_start(self) -> None:
        self.notifier: ActorRef = self.context.system.lookup(self.notifier_path)

    async def handle(self, message: Any) -> Any:
        if isinstance(message, Entries):
            admission: Admission = self.follows.admit(message.command_id, message.deployment_hash,
                                                      [len(e.message.encode()) for e in message.entries], message.now)
            follow = admission.follow
            for index in admission.accepted:
                publish(self.notifier, follow.tenant, follow.user_id, log_entry_event(follow, message.entries[index]))
            return admission
        if isinstance(message, StartFollow):
            return self.follows.start(command_id=message.command_id, tenant=message.tenant, user_id=message.user_id,
                                      deployment_hash=message.deployment_hash, container=message.container,
                                      seconds=message.seconds, now=message.now)
        if isinstance(message, StopFollow):
            return self.follows.stop(message.command_id, message.reason) is not None
        return await super().handle(message)


def log_follows_spec(settings: Settings, notifier_path: str) -> ActorSpec:
    """Permanent: a restart forgets the open follows, whose next batches then
    get 404 and whose agents stop (users start them again)."""
    return ActorSpec(name="log_follows", factory=lambda: LogFollowsActor(follow_limits(settings), notifier_path),
                     restart=Restart.PERMANENT, mailbox_size=4096)
