"""The PostgreSQL store's reads: a bounded pool of connections, each query in
a worker thread (``StoreReader`` bounds the threads to the pool's size).
They see committed data only; a listing's count and page, one snapshot."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any, TypeVar

import psycopg

from psycopg.rows import TupleRow
from psycopg_pool import ConnectionPool, PoolTimeout

from trioscope.domain.apps import AppStatus
from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment, DeploymentStatus
from trioscope.domain.idempotency import KeptAnswer

from ._command_rows import OPEN_STATUSES_SQL, command_from_columns
from ._ops import Unavailable
from ._listings import AUDIT_COLUMNS, audit_filter, audit_record, command_filter, summary_page
from ._postgres import CONNECT_TIMEOUT, Connection, configure, connect, connection_options, describe
from ._postgres_migrations import schema_version
from ._read_results import AuditRecord, BulkPart, CommandPart, StoredCommand
from . import _idempotency_keys as idempotency_keys
from ._tenant_usage import TENANT_COMMAND_BYTES

READ_POOL_SIZE = 4
"""Reader connections per process: reads are short, and every replica's
connections count against the server's ``max_connections`` (100 by default)."""
PAGE_FETCH = 16
"""Rows of a listing fetched at a time: a page stops at its byte budget."""
_INT4_MAX = 2**31 - 1
RECHECK_LOCK_TIMEOUT, RECHECK_STATEMENT_TIMEOUT = "1s", "1500ms"
"""How long ``tables_answer`` waits for a lock, and runs: within the health
checks' ``CHECK_TIMEOUT`` (2 s), which it is run under. The lock's is the
shorter, so that a locked table is said as one (a lock's wait counts in the
statement's time)."""
READ_TABLES = ("deployments", "agents", "app_statuses", "commands", "audit", "idempotency_keys", "tenant_usage")
"""Every table this module reads."""
_TABLES_ANSWER = "SELECT " + ", ".join(f"(SELECT 1 FROM {table} LIMIT 0)" for table in READ_TABLES)
"""No row read, but each table opened, and its lock taken, as a read does."""

T = TypeVar("T")


class PostgresReader:
    """Queries on a bounded pool of connections; they see committed data only."""

    def __init__(self, url: str, *, pool_size: int = READ_POOL_SIZE) -> None:
        with contextlib.closing(connect(url)) as db:
            schema_version(db)  # a later version's tables would be misread
        self.pool_size = pool_size
        self.pool: ConnectionPool[Connection] = ConnectionPool(
            url, min_size=1, max_size=pool_size, num_workers=1, open=False, name="trioscope-reads",
            kwargs={"autocommit": True, **connection_options(url)}, configure=configure,
            timeout=CONNECT_TIMEOUT)
        try:
            self.pool.open(wait=True, timeout=CONNECT_TIMEOUT)
        except PoolTimeout:
            self.pool.close()
            raise Unavailable(f"cannot open connections to {describe(url)}") from None

    def close(self) -> None:
        self.pool.close()

    def _read(self, read: Callable[[Connection], T]) -> T:
        """``read`` on a connection of the pool; once more, on another, if that
        one turns out broken (the server restarted since its last use): reads
        change nothing. The pool hands connections out unchecked (its
        ``check`` costs a round trip, and a transaction, on every read)."""
        for attempt in range(2):
            with self.pool.connection() as db:
                try:
                    return read(db)
                except psycopg.OperationalError:
                    if attempt or not db.broken:
                        raise
            # The pool replaced the broken connection as it took it back. Its
            # other idle ones died with it (the server restarted): checked now,
            # once, so that the retry does not take another dead one.
            self.pool.check()
        raise AssertionError("unreachable")

    def _snapshot(self, read: Callable[[Connection], T]) -> T:
        """``read`` in one read transaction: every query in it sees the same committed state."""
        def in_snapshot(db: Connection) -> T:
            with db.transaction():
                db.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
                return read(db)
        return self._read(in_snapshot)

    def _rows(self, query: str, args: Sequence[Any] | Mapping[str, Any] = ()) -> list[TupleRow]:
        return self._read(lambda db: db.execute(query, args, binary=True).fetchall())

    def check(self) -> None:
        """A trivial read: the database answers."""
        self._rows("SELECT 1")

    def tables_answer(self) -> None:
        """Every table reads use answers a read now, within ``RECHECK_STATEMENT_TIMEOUT``:
        a table locked (a ``VACUUM FULL``, an operator's ``LOCK TABLE``) fails it
        as the reads of that table fail, but sooner than their ``lock_timeout``."""
        def read(db: Connection) -> None:
            with db.transaction():
                db.execute(f"SET LOCAL lock_timeout = '{RECHECK_LOCK_TIMEOUT}'; "
                           f"SET LOCAL statement_timeout = '{RECHECK_STATEMENT_TIMEOUT}'")
                db.execute(_TABLES_ANSWER)
        self._read(read)

    def deployments(self, where: str = "", *args: object) -> list[Deployment]:
        rows = self._rows("SELECT hash, tenant, user_id, created_at, enrollment_hash, status, metadata FROM deployments"
                          + where, args)
        return [Deployment(hash=h, tenant=t, user_id=u, created_at=c, enrollment_hash=e,
                           status=DeploymentStatus(s), metadata=m)
                for h, t, u, c, e, s, m in rows]

    def deployment(self, deployment_hash: str) -> Deployment | None:
        found = self.deployments(" WHERE hash = %s", deployment_hash)
        return found[0] if found else None

    def deployments_named(self, hashes: Sequence[str]) -> list[Deployment]:
        """Those of ``hashes`` that exist, in one query."""
        return self.deployments(" WHERE hash = ANY(%s)", list(hashes))

    def agents_named(self, agent_ids: Sequence[str]) -> list[AgentRecord]:
        """Those of ``agent_ids`` that exist, in one query."""
        return self.agents(" WHERE id = ANY(%s)", list(agent_ids))

    def agent(self, agent_id: str) -> AgentRecord | None:
        found = self.agents(" WHERE id = %s", agent_id)
        return found[0] if found else None

    def agents(self, where: str = "", *args: object) -> list[AgentRecord]:
        rows = self._rows(
            "SELECT id, deployment_hash, token_hash, status, created_at, decommissioned_at, document FROM agents"
            + where, args)
        return [AgentRecord(id=agent_id, deployment_hash=deployment, token_hash=token_hash,
                            status=AgentStatus(status), created_at=created, decommissioned_at=decommissioned,
                            capabilities=tuple(extra["capabilities"]), version=extra["version"],
                            system_info=extra["system_info"])
                for agent_id, deployment, token_hash, status, created, decommissioned, extra in rows]

    def app_statuses(self, deployment_hash: str) -> list[AppStatus]:
        """The newest status of each app of the deployment, by app code."""
        rows = self._rows(
            "SELECT deployment_hash, app_code, status, logs, updated_at, received_at, agent_id FROM app_statuses"
            " WHERE deployment_hash = %s ORDER BY app_code COLLATE \"C\"", (deployment_hash,))
        return [AppStatus(deployment_hash=d, app_code=a, status=s, logs=tuple(logs), updated_at=u, received_at=r,
                          agent_id=g) for d, a, s, logs, u, r, g in rows]

    def open_commands(self, deployment_hash: str) -> list[Command]:
        rows = self._rows(
            f"SELECT document, error, history, result FROM commands WHERE deployment_hash = %s"
            f" AND status IN {OPEN_STATUSES_SQL} ORDER BY sequence", (deployment_hash,))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

    def deployments_with_open_commands(self) -> list[str]:
        rows = self._rows(f"SELECT DISTINCT deployment_hash FROM commands WHERE status IN {OPEN_STATUSES_SQL}")
        return [h for (h,) in rows]

    def idempotency_key(self, tenant: str, user_id: str, key: str) -> KeptAnswer | None:
        """A user's idempotency key and its answer, as stored (expired or not)."""
        rows = self._rows(idempotency_keys.READ.format(m="%s"), (tenant, user_id, key))
        return idempotency_keys.kept_answer(rows[0]) if rows else None

    def tenant_command_bytes(self, tenant: str) -> int:
        """What ``tenant``'s stored commands take (``_tenant_usage``)."""
        rows = self._rows(TENANT_COMMAND_BYTES.format(mark="%s"), (tenant,))
        return int(rows[0][0]) if rows else 0

    def command(self, command_id: str) -> Command | None:
        """The whole command, result and history included (for the queue actors)."""
        rows = self._rows("SELECT document, error, history, result FROM commands WHERE id = %s", (command_id,))
        if not rows:
            return None
        document, error, history, result = rows[0]
        return command_from_columns(document, error=error, history=history, result=result)

    def commands(self, command_ids: Sequence[str]) -> list[Command]:
        """The whole commands of those ids that exist, in one query (in no particular order)."""
        rows = self._rows("SELECT document, error, history, result FROM commands WHERE id = ANY(%s)",
                          (list(command_ids),))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

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
            command=command_from_columns(document, error=error, history=history, result=result, raw_result=True),
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
        clause, args = command_filter(deployment_hash, status=status, since=since, until=until, mark="%s")

        def read(db: Connection) -> tuple[list[StoredCommand], int]:
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
                return summary_page(cursor, max_bytes), total
        return self._snapshot(read)

    def audit(self, tenant: str | None, *, action: str | None, actor: str | None, since: float | None,
              until: float | None, limit: int, offset: int,
              every_tenant: bool = False) -> tuple[list[AuditRecord], int]:
        """A page of audit records, newest first, and how many match: of
        ``tenant``; with ``tenant`` None, those in no tenant's log (refused
        requests whose credentials named nobody); with ``every_tenant``, all."""
        clause, args = audit_filter(tenant, action=action, actor=actor, since=since, until=until,
                                    every_tenant=every_tenant, mark="%s")

        def read(db: Connection) -> tuple[list[TupleRow], int]:
            row = db.execute(f"SELECT count(*) FROM audit WHERE {clause}", args).fetchone()
            total = 0 if row is None else int(row[0])
            return db.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {clause} ORDER BY id DESC LIMIT %s OFFSET %s",
                              [*args, limit, offset], binary=True).fetchall(), total
        rows, total = self._snapshot(read)
        return [audit_record(row) for row in rows], total

    # Copying a whole store (``_copy``)

    def commands_after(self, after: str, limit: int) -> list[Command]:
        """Up to ``limit`` whole commands with ids after ``after``, in id order."""
        rows = self._rows("SELECT document, error, history, result FROM commands WHERE id > %s ORDER BY id LIMIT %s",
                          (after, limit))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

    def latest_alerts(self, *, since: float | None, fingerprints: Sequence[str] | None) -> list[AuditRecord]:
        """The newest alert change record (``alert.firing``/``alert.resolved``)
        of each alert (tenant and fingerprint) made at ``since`` or later, of
        those ``fingerprints`` (None: of every alert), oldest first."""
        rows = self._rows(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id IN (SELECT max(id) FROM audit"
            " WHERE resource_type = 'alert' AND action IN ('alert.firing', 'alert.resolved') AND at >= %s"
            " AND (%s::text[] IS NULL OR resource_id = ANY(%s::text[])) GROUP BY tenant, resource_id) ORDER BY id",
            (float("-inf") if since is None else since, None if fingerprints is None else list(fingerprints),
             None if fingerprints is None else list(fingerprints)))
        return [audit_record(row) for row in rows]

    def idempotency_keys_after(self, after: tuple[str, str, str], limit: int) -> list[KeptAnswer]:
        """Up to ``limit`` idempotency keys after ``after`` (tenant, user id, key), in that order."""
        rows = self._rows(idempotency_keys.AFTER.format(m="%s"), (*after, limit))
        return [idempotency_keys.kept_answer(row) for row in rows]

    def audit_after(self, after: int, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` audit records numbered after ``after``, oldest first."""
        rows = self._rows(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id > %s ORDER BY id LIMIT %s", (after, limit))
        return [audit_record(row) for row in rows]
