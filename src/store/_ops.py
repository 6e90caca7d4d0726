"""Writes as data: what the store actor commits, one group per acknowledgement."""

from __future__ import annotations

import logging
import sqlite3
from typing import TYPE_CHECKING

import attrs

from trioscope.domain.apps import AppStatus
from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, Deployment
from trioscope.domain.idempotency import KeptAnswer

if TYPE_CHECKING:
    import psycopg


@attrs.frozen
class OpenCommandsQuota:
    """What a deployment's open commands may hold, every replica's counted: a
    new command goes over it if the deployment already has ``max_open`` of
    them, or if its parameters (``SaveCommand.parameter_bytes``) would take
    theirs over ``max_parameter_bytes``."""

    max_open: int
    max_parameter_bytes: int


@attrs.frozen
class SaveCommand:
    command: Command
    expected_version: int | None
    """The history length the stored row must have (compare-and-set: another
    writer changed it otherwise); None inserts a new command."""
    parameter_bytes: int = 0
    """What a new command's parameters take (``parameters_bytes``), stored beside it for ``quota``."""
    quota: OpenCommandsQuota | None = None
    """A new command's quota, checked by a store that replicas share (PostgreSQL)
    as the row is inserted, under a lock per deployment that every replica's
    writer takes in turn: each replica's own count sees its own commands only,
    and creates racing through two replicas went over it (21-38 open of 20).
    One process's SQLite store leaves it to that process's own count, which is exact."""
    max_tenant_bytes: int | None = None
    """For a new command: the bytes its tenant's stored commands may take
    (``tenants.max_command_bytes``, counted in ``tenant_usage``) before new
    ones are refused (``OverCommandBytes``). Checked by both stores as the row
    is inserted: what a tenant stores is the sum of every deployment's, whose
    queue actors count nothing of each other's. Changes of a command (an
    agent's result among them) are never checked: see ``OverCommandBytes``."""


@attrs.frozen
class SaveIdempotencyKey:
    """Keep a request's idempotency key and answer, in the group that creates
    its command (both are written or neither). The key is unique per tenant
    and user: a live one stored already (by another request with the key, on
    this process or another replica) fails the group with ``KeyTaken``."""

    answer: KeptAnswer
    replaces_before: float
    """A stored key made before this (unix seconds: its window is over) is
    replaced, not a ``KeyTaken``: the prune may not have deleted it yet."""


@attrs.frozen
class SaveDeployment:
    deployment: Deployment
    spends: str | None = None
    """The enrollment token hash this write spends: the stored row must still
    have it (compare-and-set), so that of two enrolments with one token on two
    replicas one fails with ``Conflict``. None: written as it is."""
    max_of_tenant: int | None = None
    """For a new deployment: how many its tenant may have, checked as
    ``SaveCommand.quota`` is (under a lock per tenant, on a store that replicas share)."""


@attrs.frozen
class SaveAppStatus:
    """The newest status of one app of a deployment: written over the stored
    one unless that is newer (a later ``updated_at``: ``Outdated``, nothing of
    the group written; the same time: written, the later arrival wins), and
    for an app not stored yet only while its deployment has fewer than
    ``max_apps`` apps (``OverQuota``: how many it has), counted by the store
    itself, under a lock per deployment that every replica's writer takes in
    turn (as ``SaveCommand.quota``). None: no limit (a copy of a store).
    An app's status is not a command: its bytes are not counted in its
    tenant's stored command bytes (``_tenant_usage``, ``SaveCommand.max_tenant_bytes``);
    what a deployment keeps of them is bounded by ``max_apps`` (its newest
    status per app, its lines cut: ``trioscope.domain.apps``)."""

    app: AppStatus
    max_apps: int | None = None


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


Write = SaveCommand | SaveDeployment | SaveAgent | ForgetAgents | AuditEntry | SaveIdempotencyKey | SaveAppStatus


class Conflict(Exception):
    """A compare-and-set write found the row changed: the whole group was not written."""

    def __init__(self, command_id: str, what: str = "command") -> None:
        super().__init__(f"{what} {command_id} was changed by another writer")
        self.command_id = command_id
        """The changed record's id (a command's, unless ``what`` says otherwise)."""


class OverQuota(Exception):
    """A new row would go over its quota (``SaveCommand.quota``,
    ``SaveDeployment.max_of_tenant``) as the shared store counts: nothing of its
    group was written. ``in_use``: what the store holds (open commands or
    deployments); ``bytes_in_use``: the open commands' parameter bytes."""

    def __init__(self, in_use: int, bytes_in_use: int = 0) -> None:
        super().__init__(f"over the quota: {in_use} in use ({bytes_in_use} bytes)")
        self.in_use = int(in_use)
        self.bytes_in_use = int(bytes_in_use)  # PostgreSQL's sum of a bigint is a numeric (a Decimal)


class OverCommandBytes(OverQuota):
    """A new command's tenant already stores ``SaveCommand.max_tenant_bytes``
    bytes of commands or more (``bytes_in_use``): nothing of its group was written.

    Only a new command is refused. What an agent reports on a command it was
    given is always recorded, even past the quota: an outcome (a container
    restarted, a failure) must never be lost, and the agent could not act on
    a refusal but by sending it again. Its result is bounded by the size of a
    request body already, so a tenant goes over by its commands' results at
    most, and its next new command is refused until the prune (or the
    retention) frees room; the total is counted as results arrive."""

    def __init__(self, bytes_in_use: int) -> None:
        super().__init__(0, bytes_in_use)
        self.args = (f"over the quota of stored command bytes: {self.bytes_in_use} in use",)


class KeyTaken(Exception):
    """A ``SaveIdempotencyKey`` found its key stored and still live: another
    request with the key created its command first. Nothing of the group was
    written; the stored answer is the one to give."""

    def __init__(self, key: str) -> None:
        super().__init__(f"idempotency key {key!r} is taken")
        self.key = key


class Outdated(Exception):
    """What a write would replace is newer (an app's status stored with a later
    time): nothing of its group was written."""

    def __init__(self, what: str) -> None:
        super().__init__(f"{what}: the stored one is newer")


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


def note_upgrade(database: str, version: int, to: int) -> None:
    """Say (once, as it starts) that a store of an earlier trioscope is being
    upgraded: after it, that trioscope refuses the store (``NewerSchema``), and
    an upgrade that said nothing left the operator no trace of why."""
    logging.getLogger("trioscope.store").info(
        "store: upgrading the %s schema from version %d to %d (a trioscope of version %d cannot open it after; "
        "a backup taken before is the way back)", database, version, to, version,
        extra={"event": "schema_upgrade", "from_version": version, "to_version": to})


class ForeignDatabase(ValueError):
    """A database of no trioscope version: tables, none of them trioscope's
    (a mistyped ``--database`` or data directory). Refused before a step of
    the migrations changed it (the first one failed half-way, saying only
    ``no such table: main.commands``)."""

    def __init__(self, tables: list[str]) -> None:
        shown = ", ".join(tables[:5]) + (", ..." if len(tables) > 5 else "")
        super().__init__(f"the database is not trioscope's (its tables: {shown}): give trioscope a database of "
                         "its own")


class Unavailable(Exception):
    """The database cannot be reached or opened (a server that is down, a
    refused login, a database that does not exist): the message says which
    and why, without a password."""


_DOWN_STATES = ("08", "57P01", "57P02", "57P03", "57P05")
"""SQLSTATEs (a class, or one code) that end the session: a connection
failure (class 08), a server shutting down, crashed, starting up, or closing
an idle session. The connection is gone: what a commit under way wrote is
unknown, and the next connection may find the server back."""
_BUSY_STATES = ("57014", "55P03", "40", "53")
"""SQLSTATEs of a server that refused one statement for now and keeps the
connection: a statement timeout or a cancel (57014: under overload, a
``statement_timeout`` set on the server), a lock timeout (55P03), a
serialization failure or a deadlock (class 40, after the writer's own tries),
insufficient resources (class 53: too many connections, disk full, out of
memory). The transaction was rolled back (nothing written); a later try may
succeed. The rest of psycopg's ``OperationalError`` (a refused login, a
program limit, an I/O error, a savepoint misused...) is neither: it will not
heal by waiting."""


def database_down(error: BaseException) -> bool:
    """The database cannot be reached, or the connection broke under the call
    (see ``_DOWN_STATES``): nothing to do with the request that met it. Errors
    the driver raises without a server's answer (connection refused or lost,
    a connection timeout, a pool that found no connection in time) are the
    driver's plain ``OperationalError`` or a timeout of its own. Decided here
    so that only the store knows its driver."""
    if isinstance(error, Unavailable):
        return True
    if not _of_psycopg(error):
        return False
    import psycopg  # loaded: it raised ``error`` (see ``_of_psycopg``)
    from psycopg_pool import PoolTimeout
    if isinstance(error, PoolTimeout | psycopg.errors.ConnectionTimeout):
        return True
    if not isinstance(error, psycopg.OperationalError):
        return False
    state = error.sqlstate or error.diag.sqlstate
    if state is None:
        # Its subclasses without a server's answer (an aborted pipeline, a
        # cancel that timed out) say nothing of the connection.
        return type(error) is psycopg.OperationalError
    return state.startswith(_DOWN_STATES)


_DISK_FULL = "53100"
"""PostgreSQL's ``disk_full``."""


class NoRoom(Exception):
    """SQLite's disk refused a write for want of room though SQLite said only
    ``disk I/O error`` (``SQLITE_IOERR_WRITE``): over the user's disk quota
    (``EDQUOT``), which SQLite does not tell from a failing disk, nor gives
    the write's error number to Python. Found by writing a probe beside the
    store (``_disk_room.room_refused``). Nothing of the transaction was
    written: a full disk to an operator (``store_full``). The SQLite error is
    the ``__cause__``."""


class MaybeCommitted(Exception):
    """SQLite failed at a transaction's ``COMMIT`` itself (the write-ahead
    log's fsync): this connection rolled the transaction back, but its commit
    record may be in the log already, and SQLite replays it when the store is
    next opened (after a ``kill -9`` it did: the command queued, its audit
    record ``ok``). Neither done nor not done: answered ``OutcomeUnknown``.
    A write refused at ``COMMIT`` (a full disk) is no such failure: the commit
    record is the last frame written, so nothing of it is in the log. The
    SQLite error is the ``__cause__``."""


class StoreMoved(Exception):
    """The SQLite file this process writes is no longer at its path (deleted,
    or another file moved or restored over it): what it commits would go into
    a file nobody will open again, and another server may start on the path
    (its lock is on the file that went away). Nothing of the transaction was
    written; nothing is, until the server is restarted on the file at the path."""


_FAILING_CODES = frozenset({sqlite3.SQLITE_IOERR, sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB,
                            sqlite3.SQLITE_READONLY, sqlite3.SQLITE_CANTOPEN})
"""SQLite's primary result codes of a file or disk that fails under a
statement: an I/O error (``EIO``, a failed fsync, a disk that vanished:
``SQLITE_IOERR_*``), a damaged file, one made read-only or replaced under
the connection (``SQLITE_READONLY_DBMOVED``), one that cannot be opened."""
_DAMAGED_CODES = frozenset({sqlite3.SQLITE_CORRUPT, sqlite3.SQLITE_NOTADB})


def _sqlite_code(error: BaseException) -> int | None:
    """SQLite's primary result code of ``error`` (its extended code's low
    byte), if SQLite raised it; None for any other error."""
    code = getattr(error, "sqlite_errorcode", None) if isinstance(error, sqlite3.Error) else None
    return None if code is None else code & 0xFF


def store_failing(error: BaseException) -> bool:
    """The SQLite store's file or disk failed (``_FAILING_CODES``,
    ``MaybeCommitted``, ``StoreMoved``): nothing to do with the request that
    met it, and no bug; refused (503 ``store_failing``), never a crash. Only
    an SQLite error is: PostgreSQL's disk is the database server's."""
    if isinstance(error, MaybeCommitted | StoreMoved):
        return True
    return _sqlite_code(error) in _FAILING_CODES


def store_damaged(error: BaseException) -> bool:
    """The SQLite file is damaged (``database disk image is malformed``) or
    moved away (``StoreMoved``): that does not heal by waiting, nor by opening
    it again; writing more into a damaged file may spread the damage."""
    if isinstance(error, StoreMoved):
        return True
    return _sqlite_code(error) in _DAMAGED_CODES


def store_full(error: BaseException) -> bool:
    """The database's disk is full (SQLite's ``SQLITE_FULL``, a quota:
    ``NoRoom``; PostgreSQL's ``disk_full``): the transaction was rolled back,
    nothing of it written; the same write fails until room is made. Refused,
    never a crash: a store that crashed on each one ended the server, restart
    after restart."""
    if isinstance(error, NoRoom):
        return True
    if isinstance(error, sqlite3.OperationalError):
        return getattr(error, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL
    operational = _operational(error)
    return operational is not None and (operational.sqlstate or operational.diag.sqlstate) == _DISK_FULL


def database_busy(error: BaseException) -> bool:
    """The database refused one statement for now (see ``_BUSY_STATES``): the
    connection is fine and nothing was written; a later try may succeed."""
    operational = _operational(error)
    if operational is None or database_down(error):
        return False
    state = operational.sqlstate or operational.diag.sqlstate
    return state is not None and state.startswith(_BUSY_STATES)


def statement_cut(error: BaseException) -> bool:
    """The database cut this one statement short (57014: its ``statement_timeout``,
    or a cancel, as when its request went away): says nothing of the next."""
    operational = _operational(error)
    return operational is not None and (operational.sqlstate or operational.diag.sqlstate) == "57014"


def _of_psycopg(error: BaseException) -> bool:
    """Whether psycopg (or its pool) raised ``error``. psycopg is imported only
    to look closer at an error of its own, which it raised, so it is loaded:
    a server on SQLite (the embedded default) never loads it, ~50 ms of each
    start."""
    return type(error).__module__.partition(".")[0] in ("psycopg", "psycopg_pool")


def _operational(error: BaseException) -> psycopg.OperationalError | None:
    """``error`` as psycopg's ``OperationalError``; None if it is none."""
    if not _of_psycopg(error):
        return None
    import psycopg  # loaded (see ``_of_psycopg``)
    return error if isinstance(error, psycopg.OperationalError) else None
