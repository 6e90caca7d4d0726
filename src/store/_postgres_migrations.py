"""The PostgreSQL schema's versions, kept in the one-row table ``trioscope_schema``.

The same discipline as SQLite's (``_migrations``): explicit numbered steps,
``STEPS[v]`` bringing a database from version ``v`` to ``v + 1``; an empty
database is version 0, so creating one is step 1; a database of a later
version is refused before anything is changed (``NewerSchema``).

PostgreSQL's DDL is transactional, so each step commits together with its new
version number, or not at all. Replicas may start at once against one
database: every step holds a transaction-scoped advisory lock and reads the
version again under it, so exactly one of them runs each step.
"""

from __future__ import annotations

from collections.abc import Callable

import psycopg
from psycopg.rows import TupleRow

from trioscope.domain.commands import parameters_bytes

from ._command_rows import command_from_columns
from . import _idempotency_keys as idempotency_keys
from ._ops import NewerSchema, note_upgrade
from ._tenant_usage import POSTGRES_SCHEMA

LOCK_KEY = 0x7472696F73636F70  # "trioscop": the advisory lock of schema changes
"""Held by whichever process changes the schema; others wait, then see the new version."""

VERSION_TABLE = "trioscope_schema"

# JSON, not JSONB, for what clients send (metadata, system info, audit
# details): JSONB refuses the escape \u0000, which SQLite's store keeps (a
# registration would fail on PostgreSQL only), and JSON gives back the very
# text written, key order included. Nothing queries inside these values.
_VERSION_1 = """
CREATE TABLE deployments (
    hash TEXT PRIMARY KEY,
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    enrollment_hash TEXT,
    status TEXT NOT NULL,
    metadata JSON NOT NULL
);
CREATE INDEX deployments_tenant ON deployments (tenant, created_at);
CREATE TABLE agents (
    id TEXT PRIMARY KEY,
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    token_hash TEXT NOT NULL UNIQUE,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    decommissioned_at DOUBLE PRECISION,
    document JSON NOT NULL  -- capabilities, version, system_info
);
CREATE INDEX agents_deployment ON agents (deployment_hash);
CREATE TABLE commands (
    id TEXT PRIMARY KEY,
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    tenant TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    status TEXT NOT NULL,
    created_at DOUBLE PRECISION NOT NULL,
    version INTEGER NOT NULL,
    finished_at DOUBLE PRECISION,  -- NULL while open
    -- The JSON of _command_rows as bytes: read back as the very bytes written,
    -- their lengths are the sizes users see, and parts are byte ranges of them.
    document BYTEA NOT NULL,
    error BYTEA NOT NULL,
    history BYTEA NOT NULL,
    result BYTEA NOT NULL
);
-- Large values stored out of line uncompressed: octet_length() reads no value,
-- and substring() of a part reads only the chunks it covers.
ALTER TABLE commands ALTER COLUMN error SET STORAGE EXTERNAL, ALTER COLUMN result SET STORAGE EXTERNAL;
CREATE INDEX commands_deployment_status_sequence ON commands (deployment_hash, status, sequence);
CREATE INDEX commands_deployment_sequence ON commands (deployment_hash, sequence);
CREATE INDEX commands_deployment_created ON commands (deployment_hash, created_at);
CREATE INDEX commands_finished ON commands (finished_at);  -- pruning
CREATE TABLE audit (
    id BIGSERIAL PRIMARY KEY,
    at DOUBLE PRECISION NOT NULL,
    tenant TEXT,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    resource_type TEXT,
    resource_id TEXT,
    outcome TEXT NOT NULL,
    address TEXT,
    user_agent TEXT,
    details JSON NOT NULL
);
CREATE INDEX audit_tenant ON audit (tenant, id);
CREATE INDEX audit_at ON audit (at);  -- pruning
"""


def _to_1(db: psycopg.Connection[TupleRow]) -> None:
    """Version 1: the tables of trioscope's first PostgreSQL store."""
    db.execute(_VERSION_1)


_VERSION_2 = """
CREATE TABLE replay_ids (
    id TEXT PRIMARY KEY,  -- sha256 of agent id / request id
    seen_until DOUBLE PRECISION NOT NULL  -- unix seconds, by the database's clock
);
CREATE INDEX replay_ids_seen_until ON replay_ids (seen_until);
CREATE TABLE rate_buckets (
    key TEXT PRIMARY KEY,  -- sha256 of scope and key (agent id; tenant and user)
    tokens DOUBLE PRECISION NOT NULL,
    at DOUBLE PRECISION NOT NULL,  -- unix seconds of the last check, by the database's clock
    granted BOOLEAN NOT NULL  -- whether the last check let its request through
);
CREATE INDEX rate_buckets_at ON rate_buckets (at);
"""


def _to_2(db: psycopg.Connection[TupleRow]) -> None:
    """Version 2: the replay window and the per-agent and per-user rate limits,
    shared by replicas (``_shared_limits``)."""
    db.execute(_VERSION_2)


_VERSION_3 = """
ALTER TABLE commands ADD COLUMN parameters_bytes BIGINT NOT NULL DEFAULT 0;
CREATE INDEX commands_open ON commands (deployment_hash) INCLUDE (parameters_bytes) WHERE finished_at IS NULL;
"""


def _to_3(db: psycopg.Connection[TupleRow]) -> None:
    """Version 3: what each command's parameters take, for the quota of a
    deployment's open commands that every replica's writer checks (``_postgres``).
    The open commands stored before get theirs as the server counts them
    (``parameters_bytes``): their documents' sizes stood for them at first,
    ten times too many for ``{}`` and a twentieth of a list of small objects'."""
    db.execute(_VERSION_3)
    rows = db.execute("SELECT id, document FROM commands WHERE finished_at IS NULL").fetchall()
    sizes = []
    for command_id, document in rows:
        try:
            size = parameters_bytes(command_from_columns(bytes(document)).parameters)
        except Exception:  # noqa: BLE001 - a row this version cannot read: its whole document counts
            size = len(document)
        sizes.append((size, command_id))
    if sizes:
        with db.cursor() as cursor:
            cursor.executemany("UPDATE commands SET parameters_bytes = %s WHERE id = %s", sizes)


def _to_4(db: psycopg.Connection[TupleRow]) -> None:
    """Version 4: each tenant's bytes of stored commands, for the quota
    ``tenants.max_command_bytes``, kept by triggers (``_tenant_usage``) and
    counted from the rows already stored."""
    db.execute(POSTGRES_SCHEMA)


def _to_5(db: psycopg.Connection[TupleRow]) -> None:
    """Version 5: idempotency keys of command creations (``_idempotency_keys``),
    with the triggers that count them in their tenant's total."""
    db.execute(idempotency_keys.POSTGRES_SCHEMA)


_VERSION_6 = """
CREATE TABLE app_statuses (
    deployment_hash TEXT NOT NULL REFERENCES deployments (hash),
    app_code TEXT NOT NULL,
    status TEXT NOT NULL,
    logs JSON NOT NULL,  -- a list of strings, oldest first
    updated_at DOUBLE PRECISION NOT NULL,  -- when the agent saw it: an older status is not kept
    received_at DOUBLE PRECISION NOT NULL,
    agent_id TEXT NOT NULL,
    PRIMARY KEY (deployment_hash, app_code)
);
"""


def _to_6(db: psycopg.Connection[TupleRow]) -> None:
    """Version 6: the newest status of each app of a deployment, as its agent
    last saw it (``SaveAppStatus``: its deployment's count is checked under a
    quota lock, as open commands are). No trigger counts them in
    ``tenant_usage``: an app's status is not a command, and a deployment's
    are bounded by ``commands.max_apps``."""
    db.execute(_VERSION_6)


STEPS: tuple[Callable[[psycopg.Connection[TupleRow]], None], ...] = (_to_1, _to_2, _to_3, _to_4, _to_5, _to_6)
"""``STEPS[v]`` brings a database from version ``v`` to ``v + 1``."""
SCHEMA_VERSION = len(STEPS)
"""The version this code creates."""


def schema_version(db: psycopg.Connection[TupleRow]) -> int:
    """The database's schema version (0: no trioscope tables yet).

    Raises:
        NewerSchema: it is newer than this code knows.
    """
    row = db.execute("SELECT to_regclass(%s) IS NOT NULL", (VERSION_TABLE,)).fetchone()
    if row is None or not row[0]:
        return 0
    found = db.execute(f"SELECT version FROM {VERSION_TABLE}").fetchone()
    version = 0 if found is None else int(found[0])
    if version > SCHEMA_VERSION:
        raise NewerSchema(version, SCHEMA_VERSION)
    return version


def holds_commands(db: psycopg.Connection[TupleRow]) -> bool:
    """Whether the database (its schema) has trioscope's tables (of any version)."""
    row = db.execute("SELECT to_regclass('commands') IS NOT NULL").fetchone()
    return bool(row and row[0])


def migrate(db: psycopg.Connection[TupleRow]) -> None:
    """Bring the database (an autocommit connection) to ``SCHEMA_VERSION``, a
    step per transaction; refuse a later one before changing anything.

    Raises:
        NewerSchema: the database is newer than this code.
    """
    noted = False
    while True:
        with db.transaction():
            # Waits as long as it must: for another replica's migration, and for the locks its steps
            # take; and a step rewriting a large table runs as long as it must.
            db.execute("SET LOCAL lock_timeout = 0")
            db.execute("SET LOCAL statement_timeout = 0")
            db.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
            version = schema_version(db)
            if version == SCHEMA_VERSION:
                return
            if not noted and (version > 0 or holds_commands(db)):  # not a new database's tables
                note_upgrade("PostgreSQL", version, SCHEMA_VERSION)
                noted = True
            if version == 0:
                db.execute(f"CREATE TABLE IF NOT EXISTS {VERSION_TABLE} (version INTEGER NOT NULL)")
                db.execute(f"DELETE FROM {VERSION_TABLE}")
                db.execute(f"INSERT INTO {VERSION_TABLE} (version) VALUES (0)")
            STEPS[version](db)
            db.execute(f"UPDATE {VERSION_TABLE} SET version = %s", (version + 1,))
