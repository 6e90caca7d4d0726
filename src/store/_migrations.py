"""The schema's versions (``PRAGMA user_version``): a new database is created
at the current one; one written by an earlier version is brought up to it a
step at a time when the writer opens it; a later one is refused untouched.

Each step is safe to repeat: a crash half-way leaves the version unchanged,
and the next start runs the step again over what is left. The databases of
version 0 (before ``user_version`` was set) differed only in their indexes;
step 1 brings each of them to the same ones.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import orjson

from ._command_rows import BULK_COLUMNS, OPEN_STATUSES_SQL, split_document
from . import _idempotency_keys as idempotency_keys
from ._ops import ForeignDatabase, NewerSchema, note_upgrade
from ._tenant_usage import SQLITE_FILL, SQLITE_SCHEMA


def roll_back(db: sqlite3.Connection) -> None:
    """``ROLLBACK`` if a transaction is open: SQLite ends one by itself on some
    errors (a full disk), and a second ``ROLLBACK``'s "no transaction is active"
    was raised in place of the error that told why ("database or disk is full")."""
    if db.in_transaction:
        db.execute("ROLLBACK")

MIGRATION_BATCH = 200
"""Rows rewritten per transaction: one result may be as large as a request body."""


def schema_version(db: sqlite3.Connection) -> int:
    """The database's schema version.

    Raises:
        NewerSchema: it is newer than this code knows.
    """
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NewerSchema(version, SCHEMA_VERSION)
    return version


def refuse_foreign(db: sqlite3.Connection) -> list[str]:
    """The database's tables, unless it is another program's (no version of
    ours, tables but none of ours): read before anything changes the file,
    even its journal mode.

    Raises:
        ForeignDatabase: it holds tables, none of them trioscope's.
    """
    tables = [row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
    if tables and "commands" not in tables and db.execute("PRAGMA user_version").fetchone()[0] == 0:
        raise ForeignDatabase(tables)
    return tables


def migrate(db: sqlite3.Connection, schema: str) -> None:
    """Create a new database from ``schema`` (the current version's tables) or
    bring one of an earlier version up to date; refuse a later one before
    changing anything.

    Raises:
        NewerSchema: the database is newer than this code.
        ForeignDatabase: it holds tables, none of them trioscope's.
    """
    version = schema_version(db)
    tables = refuse_foreign(db)
    if version == 0 and not tables:
        db.execute("BEGIN IMMEDIATE")  # all or nothing: a half-made database would look like version 0
        try:
            for statement in _statements(schema):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            db.execute("COMMIT")
        except BaseException:
            roll_back(db)
            raise
        return
    if version < SCHEMA_VERSION:
        note_upgrade("SQLite", version, SCHEMA_VERSION)
    for reached, step in enumerate(STEPS[version:], start=version + 1):
        step(db)
        db.execute(f"PRAGMA user_version = {reached}")


def _statements(script: str) -> list[str]:
    """The statements of ``script`` (``executescript`` would commit first)."""
    statements, current = [], ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    assert not current.strip(), f"unfinished statement: {current!r}"
    return statements


def _split_command_documents(db: sqlite3.Connection) -> None:
    """Version 1: a command's error, history and result leave its document for
    columns of their own (``_command_rows``), so listings stop reading them."""
    present = {name for _, name, *_ in db.execute("PRAGMA table_info(commands)")}
    for column in BULK_COLUMNS:
        if column not in present:
            db.execute(f"ALTER TABLE commands ADD COLUMN {column} BLOB")
    last = -1
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT rowid FROM commands WHERE rowid > ? AND history IS NULL ORDER BY rowid LIMIT ?",
                              (last, MIGRATION_BATCH)).fetchall()
            for (rowid,) in rows:
                (whole,) = db.execute("SELECT document FROM commands WHERE rowid = ?", (rowid,)).fetchone()
                document, error, history, result = split_document(orjson.loads(whole))
                db.execute("UPDATE commands SET document = ?, error = ?, history = ?, result = ? WHERE rowid = ?",
                           (document, error, history, result, rowid))
            db.execute("COMMIT")
        except BaseException:
            roll_back(db)
            raise
        if len(rows) < MIGRATION_BATCH:
            return
        last = rows[-1][0]


def _forget_system_info_of_retired_agents(db: sqlite3.Connection) -> None:
    """Version 1: decommissioned and replaced agents keep no system info."""
    db.execute("UPDATE agents SET document = json_set(document, '$.system_info', json('{}'))"
               " WHERE status = 'decommissioned'")


def _to_1(db: sqlite3.Connection) -> None:
    # Each version 0 had some of these indexes: pages of a deployment's
    # commands walk (deployment, [status,] sequence), pruning walks the times.
    db.executescript("""
        DROP INDEX IF EXISTS commands_deployment_status;
        CREATE INDEX IF NOT EXISTS commands_deployment_status_sequence ON commands (deployment_hash, status, sequence);
        CREATE INDEX IF NOT EXISTS commands_deployment_sequence ON commands (deployment_hash, sequence);
        CREATE INDEX IF NOT EXISTS commands_created ON commands (created_at);
        CREATE INDEX IF NOT EXISTS audit_at ON audit (at);
    """)
    _split_command_documents(db)
    _forget_system_info_of_retired_agents(db)


def _to_2(db: sqlite3.Connection) -> None:
    """A finished command is kept for the retention after it finished: its
    ``finished_at`` (NULL while open) replaces ``created_at`` in pruning."""
    present = {name for _, name, *_ in db.execute("PRAGMA table_info(commands)")}
    if "finished_at" not in present:
        db.execute("ALTER TABLE commands ADD COLUMN finished_at REAL")
    last = -1
    while True:
        db.execute("BEGIN IMMEDIATE")
        try:
            rows = db.execute("SELECT rowid FROM commands WHERE rowid > ? ORDER BY rowid LIMIT ?",
                              (last, MIGRATION_BATCH)).fetchall()
            if rows:
                # The documents are version 1's (small: step 1 split them), and
                # every finished command's has its completed_at.
                db.execute(
                    "UPDATE commands SET finished_at = coalesce(json_extract(CAST(document AS TEXT), '$.completed_at'),"
                    f" created_at) WHERE rowid BETWEEN ? AND ? AND status NOT IN {OPEN_STATUSES_SQL}",
                    (rows[0][0], rows[-1][0]))
            db.execute("COMMIT")
        except BaseException:
            roll_back(db)
            raise
        if len(rows) < MIGRATION_BATCH:
            break
        last = rows[-1][0]
    db.executescript("""
        DROP INDEX IF EXISTS commands_created;
        CREATE INDEX IF NOT EXISTS commands_finished ON commands (finished_at);
    """)


def _to_3(db: sqlite3.Connection) -> None:
    """Each tenant's bytes of stored commands, kept by triggers from now on
    (``_tenant_usage``), counted from the rows already stored. One
    transaction: the total and its triggers start together."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(SQLITE_SCHEMA):
            db.execute(statement)
        db.execute("DELETE FROM tenant_usage")  # a step run again counts afresh
        db.execute(SQLITE_FILL)
        db.execute("COMMIT")
    except BaseException:
        roll_back(db)
        raise


def _to_4(db: sqlite3.Connection) -> None:
    """Idempotency keys of command creations (``_idempotency_keys``): a new
    table, empty, with the triggers that count its rows in their tenant's total."""
    db.execute("BEGIN IMMEDIATE")
    try:
        for statement in _statements(idempotency_keys.SQLITE_SCHEMA):
            db.execute(statement)
        db.execute("COMMIT")
    except BaseException:
        roll_back(db)
        raise


APP_STATUSES = """
CREATE TABLE IF NOT EXISTS app_statuses (
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    app_code TEXT NOT NULL,
    status TEXT NOT NULL,
    logs TEXT NOT NULL,  -- JSON: a list of strings, oldest first
    updated_at REAL NOT NULL,  -- when the agent saw it: an older status is not kept
    received_at REAL NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (deployment_hash, app_code)
);
"""
"""The newest status of each app of a deployment (``SaveAppStatus``): version 5's table.
Not counted in ``tenant_usage`` (no trigger): an app's status is not a command,
and a deployment's are bounded by ``commands.max_apps``."""


def _to_5(db: sqlite3.Connection) -> None:
    """Version 5: the apps of each deployment, as its agent last saw them."""
    db.executescript(APP_STATUSES)


STEPS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_1, _to_2, _to_3, _to_4, _to_5)
"""``STEPS[v]`` brings a database from version ``v`` to ``v + 1``."""
SCHEMA_VERSION = len(STEPS)
"""The version this code creates."""
