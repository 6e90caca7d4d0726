"""Changes to databases written by earlier versions, applied when the writer
opens the database (``PRAGMA user_version`` says which are done).

Each step is safe to repeat: a crash half-way leaves the version unchanged,
and the next start runs the step again over what is left. Versions before 1
(all of them ``user_version`` 0) differed only in their indexes, which the
schema script creates and drops by name.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

import orjson

from ._command_rows import BULK_COLUMNS, split_document

MIGRATION_BATCH = 200
"""Rows rewritten per transaction: one result may be as large as a request body."""


class NewerSchema(ValueError):
    """The database was written by a later version of trioscope: this one would
    misread it, and its schema script would undo the later changes."""

    def __init__(self, version: int) -> None:
        super().__init__(f"the database has schema version {version}, newer than this trioscope knows"
                         f" ({SCHEMA_VERSION}): run the version that wrote it, or give another data directory")
        self.version = version


def schema_version(db: sqlite3.Connection) -> int:
    """The database's schema version.

    Raises:
        NewerSchema: it is newer than this code knows.
    """
    version: int = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise NewerSchema(version)
    return version


def migrate(db: sqlite3.Connection, schema: str) -> None:
    """Create the tables of ``schema`` (a script of ``IF NOT EXISTS`` statements)
    and bring a database of an earlier version up to date; refuse a later one
    before changing anything.

    Raises:
        NewerSchema: the database is newer than this code.
    """
    version = schema_version(db)
    db.executescript(schema)
    for reached, step in enumerate(STEPS[version:], start=version + 1):
        step(db)
        db.execute(f"PRAGMA user_version = {reached}")


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
            db.execute("ROLLBACK")
            raise
        if len(rows) < MIGRATION_BATCH:
            return
        last = rows[-1][0]


def _forget_system_info_of_retired_agents(db: sqlite3.Connection) -> None:
    """Version 1: decommissioned and replaced agents keep no system info."""
    db.execute("UPDATE agents SET document = json_set(document, '$.system_info', json('{}'))"
               " WHERE status = 'decommissioned'")


def _to_1(db: sqlite3.Connection) -> None:
    _split_command_documents(db)
    _forget_system_info_of_retired_agents(db)


STEPS: tuple[Callable[[sqlite3.Connection], None], ...] = (_to_1,)
"""``STEPS[v]`` brings a database from version ``v`` to ``v + 1``."""
SCHEMA_VERSION = len(STEPS)
"""The version this code writes."""
