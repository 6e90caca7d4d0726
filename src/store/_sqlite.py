"""The SQLite store: one writer connection (group commits); reads on
``SqliteReader`` connections (``StoreReader`` keeps ``SQLITE_READERS`` of them).

WAL mode, so readers never wait for the writer; ``synchronous=FULL`` so a
committed group survives ``kill -9`` and power loss alike. All methods block:
callers run them in a worker thread, one at a time per connection.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import sqlite3
import struct
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import orjson

from trioscope.domain.apps import AppStatus
from trioscope.domain.commands import Command
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment, DeploymentStatus
from trioscope.domain.idempotency import KeptAnswer

from ._command_rows import OPEN_STATUSES_SQL, command_columns, command_from_columns, finished_at
from ._listings import AUDIT_COLUMNS, audit_filter, audit_record, command_filter, summary_page
from ._migrations import APP_STATUSES, migrate, refuse_foreign, roll_back, schema_version
from ._ops import (AuditEntry, Conflict, ForgetAgents, KeyTaken, MaybeCommitted, NoRoom, Outdated, OverCommandBytes,
                   OverQuota, Rejected, SaveAgent, SaveAppStatus, SaveCommand, SaveDeployment, SaveIdempotencyKey,
                   StoreMoved, Write, store_failing)
from ._read_results import AuditRecord, BulkPart, CommandPart, StoredCommand
from . import _idempotency_keys as idempotency_keys
from ._secret import create_data_dir
from ._tenant_usage import SQLITE_SCHEMA, TENANT_COMMAND_BYTES

SCHEMA = """
CREATE TABLE IF NOT EXISTS deployments (
    hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    enrollment_hash TEXT,
    status TEXT NOT NULL,
    metadata TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS deployments_tenant ON deployments (tenant, created_at);
CREATE TABLE IF NOT EXISTS agents (
    id TEXT PRIMARY KEY,
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    token_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    decommissioned_at REAL,
    document TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS commands (
    id TEXT PRIMARY KEY,
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    tenant TEXT NOT NULL,
    sequence INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    version INTEGER NOT NULL,
    document BLOB NOT NULL,  -- the small fields; the rest in columns of their own (_command_rows)
    error BLOB,
    history BLOB,
    result BLOB,
    -- After the result (where version 2 added it): only its index is read.
    finished_at REAL  -- NULL while open
);
-- Pages of a deployment's commands, newest first, with or without a status:
-- walked in order, not sorted (a deployment may hold hundreds of thousands).
CREATE INDEX IF NOT EXISTS commands_deployment_status_sequence ON commands (deployment_hash, status, sequence);
CREATE INDEX IF NOT EXISTS commands_deployment_sequence ON commands (deployment_hash, sequence);
CREATE INDEX IF NOT EXISTS commands_deployment_created ON commands (deployment_hash, created_at);
CREATE INDEX IF NOT EXISTS commands_finished ON commands (finished_at);  -- pruning
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    tenant TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    outcome TEXT NOT NULL,
    address TEXT,
    user_agent TEXT,
    details TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_tenant ON audit (tenant, id);
CREATE INDEX IF NOT EXISTS audit_at ON audit (at);  -- pruning
""" + SQLITE_SCHEMA + idempotency_keys.SQLITE_SCHEMA + APP_STATUSES

DATABASE_FILE = "trioscope.sqlite3"


DATABASE_FILE_MODE = 0o600
"""Mode of a database file this store creates: it holds the audit log and every
command's parameters and results. SQLite gives the ``-wal`` and ``-shm`` files
the database file's mode. A file that exists already keeps its mode."""


WAL_KEPT_BYTES = 64 * 2**20
"""Bytes of write-ahead log kept on disk after a checkpoint (``journal_size_limit``; SQLite's default keeps all)."""


def connect(path: Path) -> sqlite3.Connection:
    create_data_dir(path.parent)
    _create_private_file(path)
    connection = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30.0)
    try:
        refuse_foreign(connection)  # WAL would change another program's file
    except BaseException:
        connection.close()
        raise
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=FULL")
    connection.execute("PRAGMA foreign_keys=ON")
    connection.execute("PRAGMA busy_timeout=30000")
    # Freed pages are not overwritten with zeros (Debian's SQLite overwrites
    # them by default): each would be written to the WAL first, so deleting
    # 630 MB of old results grew it by 604 MiB, and a prune on a nearly full
    # disk could never finish. The WAL is cut back to this after a checkpoint.
    connection.execute("PRAGMA secure_delete=FAST")
    connection.execute(f"PRAGMA journal_size_limit={WAL_KEPT_BYTES}")
    return connection


def lock_sqlite(path: Path) -> int:
    """An exclusive lock (``flock``) of the SQLite store at ``path`` (made
    empty and private if new) for as long as the returned descriptor is open:
    one server per store. Two served side by side, each with its own
    directory in memory (a deployment created on one was 404 on the other, a
    command queued through one never handed out by the other). Taken before
    anything reads or migrates the store: a server refused must not have
    changed it. The kernel releases it however the process ends, kill -9
    included; ``flock`` does not touch SQLite's own (``fcntl``) locks.

    A server of a release before this lock took none: the process that has
    the store open, however (``sqlite_user``), is refused too, rather than
    migrated under it.

    Raises:
        BlockingIOError: another process holds it, or has the store open.
        OSError: the file or its directory cannot be made or opened.
    """
    create_data_dir(path.parent)
    _create_private_file(path)
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        user = sqlite_user(path)
        if user is not None:
            raise StoreOpen(user)
    except BaseException:
        os.close(fd)
        raise
    return fd


class StoreOpen(BlockingIOError):
    """Another process has the SQLite store open (``sqlite_user``), without its lock."""

    def __init__(self, pid: int) -> None:
        super().__init__(errno.EAGAIN, f"process {pid} has it open: an earlier trioscope, or another program")
        self.pid = pid


_FLOCK = "hhqqi4x"
"""Linux's ``struct flock``: type, whence, start, length, pid (and padding)."""
_SHM_DMS = 128
"""The byte of SQLite's ``-shm`` file every connection to a WAL database holds
a shared lock on while it is open (the unix VFS's "DMS" slot)."""


def sqlite_user(path: Path) -> int | None:
    """The id of another process that has the SQLite database at ``path``
    open (in WAL mode, as trioscope's every release opens it), or None: its
    connections' shared lock on the ``-shm`` file, asked of the kernel
    (``F_GETLK``), without taking it. Linux only (``struct flock``'s layout):
    None elsewhere. Locks of this process are not another's. Asked before this
    process opens the store: closing the descriptor asked through lets go of
    every POSIX lock this process holds on that file, SQLite's own included."""
    if sys.platform != "linux":
        return None
    try:
        fd = os.open(f"{path}-shm", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None
    try:
        asked = struct.pack(_FLOCK, fcntl.F_WRLCK, os.SEEK_SET, _SHM_DMS, 1, 0)
        kind, _, _, _, pid = struct.unpack(_FLOCK, fcntl.fcntl(fd, fcntl.F_GETLK, asked))
    finally:
        os.close(fd)
    return None if kind == fcntl.F_UNLCK else pid


def _create_private_file(path: Path) -> None:
    """Create ``path`` empty with ``DATABASE_FILE_MODE`` unless it exists: SQLite
    would create it with 0644 less the umask, readable by every user. An empty
    file is an empty database to SQLite."""
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, DATABASE_FILE_MODE))
    except FileExistsError:
        pass


START_READS = ("SELECT count(*) FROM deployments", "SELECT count(*) FROM agents",
               f"SELECT DISTINCT deployment_hash FROM commands WHERE status IN {OPEN_STATUSES_SQL}",
               "SELECT max(id) FROM audit")
"""What the server reads as it starts, read once as the store opens: a damaged
file ("database disk image is malformed") is one line naming it then, and the
exit; it failed inside the actor tree, in a traceback of 150 lines."""


SQLITE_IOERR_WRITE = 778
"""A write that the disk refused (``sqlite3`` names it only from Python 3.12)."""
_NOTHING_WRITTEN_AT_COMMIT = (sqlite3.SQLITE_FULL, SQLITE_IOERR_WRITE)
"""Errors of a ``COMMIT`` that leave nothing of it in the write-ahead log:
the log's frames are written in order and the commit record is in the last
one, whose checksum covers its page (a frame written in part is no commit).
Any other I/O error there (the log's fsync, the shared memory grown after
the frames) may leave the commit record whole in the log."""


def _commit_or_say(db: sqlite3.Connection) -> None:
    """``COMMIT``; a failure that may have left the transaction in the log raised as ``MaybeCommitted``."""
    try:
        db.execute("COMMIT")
    except sqlite3.Error as exc:
        if exc.sqlite_errorcode in _NOTHING_WRITTEN_AT_COMMIT or not store_failing(exc):
            raise
        raise MaybeCommitted(f"{type(exc).__name__}: {exc} ({exc.sqlite_errorname}) at COMMIT") from exc


def _check_writable(db: sqlite3.Connection) -> None:
    """A transaction that writes and syncs, changing nothing (the schema's
    version, written over with itself): a file readable but not writable
    (a backup restored by another user), or a disk that fails writes, is
    found when the store is opened, not by the first client's write."""
    db.execute("BEGIN IMMEDIATE")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        db.execute(f"PRAGMA user_version = {int(version)}")
        db.execute("COMMIT")
    except BaseException:
        roll_back(db)
        raise


def _identity(found: os.stat_result) -> tuple[int, int]:
    return found.st_dev, found.st_ino


def _not_at(path: Path, identity: tuple[int, int]) -> str | None:
    """Why the file at ``path`` is not the one of ``identity`` (deleted,
    replaced), or None: it is, or the disk fails (left for the next statement)."""
    try:
        found = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return f"{path} was deleted (or its directory) while the server had it open"
    except OSError:
        return None
    if _identity(found) != identity:
        return f"{path} was replaced by another file (moved or restored over it) while the server had it open"
    return None


class SqliteWriter:
    """Applies groups of writes; each group all-or-nothing, all groups of one call
    in one transaction (one fsync)."""

    def __init__(self, path: Path, expected: tuple[int, int] | None = None) -> None:
        """``expected``: the identity (``identity``) of the file an earlier
        writer of this process had open; None: the first. Opened again after
        a failing disk, the path may hold nothing (a disk that vanished leaves
        its mount point, an empty directory on another disk) or another file:
        ``connect`` would make a new, empty store there, and the writes
        acknowledged into it would be on the wrong disk, beside queues that
        hold commands it lacks. Refused instead (``StoreMoved``)."""
        self.path = path
        if expected is not None:
            why = _not_at(path, expected)
            if why is not None:
                raise StoreMoved(why)
        self.connection = connect(path)
        try:
            self.identity = _identity(os.stat(path))
            """The file opened (device, inode): ``moved`` compares the path's with it."""
            migrate(self.connection, SCHEMA)
            for statement in START_READS:
                self.connection.execute(statement).fetchall()
            _check_writable(self.connection)
        except BaseException:
            self.connection.close()
            raise

    def close(self) -> None:
        self.connection.close()

    def moved(self) -> str | None:
        """Why the file at the path is not the one this writer writes (deleted,
        replaced), or None: it is. An error other than its absence (the disk
        failing) is left for the next statement to meet."""
        return _not_at(self.path, self.identity)

    def commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        """Write every group in one transaction; a group that fails (a conflict, a
        quota, a constraint) is rolled back alone and its error returned in its place.

        Raises:
            StoreMoved: the file at the path is not this one (``moved``): nothing written.
            MaybeCommitted: SQLite failed at the ``COMMIT`` itself.
            NoRoom: the disk refused a write for want of room (a quota): nothing written.
            sqlite3.Error: SQLite's own (``SQLITE_FULL``, an I/O error...): nothing written.
        """
        if (why := self.moved()) is not None:
            raise StoreMoved(why)
        with self._faults_said():
            return self._commit(groups)

    def _commit(self, groups: Sequence[Sequence[Write]]) -> list[BaseException | None]:
        results: list[BaseException | None] = []
        db = self.connection
        db.execute("BEGIN IMMEDIATE")
        try:
            for group in groups:
                db.execute("SAVEPOINT grp")
                try:
                    for write in group:
                        self._apply(write)
                except (Conflict, Outdated, OverQuota, KeyTaken) as exc:
                    db.execute("ROLLBACK TO grp")
                    results.append(exc)
                except (sqlite3.IntegrityError, orjson.JSONEncodeError) as exc:
                    # One group's failure, not the store's: an unencodable value
                    # (callers check depth and size first) must not crash the
                    # writer and, restart after restart, the whole server.
                    db.execute("ROLLBACK TO grp")
                    rejected = Rejected(f"{type(exc).__name__}: {exc}")
                    rejected.__cause__ = exc
                    results.append(rejected)
                else:
                    results.append(None)
                db.execute("RELEASE grp")
            _commit_or_say(db)
        except BaseException:
            roll_back(db)
            raise
        return results

    @contextlib.contextmanager
    def _faults_said(self) -> Iterator[None]:
        """An SQLite I/O error of a write, said as what it is when the disk
        refused the write for want of room (``NoRoom``): SQLite says
        ``SQLITE_FULL`` only for ``ENOSPC``, and a quota's ``EDQUOT`` is a
        plain ``disk I/O error`` to it."""
        try:
            yield
        except sqlite3.OperationalError as exc:
            from ._disk_room import room_refused  # (it imports this module, through ``_reader``)
            if exc.sqlite_errorcode == SQLITE_IOERR_WRITE and room_refused(self.path.parent):
                raise NoRoom(f"{' '.join(str(exc).split())} (the disk refuses new blocks: over a quota, or "
                             "full)") from exc
            raise

    def prune(self, before: float, batch: int) -> tuple[int, int]:
        """Delete up to ``batch`` commands finished before ``before`` (unix
        seconds), and up to ``batch`` audit records made before it; answers how
        many of each. Open commands stay whatever their age. Raises as ``commit``."""
        if (why := self.moved()) is not None:
            raise StoreMoved(why)
        db = self.connection
        with self._faults_said():
            db.execute("BEGIN IMMEDIATE")
            try:
                commands = db.execute(
                    "DELETE FROM commands WHERE rowid IN (SELECT rowid FROM commands WHERE finished_at < ? LIMIT ?)",
                    (before, batch)).rowcount
                audit = db.execute("DELETE FROM audit WHERE id IN (SELECT id FROM audit WHERE at < ? LIMIT ?)",
                                   (before, batch)).rowcount
                _commit_or_say(db)
            except BaseException:
                roll_back(db)
                raise
        return commands, audit

    def prune_idempotency_keys(self, before: float, batch: int) -> int:
        """Delete up to ``batch`` idempotency keys made before ``before`` (unix
        seconds: their window is over); answers how many. Raises as ``commit``."""
        if (why := self.moved()) is not None:
            raise StoreMoved(why)
        db = self.connection
        with self._faults_said():
            db.execute("BEGIN IMMEDIATE")
            try:
                keys = db.execute("DELETE FROM idempotency_keys WHERE rowid IN (SELECT rowid FROM idempotency_keys"
                                  " WHERE created_at < ? LIMIT ?)", (before, batch)).rowcount
                _commit_or_say(db)
            except BaseException:
                roll_back(db)
                raise
        return keys

    # Copying a whole store (``_copy``)

    def is_empty(self) -> bool:
        """No deployment, agent, command or audit record yet."""
        row = self.connection.execute(
            "SELECT EXISTS (SELECT 1 FROM deployments) OR EXISTS (SELECT 1 FROM agents)"
            " OR EXISTS (SELECT 1 FROM commands) OR EXISTS (SELECT 1 FROM audit)").fetchone()
        return not row[0]

    def restore(self, commands: Sequence[Command], audit: Sequence[AuditRecord]) -> None:
        """Write ``commands`` and ``audit`` records as they are, ids kept (a row of
        the same id is replaced), in one transaction; later audit records are
        numbered after the largest id (AUTOINCREMENT keeps track).

        Raises:
            Rejected: the database refused a row (nothing of the call was written).
        """
        db = self.connection
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(
                "INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version, document,"
                " error, history, result, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET deployment_hash = excluded.deployment_hash,"
                " tenant = excluded.tenant, sequence = excluded.sequence, status = excluded.status,"
                " created_at = excluded.created_at, version = excluded.version, document = excluded.document,"
                " error = excluded.error, history = excluded.history, result = excluded.result,"
                " finished_at = excluded.finished_at",
                [(c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at, len(c.history),
                  *command_columns(c), finished_at(c)) for c in commands])
            db.executemany(
                "INSERT OR REPLACE INTO audit (id, at, tenant, actor, action, resource_type, resource_id, outcome,"
                " address, user_agent, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [(r.id, r.entry.at, r.entry.tenant, r.entry.actor, r.entry.action, r.entry.resource_type,
                  r.entry.resource_id, r.entry.outcome, r.entry.address, r.entry.user_agent,
                  orjson.dumps(r.entry.details).decode()) for r in audit])
            db.execute("COMMIT")
        except (sqlite3.IntegrityError, orjson.JSONEncodeError) as exc:
            roll_back(db)
            raise Rejected(f"{type(exc).__name__}: {exc}") from exc
        except BaseException:
            roll_back(db)
            raise

    def _apply(self, write: Write) -> None:
        db = self.connection
        if isinstance(write, SaveCommand):
            c = write.command
            columns = command_columns(c)
            if write.expected_version is None:
                if write.max_tenant_bytes is not None:
                    row = db.execute(TENANT_COMMAND_BYTES.format(mark="?"), (c.tenant,)).fetchone()
                    if row is not None and row[0] >= write.max_tenant_bytes:
                        raise OverCommandBytes(row[0])
                db.execute(
                    "INSERT INTO commands (id, deployment_hash, tenant, sequence, status, created_at, version, document,"
                    " error, history, result, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (c.id, c.deployment_hash, c.tenant, c.sequence, c.status.value, c.created_at,
                     len(c.history), *columns, finished_at(c)),
                )
                return
            cursor = db.execute(
                "UPDATE commands SET status = ?, version = ?, document = ?, error = ?, history = ?, result = ?,"
                " finished_at = ? WHERE id = ? AND version = ?",
                (c.status.value, len(c.history), *columns, finished_at(c), c.id, write.expected_version),
            )
            if cursor.rowcount != 1:
                raise Conflict(c.id)
        elif isinstance(write, AuditEntry):
            db.execute(
                "INSERT INTO audit (at, tenant, actor, action, resource_type, resource_id, outcome, address,"
                " user_agent, details) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (write.at, write.tenant, write.actor, write.action, write.resource_type, write.resource_id,
                 write.outcome, write.address, write.user_agent, orjson.dumps(write.details).decode()),
            )
        elif isinstance(write, SaveDeployment):
            d = write.deployment
            if write.spends is not None:
                cursor = db.execute(
                    "UPDATE deployments SET enrollment_hash = ?, status = ?, metadata = ? WHERE hash = ?"
                    " AND enrollment_hash = ?",
                    (d.enrollment_hash, d.status.value, orjson.dumps(d.metadata).decode(), d.hash, write.spends))
                if cursor.rowcount != 1:
                    raise Conflict(d.hash, "deployment")
                return
            db.execute(
                "INSERT INTO deployments (hash, tenant, user_id, created_at, enrollment_hash, status, metadata)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (hash) DO UPDATE SET"
                " enrollment_hash = excluded.enrollment_hash, status = excluded.status, metadata = excluded.metadata",
                (d.hash, d.tenant, d.user_id, d.created_at, d.enrollment_hash, d.status.value,
                 orjson.dumps(d.metadata).decode()),
            )
        elif isinstance(write, SaveAgent):
            a = write.agent
            document = orjson.dumps({"capabilities": list(a.capabilities), "version": a.version,
                                     "system_info": a.system_info}).decode()
            db.execute(
                "INSERT INTO agents (id, deployment_hash, token_hash, status, created_at, decommissioned_at, document)"
                " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (id) DO UPDATE SET token_hash = excluded.token_hash,"
                " status = excluded.status, decommissioned_at = excluded.decommissioned_at, document = excluded.document",
                (a.id, a.deployment_hash, a.token_hash, a.status.value, a.created_at, a.decommissioned_at, document),
            )
        elif isinstance(write, ForgetAgents):
            db.executemany("DELETE FROM agents WHERE id = ?", [(agent_id,) for agent_id in write.agent_ids])
        elif isinstance(write, SaveIdempotencyKey):
            if db.execute(idempotency_keys.SAVE.format(m="?"), idempotency_keys.save_values(write)).rowcount != 1:
                raise KeyTaken(write.answer.key)
        elif isinstance(write, SaveAppStatus):
            a = write.app
            cursor = db.execute(SAVE_APP_STATUS, (a.deployment_hash, a.app_code, a.status,
                                                  orjson.dumps(list(a.logs)).decode(), a.updated_at, a.received_at,
                                                  a.agent_id, write.max_apps))
            if cursor.rowcount != 1:
                raise _app_refusal(db, a)
        else:  # pragma: no cover - the Write union is closed
            raise TypeError(f"not a write: {write!r}")


SAVE_APP_STATUS = (
    "INSERT INTO app_statuses (deployment_hash, app_code, status, logs, updated_at, received_at, agent_id)"
    " SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7 WHERE ?8 IS NULL"
    " OR EXISTS (SELECT 1 FROM app_statuses WHERE deployment_hash = ?1 AND app_code = ?2)"
    " OR (SELECT count(*) FROM app_statuses WHERE deployment_hash = ?1) < ?8"
    " ON CONFLICT (deployment_hash, app_code) DO UPDATE SET status = excluded.status, logs = excluded.logs,"
    " updated_at = excluded.updated_at, received_at = excluded.received_at, agent_id = excluded.agent_id"
    " WHERE excluded.updated_at >= app_statuses.updated_at")
"""An app's status, over the stored one unless that is newer, and a new app
only below its deployment's ``max_apps`` (``SaveAppStatus``): one statement,
which changes no row when either refuses it (``_app_refusal`` tells which)."""


def _app_refusal(db: sqlite3.Connection, app: AppStatus) -> Exception:
    """Why ``SAVE_APP_STATUS`` wrote nothing: a newer status of the app is stored, or its deployment is full."""
    if db.execute("SELECT 1 FROM app_statuses WHERE deployment_hash = ? AND app_code = ?",
                  (app.deployment_hash, app.app_code)).fetchone() is not None:
        return Outdated(f"app {app.app_code}")
    (count,) = db.execute("SELECT count(*) FROM app_statuses WHERE deployment_hash = ?",
                          (app.deployment_hash,)).fetchone()
    return OverQuota(count)


class SqliteReader:
    """Queries on their own connection; they see committed data only."""

    def __init__(self, path: Path) -> None:
        self.connection = connect(path)
        try:
            schema_version(self.connection)  # a later version's tables would be misread
        except BaseException:
            self.connection.close()
            raise

    def close(self) -> None:
        self.connection.close()

    def check(self) -> None:
        """The most trivial read: raises when the database cannot be read."""
        self.connection.execute("SELECT 1").fetchone()

    @contextlib.contextmanager
    def _snapshot(self) -> Iterator[sqlite3.Connection]:
        """One read transaction: every query in it sees the same committed state."""
        self.connection.execute("BEGIN")
        try:
            yield self.connection
        finally:
            self.connection.execute("COMMIT")

    def deployments(self, where: str = "", *args: object) -> list[Deployment]:
        rows = self.connection.execute(
            "SELECT hash, tenant, user_id, created_at, enrollment_hash, status, metadata FROM deployments" + where,
            args)
        return [Deployment(hash=h, tenant=t, user_id=u, created_at=c, enrollment_hash=e,
                           status=DeploymentStatus(s), metadata=orjson.loads(m))
                for h, t, u, c, e, s, m in rows]

    def deployment(self, deployment_hash: str) -> Deployment | None:
        found = self.deployments(" WHERE hash = ?", deployment_hash)
        return found[0] if found else None

    def deployments_named(self, hashes: Sequence[str]) -> list[Deployment]:
        """Those of ``hashes`` that exist (one query each: SQLite's variables per statement are bounded)."""
        return [d for h in dict.fromkeys(hashes) if (d := self.deployment(h)) is not None]

    def agents_named(self, agent_ids: Sequence[str]) -> list[AgentRecord]:
        """Those of ``agent_ids`` that exist (one query each, as ``deployments_named``)."""
        return [a for i in dict.fromkeys(agent_ids) if (a := self.agent(i)) is not None]

    def agent(self, agent_id: str) -> AgentRecord | None:
        found = self.agents(" WHERE id = ?", agent_id)
        return found[0] if found else None

    def agents(self, where: str = "", *args: object) -> list[AgentRecord]:
        """Every agent record; retired agents without system info (written
        without it, or by an earlier version: the migration removes it)."""
        rows = self.connection.execute(
            "SELECT id, deployment_hash, token_hash, status, created_at, decommissioned_at, document FROM agents"
            + where, args)
        agents = []
        for agent_id, deployment, token_hash, status, created, decommissioned, document in rows:
            extra = orjson.loads(document)
            agents.append(AgentRecord(
                id=agent_id, deployment_hash=deployment, token_hash=token_hash, status=AgentStatus(status),
                created_at=created, decommissioned_at=decommissioned,
                capabilities=tuple(extra["capabilities"]), version=extra["version"], system_info=extra["system_info"]))
        return agents

    def app_statuses(self, deployment_hash: str) -> list[AppStatus]:
        """The newest status of each app of the deployment, by app code."""
        rows = self.connection.execute(
            "SELECT deployment_hash, app_code, status, logs, updated_at, received_at, agent_id FROM app_statuses"
            " WHERE deployment_hash = ? ORDER BY app_code", (deployment_hash,))
        return [AppStatus(deployment_hash=d, app_code=a, status=s, logs=tuple(orjson.loads(logs)), updated_at=u,
                          received_at=r, agent_id=g) for d, a, s, logs, u, r, g in rows]

    def open_commands(self, deployment_hash: str) -> list[Command]:
        rows = self.connection.execute(
            f"SELECT document, error, history, result FROM commands WHERE deployment_hash = ?"
            f" AND status IN {OPEN_STATUSES_SQL} ORDER BY sequence", (deployment_hash,))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

    def deployments_with_open_commands(self) -> list[str]:
        rows = self.connection.execute(
            f"SELECT DISTINCT deployment_hash FROM commands WHERE status IN {OPEN_STATUSES_SQL}")
        return [h for (h,) in rows]

    def tenant_command_bytes(self, tenant: str) -> int:
        """What ``tenant``'s stored commands take (``_tenant_usage``)."""
        row = self.connection.execute(TENANT_COMMAND_BYTES.format(mark="?"), (tenant,)).fetchone()
        return int(row[0]) if row is not None else 0

    def idempotency_key(self, tenant: str, user_id: str, key: str) -> KeptAnswer | None:
        """A user's idempotency key and its answer, as stored (expired or not)."""
        row = self.connection.execute(idempotency_keys.READ.format(m="?"), (tenant, user_id, key)).fetchone()
        return None if row is None else idempotency_keys.kept_answer(row)

    def command(self, command_id: str) -> Command | None:
        """The whole command, result and history included (for the queue actors)."""
        row = self.connection.execute("SELECT document, error, history, result FROM commands WHERE id = ?",
                                      (command_id,)).fetchone()
        if row is None:
            return None
        document, error, history, result = row
        return command_from_columns(document, error=error, history=history, result=result)

    def commands(self, command_ids: Sequence[str]) -> list[Command]:
        """The whole commands of those ids that exist (in no particular order)."""
        found = []
        for command_id in dict.fromkeys(command_ids):  # one at a time: SQLite's variables per statement are bounded
            command = self.command(command_id)
            if command is not None:
                found.append(command)
        return found

    def stored_command(self, command_id: str, *, inline_bytes: int) -> StoredCommand | None:
        """The command with its history, and its result and error when their JSON
        is at most ``inline_bytes`` (larger ones are not read: ``command_part``)."""
        row = self.connection.execute(
            "SELECT document, history, length(error), CASE WHEN length(error) <= ?1 THEN error END,"
            " length(result), CASE WHEN length(result) <= ?1 THEN result END FROM commands WHERE id = ?2",
            (inline_bytes, command_id)).fetchone()
        if row is None:
            return None
        document, history, error_bytes, error, result_bytes, result = row
        return StoredCommand(
            command=command_from_columns(document, error=error, history=history, result=result, raw_result=True),
            result_bytes=result_bytes, error_bytes=error_bytes, result_included=result is not None,
            error_included=error is not None, history_included=True)

    def command_part(self, command_id: str, part: BulkPart, offset: int, length: int) -> CommandPart | None:
        """Bytes ``[offset, offset + length)`` of the command's result or error as
        JSON, read from the database without reading the rest of the value."""
        column = {"result": "result", "error": "error"}[part]  # never text from the caller in SQL
        with self._snapshot() as db:
            row = db.execute(f"SELECT rowid, deployment_hash, length({column}) FROM commands WHERE id = ?",
                             (command_id,)).fetchone()
            if row is None:
                return None
            rowid, deployment_hash, total = row
            data = b""
            if offset < total and length > 0:
                with db.blobopen("commands", column, rowid, readonly=True) as blob:
                    blob.seek(offset)
                    data = blob.read(min(length, total - offset))
        return CommandPart(deployment_hash=deployment_hash, total=total, data=data)

    def command_summaries(self, deployment_hash: str, *, status: str | None, since: float | None,
                          until: float | None, limit: int, offset: int, max_bytes: int,
                          error_bytes: int) -> tuple[list[StoredCommand], int]:
        """One page, newest first, and the number of matches. Summaries leave out
        the history and the result (only its size is read) and keep the error
        when its JSON is at most ``error_bytes``. The page ends early, after at
        least one command, before the documents and errors read pass ``max_bytes``."""
        clause, args = command_filter(deployment_hash, status=status, since=since, until=until, mark="?")
        with self._snapshot() as db:
            total = db.execute(f"SELECT count(*) FROM commands WHERE {clause}", args).fetchone()[0]
            # The page's rows are chosen from the index alone, then read one by
            # one until the budget is spent: neither an OFFSET nor a sort reads
            # the rows of commands that are not shown.
            rowids = db.execute(f"SELECT rowid FROM commands WHERE {clause} ORDER BY sequence DESC LIMIT ? OFFSET ?",
                                [*args, limit, offset]).fetchall()
            rows = (db.execute("SELECT document, length(error), CASE WHEN length(error) <= ? THEN error END,"
                               " length(result) FROM commands WHERE rowid = ?", (error_bytes, rowid)).fetchone()
                    for (rowid,) in rowids)
            page = summary_page(rows, max_bytes)
        return page, total

    def audit(self, tenant: str | None, *, action: str | None, actor: str | None, since: float | None,
              until: float | None, limit: int, offset: int,
              every_tenant: bool = False) -> tuple[list[AuditRecord], int]:
        """A page of audit records, newest first, and how many match: of
        ``tenant``; with ``tenant`` None, those in no tenant's log (refused
        requests whose credentials named nobody); with ``every_tenant``, all."""
        clause, args = audit_filter(tenant, action=action, actor=actor, since=since, until=until,
                                    every_tenant=every_tenant, mark="?")
        total = self.connection.execute(f"SELECT count(*) FROM audit WHERE {clause}", args).fetchone()[0]
        rows = self.connection.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE {clause} ORDER BY id DESC"
                                       " LIMIT ? OFFSET ?", [*args, limit, offset])
        return [audit_record(row) for row in rows], total

    def latest_alerts(self, *, since: float | None, fingerprints: Sequence[str] | None) -> list[AuditRecord]:
        """The newest alert change record (``alert.firing``/``alert.resolved``)
        of each alert (tenant and fingerprint) made at ``since`` or later, of
        those ``fingerprints`` (None: of every alert), oldest first."""
        if fingerprints is not None:  # one at a time: SQLite's variables per statement are bounded
            found = [r for fp in dict.fromkeys(fingerprints)
                     for r in self._latest_alerts(since, " AND resource_id = ?", [fp])]
            return sorted(found, key=lambda r: r.id)
        return self._latest_alerts(since, "", [])

    def _latest_alerts(self, since: float | None, clause: str, args: list[object]) -> list[AuditRecord]:
        rows = self.connection.execute(
            f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id IN (SELECT max(id) FROM audit"
            " WHERE resource_type = 'alert' AND action IN ('alert.firing', 'alert.resolved') AND at >= ?"
            f"{clause} GROUP BY tenant, resource_id) ORDER BY id",
            [float("-inf") if since is None else since, *args])
        return [audit_record(row) for row in rows]

    # Copying a whole store (``_copy``)

    def commands_after(self, after: str, limit: int) -> list[Command]:
        """Up to ``limit`` whole commands with ids after ``after``, in id order."""
        rows = self.connection.execute(
            "SELECT document, error, history, result FROM commands WHERE id > ? ORDER BY id LIMIT ?", (after, limit))
        return [command_from_columns(d, error=e, history=h, result=r) for d, e, h, r in rows]

    def idempotency_keys_after(self, after: tuple[str, str, str], limit: int) -> list[KeptAnswer]:
        """Up to ``limit`` idempotency keys after ``after`` (tenant, user id, key), in that order."""
        rows = self.connection.execute(idempotency_keys.AFTER.format(m="?"), (*after, limit))
        return [idempotency_keys.kept_answer(row) for row in rows]

    def audit_after(self, after: int, limit: int) -> list[AuditRecord]:
        """Up to ``limit`` audit records numbered after ``after``, oldest first."""
        rows = self.connection.execute(f"SELECT {AUDIT_COLUMNS} FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                                       (after, limit))
        return [audit_record(row) for row in rows]
