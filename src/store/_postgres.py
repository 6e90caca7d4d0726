"""The PostgreSQL store: one writer connection (group commits), a bounded pool of
reader connections; what replicas share when they serve one installation.

The semantics are SQLite's (``_sqlite``): every group of a commit is
all-or-nothing (a savepoint each), all groups of a call are one transaction,
a compare-and-set that finds the row changed is a ``Conflict``, a value the
database refuses is ``Rejected``. In the same transaction, each committed
group's command, deployment and agent changes are announced to the other
replicas (``_changes``); PostgreSQL delivers the notifications on commit only.
Committed means flushed to disk (PostgreSQL's default ``synchronous_commit``).
All methods block: callers run them in worker threads, at most one at a time
on the writer and at most ``pool_size`` on a reader.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_loads
from psycopg_pool import ConnectionPool, PoolTimeout

from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment, DeploymentStatus

from ._changes import CHANGES_CHANNEL, changes_of, encode_change
from ._command_rows import OPEN_STATUSES_SQL, command_columns, command_from_columns, finished_at
from ._ops import (AuditEntry, Conflict, ForgetAgents, Rejected, SaveAgent, SaveCommand, SaveDeployment, Unavailable,
                   Write)
from ._postgres_migrations import migrate, schema_version
from ._reads import AuditRecord, BulkPart, CommandPart, StoredCommand

Connection = psycopg.Connection[TupleRow]

READ_POOL_SIZE = 4
"""Reader connections per process: reads are short, and every replica's
connections count against the server's ``max_connections`` (100 by default)."""
CONNECT_TIMEOUT = 10
"""Seconds to wait for a connection before the database counts as unreachable."""
PAGE_FETCH = 16
"""Rows of a listing fetched at a time: a page stops at its byte budget."""
_INT4_MAX = 2**31 - 1

REFUSED: tuple[type[BaseException], ...] = (
    psycopg.IntegrityError,  # an id, a token taken; a deployment that does not exist
    psycopg.DataError,  # a NUL character in a text column, a number out of range
    psycopg.errors.ProgramLimitExceeded,  # a key too long for its index
    orjson.JSONEncodeError,  # nested deeper than JSON encoders go
)
"""A group's own failures, not the store's: they reject the group, never crash the writer."""

URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(database: str) -> bool:
    return database.startswith(URL_SCHEMES)


def describe(url: str) -> str:
    """Where ``url`` points, for messages: never its password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "a PostgreSQL URL that libpq cannot parse"
    return f"postgresql://{params.get('host', 'localhost')}:{params.get('port', 5432)}/{params.get('dbname', '')}"


def _configure(db: Connection) -> None:
    set_json_loads(orjson.loads, db)


def connect(url: str) -> Connection:
    """An autocommit connection (transactions are explicit).

    Raises:
        Unavailable: the server cannot be reached or refuses the login.
    """
    try:
        db = psycopg.connect(url, autocommit=True, connect_timeout=CONNECT_TIMEOUT)
    except psycopg.Error as exc:
        raise Unavailable(f"cannot connect to {describe(url)}: {str(exc).strip()}") from None
    _configure(db)
    return db


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


class PostgresWriter:
    """Applies groups of writes; each group all-or-nothing, all groups of one call
    in one transaction (one flush), each committed group announced."""

    def __init__(self, url: str, *, origin: str | None = None) -> None:
        self.url = url
        self.origin = origin if origin is not None else secrets.token_hex(8)
        """Names this writer in its change notifications."""
        self.connection = connect(url)
        try:
            migrate(self.connection)
        except psycopg.Error as exc:
            self.connection.close()
            raise Unavailable(f"cannot create or migrate the schema in {describe(url)}: {str(exc).strip()}") from None
        except BaseException:
            self.connection.close()
            raise

    def close(self) -> None:
        self.connection.close()

    def _db(self) -> Connection:
        """The connection, a new one if the last call lost it (a server restart)."""
        if self.connection.closed or self.connection.broken:
            self.connection.close()
            self.connection = connect(self.url)
        return self.connection

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        """Write every group in one transaction; a group that fails (a conflict, a
        refused value) is rolled back alone and its error returned in its place."""
        db = self._db()
        results: list[BaseException | None] = []
        payloads: list[str] = []
        with db.transaction():
            for group in groups:
                forgotten: dict[str, str] = {}
                try:
                    with db.transaction():  # a savepoint
                        for write in group:
                            self._apply(db, write, forgotten)
                except Conflict as exc:
                    results.append(exc)
                except REFUSED as exc:
                    rejected = Rejected(f"{type(exc).__name__}: {exc}")
                    rejected.__cause__ = exc
                    results.append(rejected)
                else:
                    results.append(None)
                    payloads.extend(encode_change(c) for c in changes_of(group, self.origin, forgotten))
            if payloads:
                db.execute("SELECT pg_notify(%s, payload) FROM unnest(%s::text[]) AS payload",
                           (CHANGES_CHANNEL, payloads))
        return results

    def prune(self, before: float, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` commands finished before ``before`` (unix
        seconds), and up to ``batch`` audit records made before it; answers how
        many of each. Open commands stay whatever their age. Rows another
        replica is pruning at the same moment are left to it."""
        db = self._db()
        with db.transaction():
            commands = db.execute(
                "DELETE FROM commands WHERE id IN (SELECT id FROM commands WHERE finished_at < %s LIMIT %s"
                " FOR UPDATE SKIP LOCKED)", (before, batch)).rowcount
            audit = db.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < %s LIMIT %s FOR UPDATE SKIP LOCKED)",
                (before, batch)).rowcount
        return commands, audit

    def _apply(self, db: Connection, write: Write, forgotten: dict[str, str]) -> None:
        if isinstance(write, SaveCommand):
            c = write.command
            columns = command_columns(c)
            if write.expected_version is None:
                db.execute(
                    "INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,"
                    " document, error, history, result, finished_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
                    (c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at,
                     len(c.history), *columns, finished_at(c)))
                return
            cursor = db.execute(
                "UPDATE commands SET status = %s, version = %s, document = %s, error = %s, history = %s,"
                " result = %s, finished_at = %s WHERE id = %s AND version = %s",
                (c.status.value, len(c.history), *columns, finished_at(c), c.id, write.expected_version))
            if cursor.rowcount != 1:
                raise Conflict(c.id)
        elif isinstance(write, AuditEntry):
            db.execute(
                "INSERT INTO audit (at, tenant, actor, action, resource_type, resource_id, outcome, address,"
                " user_agent, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)",
                (write.at, write.tenant, write.actor, write.action, write.resource_type, write.resource_id,
                 write.outcome, write.address, write.user_agent, _json(write.details)))
        elif isinstance(write, SaveDeployment):
            d = write.deployment
            db.execute(
                "INSERT INTO deployments (hash, tenant, user_id, created_at, enrollment_hash, status, metadata)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::json) ON CONFLICT (hash) DO UPDATE SET"
                " enrollment_hash = excluded.enrollment_hash, status = excluded.status, metadata = excluded.metadata",
                (d.hash, d.tenant, d.user_id, d.created_at, d.enrollment_hash, d.status.value, _json(d.metadata)))
        elif isinstance(write, SaveAgent):
            a = write.agent
            document = _json({"capabilities": list(a.capabilities), "version": a.version,
                              "system_info": a.system_info})
            db.execute(
                "INSERT INTO agents (id, deployment_hash, token_hash, status, created_at, decommissioned_at, document)"
                " VALUES (%s, %s, %s, %s, %s, %s, %s::json) ON CONFLICT (id) DO UPDATE SET"
                " token_hash = excluded.token_hash, status = excluded.status,"
                " decommissioned_at = excluded.decommissioned_at, document = excluded.document",
                (a.id, a.deployment_hash, a.token_hash, a.status.value, a.created_at, a.decommissioned_at, document))
        elif isinstance(write, ForgetAgents):
            cursor = db.execute("DELETE FROM agents WHERE id = ANY(%s) RETURNING id, deployment_hash",
                                (list(write.agent_ids),))
            forgotten.update((agent_id, deployment) for agent_id, deployment in cursor.fetchall())
        else:  # pragma: no cover - the Write union is closed
            raise TypeError(f"not a write: {write!r}")

    # Copying a whole store (``_copy``)

    def is_empty(self) -> bool:
        """No deployment, agent, command or audit record yet."""
        row = self._db().execute(
            "SELECT EXISTS (SELECT 1 FROM deployments) OR EXISTS (SELECT 1 FROM agents)"
            " OR EXISTS (SELECT 1 FROM commands) OR EXISTS (SELECT 1 FROM audit)").fetchone()
        return row is not None and not row[0]

    def restore(self, commands: Sequence[Command], audit: Sequence[AuditRecord]) -> None:
        """Write ``commands`` and ``audit`` records as they are, ids kept (a row of
        the same id is replaced), in one transaction; later audit records are
        numbered after the largest id.

        Raises:
            Rejected: the database refused a row (nothing of the call was written).
        """
        db = self._db()
        try:
            self._restore(db, commands, audit)
        except REFUSED as exc:
            raise Rejected(f"{type(exc).__name__}: {exc}") from exc

    def _restore(self, db: Connection, commands: Sequence[Command], audit: Sequence[AuditRecord]) -> None:
        with db.transaction():
            for c in commands:
                db.execute(
                    "INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,"
                    " document, error, history, result, finished_at)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                    " deployment_hash = excluded.deployment_hash, tenant = excluded.tenant,"
                    " sequence = excluded.sequence, status = excluded.status, created_at = excluded.created_at,"
                    " version = excluded.version, document = excluded.document, error = excluded.error,"
                    " history = excluded.history, result = excluded.result, finished_at = excluded.finished_at",
                    (c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at, len(c.history),
                     *command_columns(c), finished_at(c)))
            for record in audit:
                e = record.entry
                db.execute(
                    "INSERT INTO audit (id, at, tenant, actor, action, resource_type, resource_id, outcome, address,"
                    " user_agent, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)"
                    " ON CONFLICT (id) DO UPDATE SET at = excluded.at, tenant = excluded.tenant,"
                    " actor = excluded.actor, action = excluded.action, resource_type = excluded.resource_type,"
                    " resource_id = excluded.resource_id, outcome = excluded.outcome, address = excluded.address,"
                    " user_agent = excluded.user_agent, details = excluded.details",
                    (record.id, e.at, e.tenant, e.actor, e.action, e.resource_type, e.resource_id, e.outcome,
                     e.address, e.user_agent, _json(e.details)))
            if audit:
                db.execute("SELECT setval(pg_get_serial_sequence('audit', 'id'), coalesce(max(id), 0) + 1, false)"
                           " FROM audit")


class PostgresReader:
    """Queries on a bounded pool of connections; they see committed data only."""

    def __init__(self, url: str, *, pool_size: int = READ_POOL_SIZE) -> None:
        with contextlib.closing(connect(url)) as db:
            schema_version(db)  # a later version's tables would be misread
        self.pool_size = pool_size
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            url, min_size=1, max_size=pool_size, num_workers=1, open=False, name="trioscope-reads",
            kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT}, configure=_configure,
            check=ConnectionPool.check_connection, timeout=CONNECT_TIMEOUT)
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self.pool.close()
            raise Unavailable(f"cannot open connections to {describe(url)}") from None

    def close(self) -> None:
        self.pool.close()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[Connection]:
        """One read transaction: every query in it sees the same committed state."""
        with self.pool.connection() as db, db.transaction():
            db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            yield db

    def _rows(self, query: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[TupleRow]:
        with self.pool.connection() as db:
            return db.execute(query, args, binary=True).fetchall()

    def deployments(self) -> list[Deployment]:
        rows = self._rows("SELECT hash, tenant, user_id, created_at, enrollment_hash, status, metadata FROM deployments")
        return [Deployment(hash=h, tenant=t, user_id=u, created_at=c, enrollment_hash=e,
                           status=DeploymentStatus(s), metadata=m)
                for h, t, u, c, e, s, m in rows]

    def agents(self) -> list[AgentRecord]:
        rows = self._rows(
            "SELECT id, deployment_hash, token_hash, status, created_at, decommissioned_at, document FROM agents")
        return [AgentRecord(id=agent_id, deployment_hash=deployment, token_hash=token_hash,
                            status=AgentStatus(status), created_at=created, decommissioned_at=decommissioned,
                            capabilities=tuple(extra["capabilities"]), version=extra["version"],
                            system_info=extra["system_info"])
                for agent_id, deployment, token_hash, status, created, decommissioned, extra in rows]

    def open_commands(self, deployment_hash: str) -> list[Command]:
        rows = self._rows(
            f"SELECT document, error, history, result FROM commands WHERE deployment_hash = %s"
            f" AND status IN {OPEN_STATUSES_SQL} ORDER BY sequence", (deployment_hash,))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

    def deployments_with_open_commands(self) -> list[str]:
        rows = self._rows(f"SELECT DISTINCT deployment_hash FROM commands WHERE status IN {OPEN_STATUSES_SQL}")
        return [h for (h,) in rows]

    def command(self, command_id: str) -> Command | None:
        """The whole command, result and history included (for the queue actors)."""
        rows = self._rows("SELECT document, error, history, result FROM commands WHERE id = %s", (command_id,))
        if not rows:
            return None
        document, error, history, result = rows[0]
        return command_from_columns(document, error=error, history=history, result=result)

    def stored_command(self, command_id: str, *, inline_bytes: int) -> StoredCommand | None:
        """The command with its history, and its result and error when their JSON
        is at most ``inline_bytes`` (larger ones are not read: ``command_part``)."""
        rows = self._rows(
            "SELECT document, history, octet_length(error), CASE WHEN octet_length(error) <= %(n)s THEN error END,"
            " octet_length(result), CASE WHEN octet_length(result) <= %(n)s THEN result END"
            " FROM commands WHERE id = %(id)s", {"n": inline_bytes, "id": command_id})
        if not rows:
            return None
        document, history, error_bytes, error, result_bytes, result = rows[0]
        return StoredCommand(
            command=command_from_columns(document, error=error, history=history, result=result),
            result_bytes=result_bytes, error_bytes=error_bytes, result_included=result is not None,
            error_included=error is not None, history_included=True)

    def command_part(self, command_id: str, part: BulkPart, offset: int, length: int) -> CommandPart | None:
        """Bytes ``[offset, offset + length)`` of the command's result or error as
        JSON; PostgreSQL reads only the chunks of the value they lie in."""
        column = {"result": "result", "error": "error"}[part]  # never text from the caller in SQL
        start = min(max(offset, 0), _INT4_MAX - 1) + 1  # substring counts from 1
        rows = self._rows(
            f"SELECT deployment_hash, octet_length({column}), substring({column} FROM %s FOR %s)"
            " FROM commands WHERE id = %s", (start, min(max(length, 0), _INT4_MAX), command_id))
        if not rows:
            return None
        deployment_hash, total, data = rows[0]
        return CommandPart(deployment_hash=deployment_hash, total=total, data=bytes(data))

    def command_summaries(self, deployment_hash: str, *, status: str | None, since: float | None,
                          until: float | None, limit: int, offset: int, max_bytes: int,
                          error_bytes: int) -> tuple[list[StoredCommand], int]:
        """One page, newest first, and the number of matches. Summaries leave out
        the history and the result (only its size is read) and keep the error
        when its JSON is at most ``error_bytes``. The page ends early, after at
        least one command, before the documents and errors read pass ``max_bytes``."""
        where = ["deployment_hash = %s"]
        args: list[Any] = [deployment_hash]
        for condition, value in (("status = %s", status), ("created_at >= %s", since), ("created_at < %s", until)):
            if value is not None:
                where.append(condition)
                args.append(value)
        clause = " AND ".join(where)
        page: list[StoredCommand] = []
        read = 0
        with self._snapshot() as db:
            row = db.execute(f"SELECT count(*) FROM commands WHERE {clause}", args).fetchone()
            total = 0 if row is None else int(row[0])
            # The page's ids come from the index alone; the rows are fetched a
            # few at a time until the budget is spent.
            with db.cursor(name="summaries", binary=True) as cursor:
                cursor.itersize = PAGE_FETCH
                cursor.execute(
                    f"WITH page AS (SELECT id, sequence FROM commands WHERE {clause}"
                    " ORDER BY sequence DESC LIMIT %s OFFSET %s)"
                    " SELECT c.document, octet_length(c.error), CASE WHEN octet_length(c.error) <= %s THEN c.error END,"
                    " octet_length(c.result) FROM page JOIN commands c USING (id) ORDER BY page.sequence DESC",
                    [*args, limit, offset, error_bytes])
                for document, size, error, result_bytes in cursor:
                    weight = len(document) + (len(error) if error is not None else 0)
                    if page and read + weight > max_bytes:
                        break
                    read += weight
                    page.append(StoredCommand(
                        command=command_from_columns(document, error=error), result_bytes=result_bytes,
                        error_bytes=size, result_included=False, error_included=error is not None,
                        history_included=False))
        return page, total

    def audit(self, tenant: str | None, *, action: str | None, actor: str | None, since: float | None,
              until: float | None, limit: int, offset: int,
              every_tenant: bool = False) -> tuple[list[AuditRecord], int]:
        """A page of audit records, newest first, and how many match: of
        ``tenant``; with ``tenant`` None, those in no tenant's log (refused
        requests whose credentials named nobody); with ``every_tenant``, all."""
        where: list[str] = []
        args: list[Any] = []
        if not every_tenant:
            where.append("tenant IS NULL" if tenant is None else "tenant = %s")
            args.extend([] if tenant is None else [tenant])
        for column, value, op in (("action", action, "="), ("actor", actor, "="), ("at", since, ">="),
                                  ("at", until, "<")):
            if value is not None:
                where.append(f"{column} {op} %s")
                args.append(value)
        clause = " AND ".join(where) or "TRUE"
        with self._snapshot() as db:
            row = db.execute(f"SELECT count(*) FROM audit WHERE {clause}", args).fetchone()
            total = 0 if row is None else int(row[0])
            rows = db.execute(
                "SELECT id, at, tenant, actor, action, resource_type, resource_id, outcome, address, user_agent,"
                f" details FROM audit WHERE {clause} ORDER BY id DESC LIMIT %s OFFSET %s", [*args, limit, offset],
                binary=True).fetchall()
        return [_audit_record(row) for row in rows], total

    # Copying a whole store (``_copy``)

    def commands_after(self, after: str, limit: int) -> list[Command]:
        """Up to ``limit`` whole commands with ids after ``after``, in id order."""
        rows = self._rows("SELECT document, error, history, result FROM commands WHERE id > %s ORDER BY id LIMIT %s",
                          (after, limit))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

    def audit_after(self, after: int, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` audit records numbered after ``after``, oldest first."""
        rows = self._rows(
            "SELECT id, at, tenant, actor, action, resource_type, resource_id, outcome, address, user_agent, details"
            " FROM audit WHERE id > %s ORDER BY id LIMIT %s", (after, limit))
        return [_audit_record(row) for row in rows]


def _audit_record(row: TupleRow) -> AuditRecord:
    i, at, tenant, who, what, resource_type, resource_id, outcome, address, agent, details = row
    return AuditRecord(i, AuditEntry(at=at, tenant=tenant, actor=who, action=what, resource_type=resource_type,
                                     resource_id=resource_id, outcome=outcome, address=address, user_agent=agent,
                                     details=details))
