"""Moving an installation: every row of one store copied into another
(``trioscope store copy --from sqlite:PATH --to postgresql://...``, or back).

Deployments (with their enrollment tokens), agents (with their token hashes),
the apps' newest statuses, commands with their whole history, result and
error, audit records with their ids, and the idempotency keys of command
creations (a client's retry across the move still gets its first answer) are
copied in batches, a transaction per batch. A source of an earlier schema
is brought to this version's first, as ``serve`` would, only when asked
(``upgrade_source``). User tokens are not in
the store: they stay valid where the same ``auth.secret`` (or the data
directory's ``jwt-secret``) is used.
"""

from __future__ import annotations

import contextlib
import math
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import attrs
import psycopg

from trioscope.config import hide_passwords
from trioscope.domain.commands import Command

from ._ops import Outdated, Rejected, SaveAgent, SaveAppStatus, SaveDeployment, SaveIdempotencyKey
from ._postgres import PostgresWriter
from ._postgres_reader import PostgresReader
from ._read_results import AuditRecord
from ._reader import Database, describe_database, open_writer, sqlite_path, stored_schema
from ._sqlite import SqliteReader, SqliteWriter, StoreOpen, lock_sqlite

COPY_BATCH = 500
"""Rows per transaction (a command's result may be as large as a request body)."""


class CopyRefused(Exception):
    """The copy was not started: the message says why (nothing was written)."""


class CopyFailed(Exception):
    """The target refused rows, or a database failed, part-way: the batches
    before were written."""


@attrs.frozen
class CopyCounts:
    """How many rows of each kind were copied."""

    deployments: int = 0
    agents: int = 0
    commands: int = 0
    audit: int = 0
    apps: int = 0
    """App statuses (a target's newer status of an app is kept, and counted)."""
    idempotency_keys: int = 0


@contextlib.contextmanager
def _reader(database: Database) -> Iterator[SqliteReader | PostgresReader]:
    path = sqlite_path(database)
    reader = SqliteReader(path) if path is not None else PostgresReader(str(database), pool_size=1)
    try:
        yield reader
    finally:
        reader.close()


@contextlib.contextmanager
def _writer(database: Database) -> Iterator[SqliteWriter | PostgresWriter]:
    path = sqlite_path(database)
    writer = SqliteWriter(path) if path is not None else PostgresWriter(str(database), origin="store-copy")
    try:
        yield writer
    finally:
        writer.close()


@contextlib.contextmanager
def _stopped(source: Path | None, target: Path | None) -> Iterator[None]:
    """Hold the lock of each SQLite store of the two (``lock_sqlite``) for
    the copy: a server using one would change it under the copy (the README's
    "servers stopped", not checked before: the copy was of no one state).

    Raises:
        CopyRefused: a server uses one of them, or one cannot be made or opened.
    """
    with contextlib.ExitStack() as held:
        for path, role in ((source, "the source"), (target, "the target")):
            if path is None:
                continue
            try:
                held.callback(os.close, lock_sqlite(path))
            except BlockingIOError as exc:
                held_by = f" ({exc.strerror})" if isinstance(exc, StoreOpen) else ""
                raise CopyRefused(f"a trioscope server uses {path}{held_by}: stop it before copying") from None
            except OSError as exc:  # e.g. a read-only file system, a file where its directory should be
                raise CopyRefused(f"cannot use {role} {path}: {exc.strerror or exc}") from None
        yield


@contextlib.contextmanager
def _opening(database: Database, role: str) -> Iterator[None]:
    """What a database cannot be opened for, said as one refusal naming it
    (``role``: "the source", "the target"): before any row is copied.

    Raises:
        CopyRefused: an SQLite file that is no database, or cannot be read or written.
    """
    try:
        yield
    except sqlite3.Error as exc:
        raise CopyRefused(f"cannot use {role} {describe_database(database)}: {exc}") from None
    except OSError as exc:
        raise CopyRefused(f"cannot use {role} {describe_database(database)}: {exc.strerror or exc}") from None


def copy_store(source: Database, target: Database, *, into_non_empty: bool = False, upgrade_source: bool = False,
               progress: Callable[[CopyCounts], None] | None = None) -> CopyCounts:
    """Copy every row of ``source`` into ``target`` (blocking).

    Args:
        into_non_empty: copy into a target that already holds rows; a row
            whose key it holds is replaced by the source's (so an interrupted
            copy can be run again).
        upgrade_source: bring a source of an earlier schema to this one
            first (refused otherwise: the trioscope that wrote it could no
            longer open it, the way back an operator may be keeping).
        progress: called with the counts so far after each batch.

    Raises:
        CopyRefused: the source does not exist, is the target, is of an
            earlier schema (and ``upgrade_source`` was not given), or the target
            is not empty (and ``into_non_empty`` was not given).
        CopyFailed: the target refused a batch (e.g. an agent token that another
            agent of the target holds).
        Unavailable: a database cannot be reached.
        NewerSchema: a later trioscope wrote one of them.
    """
    source_path, target_path = sqlite_path(source), sqlite_path(target)
    if source_path is not None and not source_path.is_file():
        raise CopyRefused(f"no database at {source_path}")
    same_file = source_path is not None and target_path is not None and target_path.exists() and \
        source_path.resolve() == target_path.resolve()
    if same_file or (source_path is None and target_path is None and str(source) == str(target)):
        raise CopyRefused("the source and the target are the same database")
    # Asked before the target is made, and without writing: a refusal leaves nothing behind.
    with _opening(source, "the source"):
        version, current, ours = stored_schema(source)
    if not ours:
        # A mistyped name of an empty database or file copied nothing "successfully",
        # and opening it made it a trioscope store.
        raise CopyRefused(f"{describe_database(source)} holds no trioscope data: is --from the server's database?")
    if version < current and not upgrade_source:
        raise CopyRefused(f"{describe_database(source)} has schema version {version}, older than this trioscope's "
                          f"{current}: copying it upgrades it first, after which the trioscope that wrote it can no "
                          "longer open it; back it up, then give --upgrade-source")
    with _stopped(source_path, target_path):
        if version < current:
            with _opening(source, "the source"):
                open_writer(source).close()  # the upgrade asked for, as serve would
        with contextlib.ExitStack() as opened:
            with _opening(target, "the target"):
                writer = opened.enter_context(_writer(target))
            with _opening(source, "the source"):
                reader = opened.enter_context(_reader(source))
            if not into_non_empty and not writer.is_empty():
                raise CopyRefused(f"{describe_database(target)} already holds trioscope data; give --into-non-empty "
                                  "to copy into it anyway (rows of the same key are replaced)")
            try:
                return _copy_rows(reader, writer, progress)
            except (sqlite3.Error, OSError, psycopg.Error) as exc:
                said = hide_passwords(" ".join(str(exc).split()), str(source))
                raise CopyFailed(f"the copy stopped: {type(exc).__name__}: {hide_passwords(said, str(target))}; "
                                 "the rows copied before stay in the target (run it again with --into-non-empty "
                                 "to finish it)") from exc
    raise AssertionError("unreachable")


def _copy_rows(reader: SqliteReader | PostgresReader, writer: SqliteWriter | PostgresWriter,
               progress: Callable[[CopyCounts], None] | None) -> CopyCounts:
    """Every row of ``reader``'s database written through ``writer``, in batches (``copy_store``)."""
    counts = CopyCounts()
    def save(kind: str, writes: list[SaveDeployment] | list[SaveAgent]) -> None:
        for start in range(0, len(writes), COPY_BATCH):
            [error] = writer.commit([writes[start:start + COPY_BATCH]])
            if error is not None:
                raise CopyFailed(f"the target refused {kind}: {error}") from error

    deployments = reader.deployments()
    save("deployments", [SaveDeployment(d) for d in deployments])
    counts = attrs.evolve(counts, deployments=len(deployments))
    agents = reader.agents()
    save("agents", [SaveAgent(a) for a in agents])
    counts = attrs.evolve(counts, agents=len(agents))
    apps = [a for d in deployments for a in reader.app_statuses(d.hash)]
    for start in range(0, len(apps), COPY_BATCH):
        # One group each: a newer status the target holds refuses its own alone.
        batch = apps[start:start + COPY_BATCH]
        for app, error in zip(batch, writer.commit([[SaveAppStatus(a)] for a in batch]), strict=True):
            if error is not None and not isinstance(error, Outdated):
                raise CopyFailed(f"the target refused the status of app {app.app_code} of deployment "
                                 f"{app.deployment_hash}: {error}") from error
    counts = attrs.evolve(counts, apps=len(apps))
    if progress is not None:
        progress(counts)

    last_command = ""
    while batch := reader.commands_after(last_command, COPY_BATCH):
        _restore(writer, batch, [], f"commands {batch[0].id}..{batch[-1].id}")
        last_command = batch[-1].id
        counts = attrs.evolve(counts, commands=counts.commands + len(batch))
        if progress is not None:
            progress(counts)
    last_audit = 0
    while records := reader.audit_after(last_audit, COPY_BATCH):
        _restore(writer, [], records, f"audit records {records[0].id}..{records[-1].id}")
        last_audit = records[-1].id
        counts = attrs.evolve(counts, audit=counts.audit + len(records))
        if progress is not None:
            progress(counts)
    last_key = ("", "", "")
    while keys := reader.idempotency_keys_after(last_key, COPY_BATCH):
        # After the commands they name; the source's replaces a key the target holds, as rows of other tables.
        [error] = writer.commit([[SaveIdempotencyKey(k, replaces_before=math.inf) for k in keys]])
        if error is not None:
            raise CopyFailed(f"the target refused idempotency keys of tenant {keys[0].tenant!r}: {error}") \
                from error
        last_key = (keys[-1].tenant, keys[-1].user_id, keys[-1].key)
        counts = attrs.evolve(counts, idempotency_keys=counts.idempotency_keys + len(keys))
        if progress is not None:
            progress(counts)
    return counts


def _restore(writer: SqliteWriter | PostgresWriter, commands: list[Command], audit: list[AuditRecord],
             what: str) -> None:
    try:
        writer.restore(commands, audit)
    except Rejected as exc:
        raise CopyFailed(f"the target refused {what}: {exc}") from exc
