"""Live container logs: the follows open now and the bounds each one keeps.

A follow is a ``docker.logs`` command with ``follow: true``. It is registered
when the command is created (refused past the per-user and per-agent counts),
and from then on the agent's batches of log lines are admitted against it: at
most ``lines_per_second`` lines a second (the rest are dropped and counted), at
most ``max_bytes`` of messages in all and until ``deadline`` (then the follow
ends and the agent is told to stop). Pure: ``now`` is passed in.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping, Sequence

import attrs

FOLLOWED_TYPE = "docker.logs"
"""The command type a follow is (with ``follow: true``)."""


def is_follow(command_type: str, parameters: Mapping[str, object]) -> bool:
    """Whether a command of ``command_type`` with ``parameters`` is a follow."""
    return command_type == FOLLOWED_TYPE and parameters.get("follow") is True


MAX_REMEMBERED_ENDINGS = 4096
"""Ended follows whose reason is kept, so a late batch hears why (not "unknown")."""


@attrs.frozen(kw_only=True)
class FollowLimits:
    """Bounds of live log follows (the ``commands.follow_*`` settings)."""

    per_user: int
    """Follows open at once per user."""
    per_agent: int
    """Follows open at once per deployment's agent."""
    lines_per_second: int
    """Lines a second one follow passes on; more are dropped (and counted)."""
    max_bytes: int
    """Bytes of messages one follow passes on in all; then it ends (``volume_limit``)."""
    max_seconds: float
    """Seconds one follow lasts at most; then it ends (``time_limit``)."""


class FollowLimitReached(Exception):
    """A new follow would exceed a count: ``limit`` is the setting's name."""

    def __init__(self, what: str, limit: int, setting: str) -> None:
        super().__init__(f"{what} already has its limit of {limit} live log follows ({setting})")
        self.limit = limit
        self.setting = setting


class UnknownFollow(Exception):
    """No follow of that command (never one, or of another deployment)."""


class FollowEnded(Exception):
    """The follow ended; ``reason`` says why (``stopped``, ``time_limit``, ``volume_limit``, ``finished``)."""

    def __init__(self, command_id: str, reason: str) -> None:
        super().__init__(f"the log follow of {command_id} ended: {reason}")
        self.reason = reason


@attrs.define(kw_only=True)
class Follow:
    """One open follow and what it has passed on."""

    command_id: str
    tenant: str
    user_id: str
    deployment_hash: str
    container: str
    deadline: float
    lines: int = 0
    bytes: int = 0
    dropped: int = 0
    allowance: float = 0.0
    """Lines it may pass on now (a token bucket refilled at ``lines_per_second``)."""
    refilled_at: float = 0.0


@attrs.frozen
class Admission:
    """Which of a batch's entries pass (``accepted``: their indexes), how many
    were dropped by the rate, and the reason the follow ended with this batch
    (None: it goes on)."""

    follow: Follow
    accepted: tuple[int, ...]
    dropped: int
    ended: str | None


class LogFollows:
    """The open follows of one server, by command id."""

    def __init__(self, limits: FollowLimits) -> None:
        self.limits = limits
        self.open: dict[str, Follow] = {}
        self.endings: OrderedDict[str, str] = OrderedDict()

    def start(self, *, command_id: str, tenant: str, user_id: str, deployment_hash: str, container: str,
              seconds: float, now: float) -> Follow:
        """Register a follow lasting at most ``seconds`` (and ``max_seconds``).

        Raises:
            FollowLimitReached: the user or the deployment's agent has its count of follows open.
        """
        self.expire(now)
        mine = sum(1 for f in self.open.values() if f.tenant == tenant and f.user_id == user_id)
        if mine >= self.limits.per_user:
            raise FollowLimitReached(f"user {user_id!r}", self.limits.per_user, "commands.follow_max_per_user")
        theirs = sum(1 for f in self.open.values() if f.deployment_hash == deployment_hash)
        if theirs >= self.limits.per_agent:
            raise FollowLimitReached(f"deployment {deployment_hash}", self.limits.per_agent,
                                     "commands.follow_max_per_agent")
        follow = Follow(command_id=command_id, tenant=tenant, user_id=user_id, deployment_hash=deployment_hash,
                        container=container, deadline=now + min(seconds, self.limits.max_seconds),
                        allowance=float(self.limits.lines_per_second), refilled_at=now)
        self.open[command_id] = follow
        return follow

    def stop(self, command_id: str, reason: str) -> Follow | None:
        """End a follow (None if it was not open)."""
        follow = self.open.pop(command_id, None)
        if follow is not None:
            self._remember(command_id, reason)
        return follow

    def expire(self, now: float) -> list[Follow]:
        """End the follows past their deadline; answers them."""
        gone = [f for f in self.open.values() if now >= f.deadline]
        for follow in gone:
            self.stop(follow.command_id, "time_limit")
        return gone

    def admit(self, command_id: str, deployment_hash: str, sizes: Sequence[int], now: float) -> Admission:
        """Pass on what the bounds allow of a batch whose messages are ``sizes`` bytes.

        Raises:
            UnknownFollow: no such follow of ``deployment_hash``.
            FollowEnded: it ended before this batch.
        """
        follow = self.open.get(command_id)
        if follow is None or follow.deployment_hash != deployment_hash:
            reason = self.endings.get(command_id)
            if reason is not None and follow is None:
                raise FollowEnded(command_id, reason)
            raise UnknownFollow(command_id)
        if now >= follow.deadline:
            self.stop(command_id, "time_limit")
            raise FollowEnded(command_id, "time_limit")
        rate = self.limits.lines_per_second
        follow.allowance = min(float(rate), follow.allowance + max(0.0, now - follow.refilled_at) * rate)
        follow.refilled_at = now
        accepted: list[int] = []
        dropped = 0
        ended: str | None = None
        for index, size in enumerate(sizes):
            if follow.bytes + size > self.limits.max_bytes:
                ended = "volume_limit"
                break
            if follow.allowance < 1.0:
                dropped += 1
                continue
            follow.allowance -= 1.0
            follow.lines += 1
            follow.bytes += size
            accepted.append(index)
        follow.dropped += dropped
        if ended is not None:
            self.stop(command_id, ended)
        return Admission(follow, tuple(accepted), dropped, ended)

    def _remember(self, command_id: str, reason: str) -> None:
        self.endings[command_id] = reason
        self.endings.move_to_end(command_id)
        while len(self.endings) > MAX_REMEMBERED_ENDINGS:
            self.endings.popitem(last=False)
