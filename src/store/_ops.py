"""Writes as data: what the store actor commits, one group per acknowledgement."""

from __future__ import annotations

import attrs
import psycopg

from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, Deployment


@attrs.frozen
class SaveCommand:
    command: Command
    expected_version: int | None
    """The history length the stored row must have (compare-and-set: another
    writer changed it otherwise); None inserts a new command."""


@attrs.frozen
class SaveDeployment:
    deployment: Deployment
    spends: str | None = None
    """The enrollment token hash this write spends: the stored row must still
    have it (compare-and-set), so that of two enrolments with one token on two
    replicas one fails with ``Conflict``. None: written as it is."""


@attrs.frozen
class SaveAgent:
    agent: AgentRecord


@attrs.frozen
class ForgetAgents:
    """Delete these agents' records (retired agents past the history retention)."""

    agent_ids: tuple[str, ...]


@attrs.frozen(kw_only=True)
class AuditEntry:
    at: float
    tenant: str | None
    actor: str
    """``user:<id>``, ``agent:<id>``, or ``anonymous``."""
    action: str
    """``command.create``, ``agent.register``, ``auth.failure`` ..."""
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: str = "ok"
    address: str | None = None
    user_agent: str | None = None
    details: dict[str, object] = attrs.field(factory=dict)


Write = SaveCommand | SaveDeployment | SaveAgent | ForgetAgents | AuditEntry


class Conflict(Exception):
    """A compare-and-set write found the row changed: the whole group was not written."""

    def __init__(self, command_id: str, what: str = "command") -> None:
        super().__init__(f"{what} {command_id} was changed by another writer")
        self.command_id = command_id
        """The changed record's id (a command's, unless ``what`` says otherwise)."""


class Rejected(Exception):
    """The database refused a group (nothing of it was written): a value it cannot
    encode, an id or agent token already taken, a deployment that does not exist.
    The backend's own error is the ``__cause__``."""


class NewerSchema(ValueError):
    """The database was written by a later version of trioscope: this one would
    misread it, and its schema script would undo the later changes."""

    def __init__(self, version: int, known: int) -> None:
        super().__init__(f"the database has schema version {version}, newer than this trioscope knows"
                         f" ({known}): run the version that wrote it, or give another database")
        self.version = version


class Unavailable(Exception):
    """The database cannot be reached or opened (a server that is down, a
    refused login, a database that does not exist): the message says which
    and why, without a password."""


DATABASE_DOWN: tuple[type[Exception], ...] = (Unavailable, psycopg.OperationalError)
"""A database server that cannot be reached, or whose connection broke (a
read, a rate-limit check): nothing to do with the request that met it. The
driver's ``OperationalError`` covers a pool that found no connection in time
(``PoolTimeout``). Named here so that only the store knows its driver."""
