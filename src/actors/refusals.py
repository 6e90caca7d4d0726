"""Requests an actor refuses, and the base of the actors that refuse them.

A refusal is an answer, not a crash: an actor raises it while handling an ask,
the runtime raises it at the asker instead of counting a failure (the types an
actor lists in ``Actor.refusals``; ``RefusingActor`` lists these), and the HTTP
edge maps it to a status code (``http._errors``). Bad input must never
restart an actor."""

from __future__ import annotations

from typing import Any

from trioscope.domain.commands import IllegalTransition
from trioscope.domain.commands import ReportConflict as ReportConflict
from trioscope.runtime import Actor


class Refusal(Exception):
    """Base of every refusal."""


class QuotaExceeded(Refusal):
    """A limit a request would go over. ``in_use`` and ``requested``, where the
    limit counts more than one at a time (bytes): what is taken already and
    what the request would add, so the client knows by how much it is over;
    ``in_use`` alone for a limit that refuses once it is reached, whatever
    the request adds (what may pass it, an agent's result, is never refused)."""

    def __init__(self, what: str, limit: int, setting: str, *, in_use: int | None = None,
                 requested: int | None = None) -> None:
        if in_use is None:
            message = f"the {what} limit of {limit} is reached ({setting})"
        elif requested is None:
            message = f"the {what} limit of {limit} is reached: {in_use} in use ({setting})"
        else:
            message = (f"this request would take the {what} to {in_use + requested} ({in_use} in use, "
                       f"{requested} asked), over the limit of {limit} ({setting})")
        super().__init__(message)
        self.what = what
        self.limit = limit
        self.setting = setting
        self.in_use = in_use
        self.requested = requested


class IdempotencyKeyTaken(Refusal):
    """The request's ``Idempotency-Key`` was stored a moment ago by another
    request with it (on this process or another replica), whose command was
    created instead: nothing of this one was written. The edge answers with
    that request's answer (or refuses a different request)."""

    def __init__(self, key: str) -> None:
        super().__init__(f"the idempotency key {key!r} was used by another request a moment ago")
        self.key = key


class UnknownCommand(Refusal):
    def __init__(self, command_id: str) -> None:
        super().__init__(f"no command {command_id!r} in this deployment")
        self.command_id = command_id


class EnrollmentRefused(Refusal):
    """Unknown deployment, or a wrong or spent enrollment token (one answer for
    all three, so it tells an attacker nothing)."""

    def __init__(self) -> None:
        super().__init__("the enrollment token is not valid for this deployment (it may have been used already)")


class UnknownAgent(Refusal):
    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {agent_id!r} in this deployment")
        self.agent_id = agent_id


class ReporterTaken(Refusal):
    """A probe agent id whose reports another active enrolled agent signs."""

    def __init__(self, reporter_id: str) -> None:
        super().__init__(f"agent id {reporter_id!r} is reported by another enrolled agent; give this probe "
                         "its own --agent-id")
        self.reporter_id = reporter_id


class TooManyAgents(Refusal):
    """No room for a new probe: ``agents.max_agents`` are tracked and none may be forgotten for it."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the server already tracks its limit of {limit} agents (agents.max_agents) and none is "
                         "silent long enough to be forgotten; enrolled probes always have room")
        self.limit = limit


class NotRecorded(Refusal):
    """What the request asked for cannot be recorded in the audit log now (the database failed): nothing was done."""

    def __init__(self, what: str, reason: BaseException) -> None:
        super().__init__(f"the {what} could not be recorded in the audit log ({type(reason).__name__}: {reason}), "
                         "so nothing was done; send it again")


class UnknownProbe(Refusal):
    """A probe agent id the server tracks no actor for (never seen, or forgotten)."""

    def __init__(self, agent_id: str) -> None:
        super().__init__(f"no agent {agent_id!r} is known; register it or send a report")
        self.agent_id = agent_id


class DatabaseUnavailable(Refusal):
    """The database cannot be reached now: nothing of this commit was written; send it again shortly.

    A refusal: an actor whose request it fails answers its asker and carries
    on, rather than crashing (and burning its supervisor's restart intensity)
    for every request while the database is away."""

    def __init__(self, reason: str) -> None:
        super().__init__("the database is unavailable; nothing was written, retry shortly")
        self.reason = reason
        """Why, for the log (it names the database server: not for clients)."""

class StoreFull(DatabaseUnavailable):
    """The database's disk is full: nothing of this commit was written, nor
    will be until room is made (507 ``insufficient_storage``). A kind of the
    database being unavailable, so every actor that refuses that refuses this."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.args = ("the server's storage is full; nothing was written, send it again later",)


STORAGE_FAILING = "the server's storage is failing (an I/O error); nothing was written, retry later"
STORAGE_DAMAGED = ("the server's storage is damaged or was moved away; nothing was written, nor will be until an "
                   "operator has repaired it")


class StoreFailing(DatabaseUnavailable):
    """The server's storage (the SQLite file or its disk) failed: nothing of
    this commit was written; refused (503 ``store_failing``) until it works
    again or, damaged or moved away (``STORAGE_DAMAGED``), until an operator
    repaired it. A kind of the database being unavailable, so every actor
    that refuses that refuses this."""

    def __init__(self, reason: str, message: str = STORAGE_FAILING) -> None:
        super().__init__(reason)
        self.args = (message,)


CONNECTION_FAILED = ("the connection to the database failed while this was being written; it may have taken "
                     "effect: check before sending it again")
COMMIT_FAILED = ("the server's storage failed while this was being committed; it may have taken effect: check "
                 "before sending it again")
STOPPED_WHILE_WRITING = ("the server stopped while this was being written; it may have taken effect: check before "
                         "sending it again")


class OutcomeUnknown(Refusal):
    """The connection to the database failed while this commit was under way
    and what it wrote could not be read back, or the server stopped waiting
    for it at the end of its shutdown (``STOPPED_WHILE_WRITING``): it may or
    may not have been written. Never sent again by the store: the client
    checks before repeating."""

    def __init__(self, reason: str, message: str = CONNECTION_FAILED) -> None:
        super().__init__(message)
        self.reason = reason
        """Why, for the log (it names the database server: not for clients)."""


REFUSALS = (Refusal, IllegalTransition, ReportConflict)
"""What actors refuse: their own refusals, and the domain's where the rule is
decided there (a transition the state machine has not, a report the command
contradicts)."""


class RefusingActor(Actor):
    """An actor whose ``serve(message, now)`` may refuse a request by raising a
    refusal: the runtime raises it at the asker (``Actor.refusals``) and the
    actor carries on."""

    clock: Any
    refusals = REFUSALS

    async def handle(self, message: Any) -> Any:
        return await self.serve(message, self.clock())

    async def serve(self, message: Any, now: float) -> Any:
        return await super().handle(message)

