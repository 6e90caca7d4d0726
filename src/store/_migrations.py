"""Changes to databases written by earlier versions, applied when the writer
opens the database (``PRAGMA user_version`` says which are done).

Each step is safe to repeat: a crash half-way leaves the version unchanged,
and the next start runs the step again over what is left.
"""

from __future__ import annotations

import sqlite3

import orjson

from ._command_rows import BULK_COLUMNS, split_document

MIGRATION_BATCH = 200
"""Rows rewritten per transaction: one result may be as large as a request body."""


def migrate(db: sqlite3.Connection) -> None:
    """Bring the database (its tables already created by the schema) up to date."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version < 1:
        _split_command_documents(db)
        _forget_system_info_of_retired_agents(db)
        db.execute("PRAGMA user_version = 1")


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
