"""The PostgreSQL store's connections and its writer (one connection, group
commits); its reads are ``_postgres_reader``'s. What replicas share when they
serve one installation.

The semantics are SQLite's (``_sqlite``): every group of a commit is
all-or-nothing (a savepoint each), all groups of a call are one transaction,
a compare-and-set that finds the row changed is a ``Conflict``, a value the
database refuses is ``Rejected``. In the same transaction, each committed
group's command, deployment, agent and alert changes are announced to the other
replicas (``_changes``); PostgreSQL delivers the notifications on commit only.
Committed means flushed to disk (``synchronous_commit`` is set on for the writer).
All methods block: callers run them in a worker thread, one at a time.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Sequence

import orjson
import psycopg
import psycopg.errors
from psycopg.conninfo import conninfo_to_dict
from psycopg.rows import TupleRow
from psycopg.types.json import set_json_loads

from trioscope.config import hide_passwords
from trioscope.domain.commands import Command, parameters_bytes

from ._changes import CHANGES_CHANNEL, Change, CommandRow, changes_of, encode_change
from ._command_rows import command_columns, finished_at
from . import _idempotency_keys as idempotency_keys
from ._ops import (AuditEntry, Conflict, ForgetAgents, KeyTaken, Outdated, OverCommandBytes, OverQuota, Rejected,
                   SaveAgent, SaveAppStatus, SaveCommand, SaveDeployment, SaveIdempotencyKey, Unavailable, Write)
from ._postgres_migrations import migrate
from ._tenant_usage import TENANT_COMMAND_BYTES
from ._read_results import AuditRecord

Connection = psycopg.Connection[TupleRow]

CONNECT_TIMEOUT = 10
"""Seconds to wait for a connection before the database counts as unreachable."""

KEEPALIVES = {"keepalives": "1", "keepalives_idle": "10", "keepalives_interval": "5", "keepalives_count": "3",
              "tcp_user_timeout": "30000"}
"""TCP settings of every connection to PostgreSQL: a server that vanished
without closing the connection (a machine or network gone, a paused VM) is
found dead within ~25 s idle, or 30 s after data it was sent went
unacknowledged, rather than when the kernel gives up (hours), while a worker
thread of the store blocked on the socket (Trio cannot cancel it)."""


def connection_options(url: str) -> dict[str, str | int]:
    """libpq options for a connection to ``url``: the connect timeout, and
    ``KEEPALIVES`` where the URL does not set its own."""
    try:
        given = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        given = {}  # not a URL libpq reads: the connection says so
    return {"connect_timeout": CONNECT_TIMEOUT, **{k: v for k, v in KEEPALIVES.items() if k not in given}}

REFUSED: tuple[type[BaseException], ...] = (
    psycopg.IntegrityError,  # an id, a token taken; a deployment that does not exist
    psycopg.DataError,  # a NUL character in a text column, a number out of range
    psycopg.errors.ProgramLimitExceeded,  # a key too long for its index
    orjson.JSONEncodeError,  # nested deeper than JSON encoders go
)
"""A group's own failures, not the store's: they reject the group, never crash the writer."""


NOTIFY = "SELECT pg_notify(%s, payload) FROM unnest(%b::text[]) AS payload"
"""Every payload of a transaction in one statement. The array goes in binary
(``%b``): as text, psycopg escapes each of the payloads' JSON quotes with a
regular expression, which cost more CPU than all of a commit's other statements."""


COMMANDS_AND_AUDIT = """
WITH inserted AS (
    INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,
                          document, error, history, result, finished_at, parameters_bytes)
    SELECT n.id, n.deployment_hash, n.tenant, n.sequence, n.status, n.created_at, n.version,
           n.document, n.error, n.history, n.result, n.finished_at, n.parameters_bytes
    FROM unnest(%(new_id)b::text[], %(new_deployment)b::text[], %(new_tenant)b::text[],
                %(new_sequence)b::int8[], %(new_status)b::text[], %(new_created_at)b::float8[],
                %(new_version)b::int4[], %(new_document)b::bytea[], %(new_error)b::bytea[],
                %(new_history)b::bytea[], %(new_result)b::bytea[], %(new_finished_at)b::float8[],
                %(new_parameter_bytes)b::int8[], %(new_max_open)b::int8[], %(new_max_bytes)b::int8[],
                %(new_max_tenant_bytes)b::int8[])
        AS n(id, deployment_hash, tenant, sequence, status, created_at, version, document, error, history, result,
             finished_at, parameters_bytes, max_open, max_bytes, max_tenant_bytes)
    WHERE (n.max_open IS NULL OR (SELECT count(*) < n.max_open
                                  AND coalesce(sum(o.parameters_bytes), 0) + n.parameters_bytes <= n.max_bytes
                                  FROM commands AS o WHERE o.deployment_hash = n.deployment_hash
                                  AND o.finished_at IS NULL))
      AND (n.max_tenant_bytes IS NULL
           OR coalesce((SELECT u.command_bytes FROM tenant_usage AS u WHERE u.tenant = n.tenant), 0)
              < n.max_tenant_bytes)
    RETURNING 1),
changed AS (
    UPDATE commands AS c SET status = u.status, version = u.version, document = u.document, error = u.error,
        history = u.history, result = u.result, finished_at = u.finished_at
    FROM unnest(%(id)b::text[], %(expected)b::int4[], %(status)b::text[], %(version)b::int4[],
                %(document)b::bytea[], %(error)b::bytea[], %(history)b::bytea[], %(result)b::bytea[],
                %(finished_at)b::float8[])
        AS u(id, expected, status, version, document, error, history, result, finished_at)
    WHERE c.id = u.id AND c.version = u.expected
    RETURNING 1),
audited AS (
    INSERT INTO audit (at, tenant, actor, action, resource_type, resource_id, outcome, address, user_agent, details)
    SELECT at, tenant, actor, action, resource_type, resource_id, outcome, address, user_agent, details::json
    FROM unnest(%(at)b::float8[], %(tenant)b::text[], %(actor)b::text[], %(action)b::text[],
                %(resource_type)b::text[], %(resource_id)b::text[], %(outcome)b::text[], %(address)b::text[],
                %(user_agent)b::text[], %(details)b::text[])
        AS a(at, tenant, actor, action, resource_type, resource_id, outcome, address, user_agent, details)
    RETURNING 1),
announced AS (SELECT pg_notify(%(channel)b, payload) FROM unnest(%(payloads)b::text[]) AS payload)
SELECT 1 / ((SELECT count(*) FROM changed) = %(changes)b::int8
            AND (SELECT count(*) FROM inserted) = %(inserts)b::int8)::int,
       (SELECT count(*) FROM inserted), (SELECT count(*) FROM audited), (SELECT count(*) FROM announced)
"""
"""A call of command and audit writes alone (nearly every call): one statement,
so one round trip and, in autocommit, its own transaction, all-or-nothing.
Each table's rows go as arrays (in binary, ``%b``), inserted or changed in the
order of ``_lock_order``. A compare-and-set that finds its row changed, or a
new command over a quota (``OPEN_COMMANDS``, ``TENANT_COMMAND_BYTES``), makes the count of changed or
inserted rows short, and the division by zero that follows rolls the whole
statement back (``_Retry``), like a failing group of the pipelined path. The
notifications are selected in the statement's last part, which is read, so
that it runs (a CTE that nothing reads does not)."""

_NEW_COMMAND = ("new_id", "new_deployment", "new_tenant", "new_sequence", "new_status", "new_created_at",
                "new_version", "new_document", "new_error", "new_history", "new_result", "new_finished_at",
                "new_parameter_bytes", "new_max_open", "new_max_bytes", "new_max_tenant_bytes")
_CHANGED_COMMAND = ("id", "expected", "status", "version", "document", "error", "history", "result", "finished_at")
_AUDIT = ("at", "tenant", "actor", "action", "resource_type", "resource_id", "outcome", "address", "user_agent",
          "details")

OPEN_COMMANDS = "SELECT count(*), coalesce(sum(parameters_bytes), 0)::bigint FROM commands" \
    " WHERE deployment_hash = %s AND finished_at IS NULL"
"""A deployment's open commands and their parameters' bytes, every replica's:
what a new command's quota (``SaveCommand.quota``) is checked against, under
the deployment's quota lock (``_quota_locks``) so that two replicas' creates
take turns (index ``commands_open``)."""
QUOTA_LOCK = "SELECT pg_advisory_xact_lock(%s)"

SAVE_APP_STATUS = """
INSERT INTO app_statuses (deployment_hash, app_code, status, logs, updated_at, received_at, agent_id)
SELECT %(deployment)s, %(app)s, %(status)s, %(logs)s::json, %(updated_at)s, %(received_at)s, %(agent)s
WHERE %(max_apps)s::int8 IS NULL
   OR EXISTS (SELECT 1 FROM app_statuses WHERE deployment_hash = %(deployment)s AND app_code = %(app)s)
   OR (SELECT count(*) FROM app_statuses WHERE deployment_hash = %(deployment)s) < %(max_apps)s::int8
ON CONFLICT (deployment_hash, app_code) DO UPDATE SET status = excluded.status, logs = excluded.logs,
    updated_at = excluded.updated_at, received_at = excluded.received_at, agent_id = excluded.agent_id
WHERE excluded.updated_at >= app_statuses.updated_at
"""
"""An app's status (``SaveAppStatus``), as SQLite's ``SAVE_APP_STATUS``: no
row changed when a newer status is stored or the deployment has its
``max_apps`` apps (``_apply`` tells which)."""


def _quota_key(scope: str, name: str) -> int:
    """The advisory lock (a signed 64-bit key) of one quota's scope."""
    return int.from_bytes(hashlib.blake2b(f"trioscope quota {scope}\0{name}".encode(), digest_size=8).digest(),
                          "big", signed=True)


def _quota_locks(groups: Sequence[Sequence[Write]]) -> list[int]:
    """The quota locks a call's writes need, in the order every replica takes
    them: first in its transaction, before any row lock, so that no two
    transactions wait for each other in a circle. Read committed: each later
    statement of the transaction sees what the lock's last holder committed.

    Every write of a command takes its tenant's ``command bytes`` lock, not
    only a new one's: the triggers of ``_tenant_usage`` change the tenant's
    row of ``tenant_usage`` after each statement, and a row lock taken that
    late, in another order on another replica, would be a deadlock. So two
    replicas' transactions that change one tenant's commands take turns (the
    row's lock would have made them wait for each other's commit anyway)."""
    keys = set()
    for group in groups:
        for write in group:
            if isinstance(write, SaveCommand):
                keys.add(_tenant_bytes_key(write.command.tenant))
                if write.quota is not None:
                    keys.add(_quota_key("open commands", write.command.deployment_hash))
            elif isinstance(write, SaveIdempotencyKey):  # counted in its tenant's total too
                keys.add(_tenant_bytes_key(write.answer.tenant))
            elif isinstance(write, SaveDeployment) and write.max_of_tenant is not None:
                keys.add(_quota_key("deployments", write.deployment.tenant))
            elif isinstance(write, SaveAppStatus) and write.max_apps is not None:  # no command bytes: no trigger
                keys.add(_quota_key("apps", write.app.deployment_hash))
    return sorted(keys)


def _tenant_bytes_key(tenant: str) -> int:
    """The lock of a tenant's row of ``tenant_usage`` (``_tenant_usage``)."""
    return _quota_key("command bytes", tenant)


def _one_tenant_checked_twice(groups: Sequence[Sequence[Write]]) -> bool:
    """Whether two new commands of one tenant are checked against its stored
    bytes in this call (``SaveCommand.max_tenant_bytes``): one statement
    checks each new row against what was stored before the statement, so the
    second would not count the first (creates in several of a tenant's
    deployments at once went over by one each). Written a statement each,
    each insert's trigger has counted it before the next is checked."""
    tenants: set[str] = set()
    for group in groups:
        for write in group:
            if isinstance(write, SaveCommand) and write.max_tenant_bytes is not None:
                if write.command.tenant in tenants:
                    return True
                tenants.add(write.command.tenant)
    return False


def _take_quota_locks(db: Connection, keys: Sequence[int]) -> None:
    for key in keys:
        db.execute(QUOTA_LOCK, (key,))


class _Retry(Exception):
    """A commit sent at once found a conflict: it was rolled back, to be written group by group."""


_RETRIED: tuple[type[BaseException], ...] = (_Retry, *REFUSED)


def describe(url: str) -> str:
    """Where ``url`` points, for messages: never its password."""
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        return "a PostgreSQL URL that libpq cannot parse"
    host = str(params.get("host", "localhost"))
    if ":" in host and not host.startswith("["):  # an IPv6 address, bracketed as in a URL ("::1:5432" reads as one)
        host = f"[{host}]"
    where = f"postgresql://{host}:{params.get('port', 5432)}/{params.get('dbname', '')}"
    # Two schemas of one database are two stores: say which.
    schema = re.search(r"search_path\s*=\s*([^\s,]+)", str(params.get("options") or ""))
    return f"{where} (schema {schema.group(1)})" if schema else where


LOCK_TIMEOUT = "5s"
"""How long a statement waits for a lock where nothing else set ``lock_timeout``
(the URL's ``options``, ``PGOPTIONS``, the role's or the database's settings):
a table locked by something else (a ``VACUUM FULL``, a ``REINDEX``, an
operator's ``LOCK TABLE``) held every request that met it for as long (87 s),
and ``/health/ready`` said ready. Past it the statement fails as PostgreSQL
refusing for now: 503 ``database_unavailable``. Migrations wait as long as
they must (``_postgres_migrations.migrate``). Set after connecting, not as a
startup option, which PgBouncer refuses."""
STATEMENT_TIMEOUT = "30s"
"""How long a statement may run where nothing else set ``statement_timeout``
(as ``LOCK_TIMEOUT``): a slow one (a database swapping, a plan gone wrong)
held its request, and the connection it ran on, for as long. Every statement
the server makes works on a bounded batch (cleanups and copies by
``LIMIT``), milliseconds on a healthy database; past the limit it fails as
refusing for now, 503 ``database_unavailable``, as a lock timeout does.
Migrations run as long as they must."""
DEFAULT_TIMEOUTS = f"""
DO $$ BEGIN
    IF current_setting('lock_timeout') = '0' THEN PERFORM set_config('lock_timeout', '{LOCK_TIMEOUT}', false); END IF;
    IF current_setting('statement_timeout') = '0' THEN
        PERFORM set_config('statement_timeout', '{STATEMENT_TIMEOUT}', false);
    END IF;
END $$"""


def configure(db: Connection) -> None:
    """Set up a new connection: JSON values parsed by orjson, ``LOCK_TIMEOUT``, ``STATEMENT_TIMEOUT``."""
    set_json_loads(orjson.loads, db)
    db.execute(DEFAULT_TIMEOUTS)


def connect(url: str) -> Connection:
    """An autocommit connection (transactions are explicit).

    Raises:
        Unavailable: the server cannot be reached or refuses the login.
    """
    try:
        db = psycopg.connect(psycopg.conninfo.make_conninfo(url, **connection_options(url)), autocommit=True)
    except psycopg.Error as exc:
        raise Unavailable(f"cannot connect to {describe(url)}: {_one_line(exc, url)}") from None
    try:
        configure(db)
    except psycopg.Error as exc:
        db.close()
        raise Unavailable(f"cannot set up a connection to {describe(url)}: {_one_line(exc, url)}") from None
    return db


def _one_line(exc: BaseException, url: str) -> str:
    """libpq's message, its lines joined (the server logs it as one line),
    without the password of ``url``, which libpq quotes where it cannot parse it."""
    return hide_passwords(" ".join(str(exc).split()), url)


def _audit_text(value: str | None) -> str | None:
    """An audit record's text as PostgreSQL's text can hold it: a NUL (say, a
    ``%00`` in a refused request's path) becomes U+FFFD. The record of who
    tried what is kept rather than refused with the group (SQLite keeps NUL)."""
    return value.replace("\x00", "\ufffd") if value is not None and "\x00" in value else value


def _json(value: object) -> str:
    return orjson.dumps(value).decode()


DEADLOCK_RETRIES = 3
"""Transactions tried when PostgreSQL rolled them back for a deadlock with another replica's."""


def _lock_order(group: Sequence[Write]) -> tuple[int, str]:
    """Where a group comes in the order every replica applies groups in: those
    that change deployments and agents first, by deployment, then those that
    change a command, by command id. Within one call a row is in one group at
    most (each actor waits for its commit before its next change), so this
    order of groups is the order their row locks are taken: two replicas'
    transactions never wait for each other in a circle."""
    for write in group:
        if isinstance(write, SaveDeployment):
            return 0, write.deployment.hash
        if isinstance(write, SaveAgent):
            return 0, write.agent.deployment_hash
        if isinstance(write, ForgetAgents):
            return 1, ""
        if isinstance(write, SaveCommand):
            return 2, write.command.id
        if isinstance(write, SaveAppStatus):
            return 3, f"{write.app.deployment_hash}\0{write.app.app_code}"
    return 4, ""  # audit records alone: inserts, nothing to wait for


class PostgresWriter:
    """Applies groups of writes; each group all-or-nothing, all groups of one call
    in one transaction (one flush), each committed group announced."""

    identity = None
    """No file of its own (``StoreWriter.identity``): the server keeps it."""

    def moved(self) -> str | None:
        """Never (``StoreWriter.moved``): a database server has no file here to lose."""
        return None

    def __init__(self, url: str, *, origin: str | None = None) -> None:
        self.url = url
        self.origin = origin if origin is not None else secrets.token_hex(8)
        """Names this writer in its change notifications."""
        self.connection = self._connect()
        try:
            migrate(self.connection)
        except psycopg.Error as exc:
            self.connection.close()
            raise Unavailable(f"cannot create or migrate the schema in {describe(url)}: {_one_line(exc, url)}") from None
        except BaseException:
            self.connection.close()
            raise

    def close(self) -> None:
        self.connection.close()

    def _connect(self) -> Connection:
        db = connect(self.url)
        # Acknowledged means flushed to disk, whatever the server's default is.
        db.execute("SET synchronous_commit = on")
        # The writer's rows are found by primary key in a table whose pages are
        # in memory: at the default random_page_cost (4, a disk's) the cached
        # generic plan of COMMANDS_AND_AUDIT hash-joined a sequential scan of
        # commands, kept until an ANALYZE (auto_explain under the e2e bench:
        # 2.6 ms per commit, 0.74 ms with primary-key probes).
        db.execute("SET random_page_cost = 1.1")
        return db

    def _db(self) -> Connection:
        """The connection, a new one if the last call lost it (a server restart)."""
        if self.connection.closed or self.connection.broken:
            self.connection.close()
            self.connection = self._connect()
        return self.connection

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        """Write every group in one transaction; a group that fails (a conflict, a
        refused value) is rolled back alone and its error returned in its place.

        Every group is first sent at once, in one round trip: command and
        audit writes (nearly every call) as one statement, other writes in one
        pipeline; only when one of them fails is the transaction rolled back
        and written again a savepoint per group.

        Replicas' transactions lock the rows they change until they commit:
        groups are applied in the order of ``_lock_order``, and a deadlock
        PostgreSQL still finds rolls the transaction back to be tried again."""
        order = sorted(range(len(groups)), key=lambda i: _lock_order(groups[i]))
        for attempt in range(DEADLOCK_RETRIES):
            try:
                return self._commit(groups, order)
            except psycopg.errors.DeadlockDetected:
                if attempt == DEADLOCK_RETRIES - 1:
                    raise
        raise AssertionError("unreachable")

    def _commit(self, groups: Sequence[Sequence[Write]], order: list[int]) -> list[BaseException | None]:
        db = self._db()
        kinds = {type(write) for group in groups for write in group}
        if ForgetAgents not in kinds:
            try:
                if kinds <= {SaveCommand, AuditEntry} and not _one_tenant_checked_twice(groups):
                    return self._commit_statement(db, groups, order)
                return self._commit_pipelined(db, groups, order)
            except _RETRIED:
                pass  # rolled back: find the failing groups one savepoint at a time
        return self._commit_each(db, groups, order)

    def _commit_statement(self, db: Connection, groups: Sequence[Sequence[Write]],
                          order: list[int]) -> list[BaseException | None]:
        """Command and audit writes in one statement (``COMMANDS_AND_AUDIT``),
        assuming no group fails (rolled back and ``_Retry`` if one does)."""
        columns: dict[str, list[object]] = {name: [] for name in (*_NEW_COMMAND, *_CHANGED_COMMAND, *_AUDIT)}
        rows: dict[tuple[str, int], CommandRow] = {}
        for index in order:
            for write in groups[index]:
                if isinstance(write, SaveCommand):
                    c = write.command
                    row = rows[c.id, len(c.history)] = command_columns(c)
                    if write.expected_version is None:
                        quota = write.quota
                        values: tuple[object, ...] = (
                            c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at,
                            len(c.history), *row, finished_at(c), write.parameter_bytes,
                            None if quota is None else quota.max_open,
                            None if quota is None else quota.max_parameter_bytes, write.max_tenant_bytes)
                        names = _NEW_COMMAND
                    else:
                        values = (c.id, write.expected_version, c.status.value, len(c.history), *row, finished_at(c))
                        names = _CHANGED_COMMAND
                else:
                    assert isinstance(write, AuditEntry)
                    values = (write.at, *map(_audit_text, (write.tenant, write.actor, write.action,
                                                           write.resource_type, write.resource_id, write.outcome,
                                                           write.address, write.user_agent)), _json(write.details))
                    names = _AUDIT
                for name, value in zip(names, values, strict=True):
                    columns[name].append(value)
        # Announced in the groups' own order, whatever order their rows were written in.
        payloads = [self._payload(db, c, rows) for group in groups for c in changes_of(group, self.origin, {})]
        statement = {**columns, "channel": CHANGES_CHANNEL, "payloads": payloads, "changes": len(columns["id"]),
                     "inserts": len(columns["new_id"])}
        locks = _quota_locks(groups)
        try:
            if locks:
                with db.pipeline(), db.transaction():
                    _take_quota_locks(db, locks)
                    db.execute(COMMANDS_AND_AUDIT, statement)
            else:
                db.execute(COMMANDS_AND_AUDIT, statement)
        except psycopg.errors.DivisionByZero:
            # A compare-and-set found its row changed, or a command went over
            # its quota: which group's, the savepoints find.
            raise _Retry from None
        return [None] * len(groups)

    def _commit_pipelined(self, db: Connection, groups: Sequence[Sequence[Write]],
                          order: list[int]) -> list[BaseException | None]:
        """Every group (deployments and agents among them), in one pipeline and
        transaction, assuming none fails (rolled back and ``_Retry`` if one does)."""
        rows: dict[tuple[str, int], CommandRow] = {}
        with db.pipeline() as pipeline, db.transaction():
            _take_quota_locks(db, _quota_locks(groups))
            checks = [cursor for i in order for write in groups[i]
                      if (cursor := self._send(db, write, rows)) is not None]
            # Announced in the groups' own order (that of the commits asked for),
            # whatever order their rows were locked in.
            payloads = [self._payload(db, c, rows) for group in groups for c in changes_of(group, self.origin, {})]
            if payloads:
                db.execute(NOTIFY, (CHANGES_CHANNEL, payloads))
            pipeline.sync()
            if any(cursor.rowcount != 1 for cursor in checks):
                raise _Retry  # a conflict: which group's is found by the savepoints
        return [None] * len(groups)

    def _commit_each(self, db: Connection, groups: Sequence[Sequence[Write]],
                     order: list[int]) -> list[BaseException | None]:
        results: list[BaseException | None] = [None] * len(groups)
        announced: list[list[str]] = [[] for _ in groups]  # in the groups' own order, as the pipelined path
        rows: dict[tuple[str, int], CommandRow] = {}
        with db.transaction():
            _take_quota_locks(db, _quota_locks(groups))
            for index in order:
                group = groups[index]
                forgotten: dict[str, str] = {}
                try:
                    with db.transaction():  # a savepoint
                        for write in group:
                            self._apply(db, write, forgotten, rows)
                except (Conflict, Outdated, OverQuota, KeyTaken) as exc:
                    results[index] = exc
                except REFUSED as exc:
                    rejected = Rejected(f"{type(exc).__name__}: {exc}")
                    rejected.__cause__ = exc
                    results[index] = rejected
                else:
                    announced[index] = [self._payload(db, c, rows) for c in changes_of(group, self.origin, forgotten)]
            payloads = [payload for group_payloads in announced for payload in group_payloads]
            if payloads:
                db.execute(NOTIFY, (CHANGES_CHANNEL, payloads))
        return results

    @staticmethod
    def _payload(db: Connection, change: Change, rows: dict[tuple[str, int], CommandRow]) -> str:
        """``change``'s notification, with a command's row when the connection
        can send any text: a row holds the user's, which a database in another
        encoding than UTF-8 (say LATIN1) may have no character for."""
        utf8 = db.info.encoding == "utf-8"  # an alert's record holds the labels Alertmanager sent: the same
        row = rows.get((change.id, change.version or 0)) if utf8 else None
        return encode_change(change, row, carry_alert=utf8)

    def prune(self, before: float, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` commands finished before ``before`` (unix
        seconds), and up to ``batch`` audit records made before it; answers how
        many of each. Open commands stay whatever their age. Rows another
        replica is pruning at the same moment are left to it."""
        db = self._db()
        with db.transaction():
            # Their tenants' locks first, as every writer of their rows takes
            # them (``_quota_locks``): the delete's trigger changes the
            # tenants' totals. Only those tenants' commands are deleted, so a
            # command that finished since this read waits for the next batch.
            tenants = [tenant for (tenant,) in db.execute(
                "SELECT DISTINCT tenant FROM (SELECT tenant FROM commands WHERE finished_at < %s LIMIT %s) AS due",
                (before, batch))]
            _take_quota_locks(db, sorted(_tenant_bytes_key(tenant) for tenant in tenants))
            commands = db.execute(
                "DELETE FROM commands WHERE id IN (SELECT id FROM commands WHERE finished_at < %s"
                " AND tenant = ANY(%s::text[]) LIMIT %s FOR UPDATE SKIP LOCKED)", (before, tenants, batch)).rowcount
            audit = db.execute(
                "DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < %s LIMIT %s FOR UPDATE SKIP LOCKED)",
                (before, batch)).rowcount
        return commands, audit

    def prune_idempotency_keys(self, before: float, batch: int) -> int:
        """Delete up to ``batch`` idempotency keys made before ``before`` (unix
        seconds: their window is over); answers how many. Their tenants' locks
        first, as for commands (``prune``): their bytes leave their tenants' totals."""
        db = self._db()
        with db.transaction():
            tenants = [tenant for (tenant,) in db.execute(
                "SELECT DISTINCT tenant FROM (SELECT tenant FROM idempotency_keys WHERE created_at < %s LIMIT %s)"
                " AS due", (before, batch))]
            _take_quota_locks(db, sorted(_tenant_bytes_key(tenant) for tenant in tenants))
            return db.execute(
                "DELETE FROM idempotency_keys WHERE (tenant, user_id, key) IN (SELECT tenant, user_id, key"
                " FROM idempotency_keys WHERE created_at < %s AND tenant = ANY(%s::text[]) LIMIT %s"
                " FOR UPDATE SKIP LOCKED)", (before, tenants, batch)).rowcount

    def _apply(self, db: Connection, write: Write, forgotten: dict[str, str],
               rows: dict[tuple[str, int], CommandRow]) -> None:
        """Write ``write`` now. Raises ``Conflict`` when a compare-and-set found
        the row changed; adds the agents ``ForgetAgents`` deleted to ``forgotten``
        (and a command's row to ``rows``, as ``_send``)."""
        if isinstance(write, ForgetAgents):
            cursor = db.execute("DELETE FROM agents WHERE id = ANY(%s) RETURNING id, deployment_hash",
                                (list(write.agent_ids),))
            forgotten.update((agent_id, deployment) for agent_id, deployment in cursor.fetchall())
            return
        cursor = self._send(db, write, rows)
        if cursor is None or cursor.rowcount == 1:
            return
        if isinstance(write, SaveIdempotencyKey):  # a live key of the same name stored first
            raise KeyTaken(write.answer.key)
        if isinstance(write, SaveAppStatus):
            a = write.app
            if db.execute("SELECT 1 FROM app_statuses WHERE deployment_hash = %s AND app_code = %s",
                          (a.deployment_hash, a.app_code)).fetchone() is not None:
                raise Outdated(f"app {a.app_code}")
            found = db.execute("SELECT count(*) FROM app_statuses WHERE deployment_hash = %s",
                               (a.deployment_hash,)).fetchone()
            raise OverQuota(found[0] if found else 0)
        if isinstance(write, SaveDeployment):
            if write.spends is None:  # a new deployment, over its tenant's quota
                found = db.execute("SELECT count(*) FROM deployments WHERE tenant = %s",
                                   (write.deployment.tenant,)).fetchone()
                raise OverQuota(found[0] if found else 0)
            raise Conflict(write.deployment.hash, "deployment")
        assert isinstance(write, SaveCommand)
        if write.expected_version is None:  # a new command, over its tenant's or its deployment's quota
            if write.max_tenant_bytes is not None:
                used = db.execute(TENANT_COMMAND_BYTES.format(mark="%s"), (write.command.tenant,)).fetchone()
                if used is not None and used[0] >= write.max_tenant_bytes:
                    raise OverCommandBytes(used[0])
            found = db.execute(OPEN_COMMANDS, (write.command.deployment_hash,)).fetchone()
            raise OverQuota(*(found or (0, 0)))
        raise Conflict(write.command.id)

    def _send(self, db: Connection, write: Write,
              rows: dict[tuple[str, int], CommandRow]) -> psycopg.Cursor[TupleRow] | None:
        """Send the statement of ``write`` (not ``ForgetAgents``); for a
        compare-and-set, its cursor, whose ``rowcount`` is 1 unless the row changed.
        A command's columns are added to ``rows`` by id and version: its
        change notification carries them."""
        if isinstance(write, SaveCommand):
            c = write.command
            columns = rows[c.id, len(c.history)] = command_columns(c)
            if write.expected_version is None:
                insert = ("INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,"
                          " document, error, history, result, finished_at, parameters_bytes)"
                          " SELECT %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s")
                values: tuple[object, ...] = (c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value,
                                              c.created_at, len(c.history), *columns, finished_at(c),
                                              write.parameter_bytes)
                # Under the quotas' locks (``_quota_locks``).
                conditions: list[str] = []
                if write.quota is not None:
                    conditions.append(f"(SELECT o.n < %s AND o.size + %s <= %s FROM ({OPEN_COMMANDS}) AS o(n, size))")
                    values += (write.quota.max_open, write.parameter_bytes, write.quota.max_parameter_bytes,
                               c.deployment_hash)
                if write.max_tenant_bytes is not None:
                    conditions.append(f"coalesce(({TENANT_COMMAND_BYTES.format(mark='%s')}), 0) < %s")
                    values += (c.tenant, write.max_tenant_bytes)
                if not conditions:
                    db.execute(insert, values)
                    return None
                return db.execute(f"{insert} WHERE {' AND '.join(conditions)}", values)
            return db.execute(
                "UPDATE commands SET status = %s, version = %s, document = %s, error = %s, history = %s,"
                " result = %s, finished_at = %s WHERE id = %s AND version = %s",
                (c.status.value, len(c.history), *columns, finished_at(c), c.id, write.expected_version))
        if isinstance(write, SaveIdempotencyKey):  # unique per tenant and user (its primary key)
            return db.execute(idempotency_keys.SAVE.format(m="%s"), idempotency_keys.save_values(write))
        if isinstance(write, AuditEntry):
            db.execute(
                "INSERT INTO audit (at, tenant, actor, action, resource_type, resource_id, outcome, address,"
                " user_agent, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)",
                (write.at, *map(_audit_text, (write.tenant, write.actor, write.action, write.resource_type,
                                              write.resource_id, write.outcome, write.address, write.user_agent)),
                 _json(write.details)))
        elif isinstance(write, SaveDeployment):
            d = write.deployment
            if write.spends is not None:  # compare-and-set on the token it spends
                return db.execute(
                    "UPDATE deployments SET enrollment_hash = %s, status = %s, metadata = %s::json WHERE hash = %s"
                    " AND enrollment_hash = %s",
                    (d.enrollment_hash, d.status.value, _json(d.metadata), d.hash, write.spends))
            values = (d.hash, d.tenant, d.user_id, d.created_at, d.enrollment_hash, d.status.value, _json(d.metadata))
            upsert = (" ON CONFLICT (hash) DO UPDATE SET enrollment_hash = excluded.enrollment_hash,"
                      " status = excluded.status, metadata = excluded.metadata")
            insert = ("INSERT INTO deployments (hash, tenant, user_id, created_at, enrollment_hash, status, metadata)"
                      " SELECT %s, %s, %s, %s, %s, %s, %s::json")
            if write.max_of_tenant is not None:  # under the tenant's quota lock (``_quota_locks``)
                return db.execute(f"{insert} WHERE (SELECT count(*) FROM deployments WHERE tenant = %s) < %s{upsert}",
                                  (*values, d.tenant, write.max_of_tenant))
            db.execute(insert + upsert, values)
        elif isinstance(write, SaveAppStatus):
            app = write.app
            # Under the deployment's apps lock (``_quota_locks``) when it has a limit.
            return db.execute(SAVE_APP_STATUS, {
                "deployment": app.deployment_hash, "app": app.app_code, "status": app.status,
                "logs": _json(list(app.logs)), "updated_at": app.updated_at, "received_at": app.received_at,
                "agent": app.agent_id, "max_apps": write.max_apps})
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
        else:  # pragma: no cover - the Write union is closed (ForgetAgents goes through _apply)
            raise TypeError(f"not a write here: {write!r}")
        return None

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
                ended = finished_at(c)
                db.execute(
                    "INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version,"
                    " document, error, history, result, finished_at, parameters_bytes)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (id) DO UPDATE SET"
                    " deployment_hash = excluded.deployment_hash, tenant = excluded.tenant,"
                    " sequence = excluded.sequence, status = excluded.status, created_at = excluded.created_at,"
                    " version = excluded.version, document = excluded.document, error = excluded.error,"
                    " history = excluded.history, result = excluded.result, finished_at = excluded.finished_at,"
                    " parameters_bytes = excluded.parameters_bytes",
                    (c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at, len(c.history),
                     *command_columns(c), ended, 0 if ended is not None else parameters_bytes(c.parameters)))
            for record in audit:
                e = record.entry
                db.execute(
                    "INSERT INTO audit (id, at, tenant, actor, action, resource_type, resource_id, outcome, address,"
                    " user_agent, details) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s::json)"
                    " ON CONFLICT (id) DO UPDATE SET at = excluded.at, tenant = excluded.tenant,"
                    " actor = excluded.actor, action = excluded.action, resource_type = excluded.resource_type,"
                    " resource_id = excluded.resource_id, outcome = excluded.outcome, address = excluded.address,"
                    " user_agent = excluded.user_agent, details = excluded.details",
                    (record.id, e.at, *map(_audit_text, (e.tenant, e.actor, e.action, e.resource_type,
                                                         e.resource_id, e.outcome, e.address, e.user_agent)),
                     _json(e.details)))
            if audit:
                db.execute("SELECT setval(pg_get_serial_sequence('audit', 'id'), coalesce(max(id), 0) + 1, false)"
                           " FROM audit")
