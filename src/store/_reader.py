"""The store as the rest of the server sees it: named, awaitable reads of
committed state, and the writer the store actor opens. Which database is
behind them (an SQLite file, or PostgreSQL shared by replicas) is chosen from
its location here, and is this package's business alone. The PostgreSQL
modules (psycopg) are imported only for a PostgreSQL location: a server on
SQLite, the embedded default, never loads them (~50 ms of each start)."""

from __future__ import annotations

import contextlib
import copy
import functools
import logging
import sqlite3
import types
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, ParamSpec, Protocol, TypeVar

import trio

from trioscope.domain.apps import AppStatus
from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, Deployment
from trioscope.domain.idempotency import KeptAnswer
from trioscope.domain.rates import Outage, StandingFailure

from ._ops import Write, database_busy, database_down, statement_cut, store_damaged
from ._read_results import AuditRecord, BulkPart, CommandPart, StoredCommand
from ._sqlite import DATABASE_FILE, SqliteReader, SqliteWriter

if TYPE_CHECKING:
    from ._postgres_reader import PostgresReader

log = logging.getLogger(__name__)

T = TypeVar("T")
P = ParamSpec("P")

Database = Path | str
"""Where the store is: an SQLite file's path, or a URL (``sqlite:PATH``,
``postgresql://user@host/db``) as ``store.database`` gives it."""


POSTGRES_SCHEMES = ("postgresql://", "postgres://")


def resolve_database(configured: str, data_dir: Path) -> Database:
    """The database ``store.database`` names: empty is SQLite in ``data_dir``."""
    if not configured:
        return data_dir / DATABASE_FILE
    return sqlite_path(configured) or configured


def sqlite_path(database: Database) -> Path | None:
    """The file of an SQLite database; None for PostgreSQL.

    Raises:
        ValueError: ``database`` names no database this store knows.
    """
    if isinstance(database, Path):
        return database
    if database.startswith("sqlite:") and len(database) > len("sqlite:"):
        return Path(database.removeprefix("sqlite:")).expanduser()
    if database.startswith(POSTGRES_SCHEMES):
        return None
    raise ValueError("names no known database; expected sqlite:PATH or postgresql://[user@]host[:port]/database")


class StoreWriter(Protocol):
    """What the store actor (the single writer) needs of the database."""

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        """Each group all-or-nothing, all groups in one transaction; a group's
        error in its place: ``Conflict`` (a compare-and-set found the row
        changed), ``OverQuota`` (a new row over its quota: ``OverCommandBytes``
        for its tenant's stored commands), ``KeyTaken`` (an idempotency key
        stored by another request) or ``Rejected`` (the database refused a value). Any other
        error is the database's and is raised (nothing of the call was written)."""

    def prune(self, before: float, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` commands finished before ``before`` (unix
        seconds) and up to ``batch`` audit records made before it; answer how
        many of each. Open commands are kept whatever their age."""

    def prune_idempotency_keys(self, before: float, batch: int) -> int:
        """Delete up to ``batch`` idempotency keys made before ``before`` (their
        window is over); answer how many."""

    def close(self) -> None: ...

    @property
    def identity(self) -> tuple[int, int] | None:
        """The file written (device, inode): an opening after a failing disk
        must find it again (``open_writer``'s ``expected``); None for a database server."""

    def moved(self) -> str | None:
        """Why the file at the database's path is no longer the one written
        (deleted, replaced), or None: it is (always, for a database server)."""


def postgres_url(database: Database) -> str | None:
    """The URL of a PostgreSQL store, shared by replicas (None: an SQLite file, one process)."""
    return None if sqlite_path(database) is not None else str(database)


def describe_database(database: Database) -> str:
    """Where ``database`` is, for messages: an SQLite file's path, a PostgreSQL
    server's address and database, never a password."""
    path = sqlite_path(database)
    if path is not None:
        return str(path)
    from ._postgres import describe  # psycopg: only for PostgreSQL (see the module docstring)
    return describe(str(database))


def stored_schema(database: Database) -> tuple[int, int, bool]:
    """``(its schema version, this code's, whether it holds trioscope's
    tables)``, read without changing anything (blocking): an empty file or
    database holds none. One of an earlier version would be upgraded by
    opening it for writing, after which the trioscope that wrote it can no
    longer open it.

    Raises:
        NewerSchema: a later trioscope wrote it.
        ForeignDatabase: an SQLite file of another program's.
        Unavailable: a PostgreSQL database cannot be reached.
        sqlite3.Error: the file is no SQLite database, or cannot be read.
    """
    path = sqlite_path(database)
    if path is not None:
        from ._migrations import SCHEMA_VERSION, refuse_foreign, schema_version
        with contextlib.closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as db:
            return schema_version(db), SCHEMA_VERSION, "commands" in refuse_foreign(db)
    from ._postgres import connect  # psycopg: only for PostgreSQL (see the module docstring)
    from ._postgres_migrations import SCHEMA_VERSION as POSTGRES_SCHEMA_VERSION, holds_commands
    from ._postgres_migrations import schema_version as postgres_version
    with contextlib.closing(connect(str(database))) as connection:
        return postgres_version(connection), POSTGRES_SCHEMA_VERSION, holds_commands(connection)


def open_writer(database: Database, *, origin: str | None = None,
                expected: tuple[int, int] | None = None) -> StoreWriter:
    """The database for writing, its schema created or migrated (blocking).

    Args:
        origin: names this writer in PostgreSQL's change notifications (the
            replica's id; default: a random one). SQLite has no other replicas.
        expected: SQLite: the identity of the file an earlier writer of this
            process had open (``SqliteWriter.identity``): another file at the
            path, or none, is refused (``StoreMoved``), never made anew.

    Raises:
        Unavailable: the database cannot be reached.
        NewerSchema: a later trioscope wrote it.
    """
    path = sqlite_path(database)
    if path is not None:
        return SqliteWriter(path, expected)
    assert isinstance(database, str)
    from ._postgres import PostgresWriter  # psycopg: only for PostgreSQL (see the module docstring)
    return PostgresWriter(database, origin=origin)


READS_RECHECK = 5.0
"""Seconds between looks at whether reads that failed for want of the
database work again (``StoreReader.reads_failing``), while they fail."""

SQLITE_READERS = 4
"""SQLite connections reads take turns on (WAL: readers do not wait for each
other nor for the writer). With one, a user's listing of 2 million commands
at a far offset (2.5 s) held every other tenant's reads behind it, and the
health checks too (``/health/ready`` 503)."""


class StoreReader:
    """Committed state, read without going through the writer, in worker
    threads (the database calls block): on SQLite, ``SQLITE_READERS``
    connections, each one query at a time, and one more for the health
    checks; on PostgreSQL, as many as its pool holds."""

    def __init__(self, database: Database) -> None:
        path = sqlite_path(database)
        self._where = describe_database(database)
        self._outage = Outage()
        """Whether reads were said to fail for the database away (``_call``)."""
        self._failing = StandingFailure(READS_RECHECK)
        """Whether reads fail for want of the database, for readiness (``reads_failing``)."""
        self.damaged: BaseException | None = None
        """The first error of a read that met the SQLite file damaged
        (``store_damaged``: a damaged page), or None. A page that only reads
        reach fails no write: the store actor, which looks at this, then
        refuses writes as when a write meets the damage, and readiness says
        so. Kept without its traceback (it would hold the read's frames)."""
        self._recheck: Callable[[], None]
        """What ends a failure of reads: a read of every table reads use."""
        self._reader: SqliteReader | PostgresReader
        self._free: list[SqliteReader] | None = None
        """SQLite's connections not in use (None: PostgreSQL, whose pool hands them out)."""
        self._checker: SqliteReader | PostgresReader
        if path is not None:
            self._free = [SqliteReader(path) for _ in range(SQLITE_READERS)]
            self._reader = self._free[0]
            self._limiter = trio.CapacityLimiter(SQLITE_READERS)
            self._checker = SqliteReader(path)
            self._all: list[SqliteReader | PostgresReader] = [*self._free, self._checker]
            # Never called: SQLite's reads do not fail for want of a database server.
            self._recheck = self._checker.check
        else:
            assert isinstance(database, str)
            from ._postgres_reader import PostgresReader  # psycopg: only for PostgreSQL (see the module docstring)
            self._reader = self._checker = PostgresReader(database)
            self._recheck = self._reader.tables_answer
            self._limiter = trio.CapacityLimiter(self._reader.pool_size)
            self._all = [self._reader]
        self._checks = trio.CapacityLimiter(1)

    async def _call(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        """``method`` (one of ``self._reader``'s) in a worker thread; on SQLite on
        whichever connection is free (the same method, of that connection).

        Reads that meet the database away are said once, when the first does,
        and once when one works again: a server that only reads (its
        requests answered 503 meanwhile) logged nothing else of an outage
        but the driver's pool's own lines (the store actor says it of commits)."""
        try:
            answer = await self._read(method, *args, **kwargs)
        except Exception as exc:
            # Answered 503 database_unavailable. Not a statement cut short: a
            # slow listing past its statement_timeout, or one whose client went
            # away, says nothing of other reads, and would take the replica out
            # of the balancer's rotation for any client that asks one.
            if database_down(exc) or (database_busy(exc) and not statement_cut(exc)):
                self._failing.failed(_one_line(exc), trio.current_time())
            if self.damaged is None and store_damaged(exc):
                self.damaged = copy.copy(exc)  # (the copy has no traceback)
            if database_down(exc) and self._outage.first("down"):
                log.warning("store: reads cannot reach the database %s (%s); answering 503 until it is back",
                            self._where, _one_line(exc), extra={"event": "database_reads_failing"})
            raise
        if self._outage.said is not None:
            self._outage.over()
            log.info("store: reads reach the database %s again", self._where,
                     extra={"event": "database_reads_back"})
        return answer

    async def _read(self, method: Callable[P, T], *args: P.args, **kwargs: P.kwargs) -> T:
        if self._free is None:
            return await trio.to_thread.run_sync(functools.partial(method, *args, **kwargs), limiter=self._limiter)
        async with self._limiter:
            reader = self._free.pop()
            try:
                # The same function, bound to the connection taken.
                bound: Callable[P, T] = types.MethodType(method.__func__, reader)  # type: ignore[attr-defined]  # a bound method of self._reader
                return await trio.to_thread.run_sync(functools.partial(bound, *args, **kwargs))
            finally:
                self._free.append(reader)

    async def check(self) -> None:
        """A trivial read (health checks time it); raises what the database raises.

        Left to finish in its thread when its caller gives up (the health
        checks wait 2 s), and on PostgreSQL one at a time beside the reads'
        pool: with the database away, each probe's read waited for a pooled
        connection 10 s, /health took 10 s (a Kubernetes liveness probe of 1 s
        would restart every replica), and given-up probes held the reads'
        places, which delayed the recovery by 11-13 s."""
        await trio.to_thread.run_sync(self._checker.check, limiter=self._checks, abandon_on_cancel=True)

    async def reads_failing(self) -> str | None:
        """Why reads fail for want of the database (away, or refusing their
        statements for now: a table locked past ``lock_timeout``), answered
        503 ``database_unavailable``; None while they work. Readiness asks it:
        the trivial read of ``check`` answers while every read of a locked
        table fails, and a load balancer kept sending traffic to a replica
        that could not serve it.

        A failure stands until a read of every table reads use works (a read
        of another table working says nothing of the locked one), looked at
        every ``READS_RECHECK`` seconds by whoever asks then: a replica out of
        the balancer's rotation gets no reads that would find them working
        again. That read gives up with its caller, as ``check``'s does."""
        if self._failing.check_due(trio.current_time()):
            try:
                await trio.to_thread.run_sync(self._recheck, limiter=self._checks, abandon_on_cancel=True)
            except Exception as exc:  # noqa: BLE001  # whatever it is, the reads do not work yet: said in the reason
                self._failing.failed(_one_line(exc), trio.current_time())
            else:
                self._failing.over()
        return self._failing.reason

    async def deployments(self) -> list[Deployment]:
        return await self._call(self._reader.deployments)

    async def agents(self) -> list[AgentRecord]:
        return await self._call(self._reader.agents)

    async def deployment(self, deployment_hash: str) -> Deployment | None:
        """One deployment as stored (another replica may have changed it)."""
        return await self._call(self._reader.deployment, deployment_hash)

    async def agent(self, agent_id: str) -> AgentRecord | None:
        """One agent's record as stored (None: never enrolled, or forgotten)."""
        return await self._call(self._reader.agent, agent_id)

    async def deployments_named(self, hashes: Sequence[str]) -> dict[str, Deployment]:
        """Those of ``hashes`` that exist, by hash, in one query where the database allows."""
        if not hashes:
            return {}
        return {d.hash: d for d in await self._call(self._reader.deployments_named, hashes)}

    async def agents_named(self, agent_ids: Sequence[str]) -> dict[str, AgentRecord]:
        """Those of ``agent_ids`` that exist, by id, in one query where the database allows."""
        if not agent_ids:
            return {}
        return {a.id: a for a in await self._call(self._reader.agents_named, agent_ids)}

    async def app_statuses(self, deployment_hash: str) -> list[AppStatus]:
        """The newest status of each app of the deployment, by app code (bytewise)."""
        return await self._call(self._reader.app_statuses, deployment_hash)

    async def deployments_with_open_commands(self) -> list[str]:
        return await self._call(self._reader.deployments_with_open_commands)

    async def open_commands(self, deployment_hash: str) -> list[Command]:
        return await self._call(self._reader.open_commands, deployment_hash)

    async def idempotency_key(self, tenant: str, user_id: str, key: str) -> KeptAnswer | None:
        """A user's idempotency key and the answer of the request that made it
        (expired or not: ``KeptAnswer.expired``); None: never used, or pruned."""
        return await self._call(self._reader.idempotency_key, tenant, user_id, key)

    async def tenant_command_bytes(self, tenant: str) -> int:
        """What ``tenant``'s stored commands take: the count behind ``tenants.max_command_bytes``."""
        return await self._call(self._reader.tenant_command_bytes, tenant)

    async def command(self, command_id: str) -> Command | None:
        """The whole command, history, result and error included."""
        return await self._call(self._reader.command, command_id)

    async def commands(self, command_ids: Sequence[str]) -> dict[str, Command]:
        """The whole commands of those ids that exist, by id, in one query where the database allows."""
        if not command_ids:
            return {}
        return {c.id: c for c in await self._call(self._reader.commands, command_ids)}

    async def stored_command(self, command_id: str, *, inline_bytes: int) -> StoredCommand | None:
        """The command with its result and error only if each is at most ``inline_bytes``."""
        return await self._call(self._reader.stored_command, command_id, inline_bytes=inline_bytes)

    async def command_part(self, command_id: str, part: BulkPart, offset: int, length: int) -> CommandPart | None:
        """A slice of a command's encoded result or error."""
        return await self._call(self._reader.command_part, command_id, part, offset, length)

    async def command_summaries(self, deployment_hash: str, *, status: str | None, since: float | None,
                                until: float | None, limit: int, offset: int, max_bytes: int,
                                error_bytes: int) -> tuple[list[StoredCommand], int]:
        """A page of a deployment's commands, newest first, within ``max_bytes``,
        and how many match: summaries without history or result."""
        return await self._call(self._reader.command_summaries, deployment_hash, status=status, since=since,
                                until=until, limit=limit, offset=offset, max_bytes=max_bytes,
                                error_bytes=error_bytes)

    async def audit(self, tenant: str | None, *, action: str | None, actor: str | None, since: float | None,
                    until: float | None, limit: int, offset: int,
                    every_tenant: bool = False) -> tuple[list[AuditRecord], int]:
        """A page of a tenant's audit records (None: those in no tenant's log;
        ``every_tenant``: all), newest first, and how many match."""
        return await self._call(self._reader.audit, tenant, action=action, actor=actor, since=since, until=until,
                                limit=limit, offset=offset, every_tenant=every_tenant)

    async def latest_alerts(self, *, since: float | None = None,
                            fingerprints: Sequence[str] | None = None) -> list[AuditRecord]:
        """The newest alert change audit record (``alert.firing``/``alert.resolved``)
        of each alert made at ``since`` or later (None: ever), of those
        ``fingerprints`` (None: of every alert), oldest first: what the alerts
        firing now are rebuilt from."""
        if fingerprints is not None and not fingerprints:
            return []
        return await self._call(self._reader.latest_alerts, since=since, fingerprints=fingerprints)

    def close(self) -> None:
        for reader in self._all:
            reader.close()


def _one_line(error: BaseException) -> str:
    """A database error as one line, as logs and readiness say it."""
    return " ".join(str(error).split())[:300] or type(error).__name__
