"""Idempotency keys of command creations (table ``idempotency_keys``), in both
stores: each user's keys (``trioscope.domain.idempotency``) with the answer
of the request that created the key's command.

A key is written in the group that creates its command (``SaveIdempotencyKey``
beside the ``SaveCommand``): both are stored, or neither. Its primary key
(tenant, user, key) decides between two requests with one key, on one
process or on two replicas at once: the second's insert finds the row, and
its group (its command with it) fails with ``KeyTaken``. A key whose window
is over is replaced by a new use of it, and pruned with the store's prune.

What a client stores with its keys is bounded as its commands are: a key is
kept only with a command it created, and its bytes count in its tenant's
total of stored commands (``_tenant_usage``, the quota
``tenants.max_command_bytes``) until it is pruned.
"""

from __future__ import annotations

from typing import Any

from trioscope.domain.idempotency import KeptAnswer

from ._ops import SaveIdempotencyKey
from ._tenant_usage import postgres_triggers, sqlite_triggers

_SQLITE_SIZE = ("(length(CAST({row}.user_id AS BLOB)) + length(CAST({row}.key AS BLOB)) + length({row}.fingerprint)"
                " + length({row}.command_id) + length({row}.answer))")
"""A key's bytes in SQLite (text columns as bytes: a user id may be beyond ASCII)."""
_POSTGRES_SIZE = ("octet_length({row}.user_id) + octet_length({row}.key) + octet_length({row}.fingerprint)"
                  " + octet_length({row}.command_id) + octet_length({row}.answer)")

_COLUMNS = """
    tenant TEXT NOT NULL,
    user_id TEXT NOT NULL,
    key TEXT NOT NULL,  -- 1-255 printable ASCII characters
    fingerprint TEXT NOT NULL,  -- of the request that created the command (domain.idempotency)
    command_id TEXT NOT NULL,
    status INTEGER NOT NULL,  -- its answer's HTTP status
    answer {blob} NOT NULL,  -- and body
    created_at {real} NOT NULL,
    PRIMARY KEY (tenant, user_id, key)
"""

SQLITE_SCHEMA = (f"""
CREATE TABLE IF NOT EXISTS idempotency_keys ({_COLUMNS.format(blob="BLOB", real="REAL")});
CREATE INDEX IF NOT EXISTS idempotency_keys_created ON idempotency_keys (created_at);  -- pruning
""" + sqlite_triggers("idempotency_keys", _SQLITE_SIZE, "tenant, user_id, key, fingerprint, command_id, answer"))
"""The table and its triggers, in a new database's schema and in the step
that adds them (``_migrations._to_4``)."""

POSTGRES_SCHEMA = f"""
CREATE TABLE idempotency_keys ({_COLUMNS.format(blob="BYTEA", real="DOUBLE PRECISION")});
CREATE INDEX idempotency_keys_created ON idempotency_keys (created_at);  -- pruning
{postgres_triggers("idempotency_keys", _POSTGRES_SIZE)}"""
"""Schema version 5: the table (empty) and its triggers."""

SAVE = """
INSERT INTO idempotency_keys (tenant, user_id, key, fingerprint, command_id, status, answer, created_at)
VALUES ({m}, {m}, {m}, {m}, {m}, {m}, {m}, {m})
ON CONFLICT (tenant, user_id, key) DO UPDATE SET fingerprint = excluded.fingerprint,
    command_id = excluded.command_id, status = excluded.status, answer = excluded.answer,
    created_at = excluded.created_at
WHERE idempotency_keys.created_at < {m}
"""
"""Keep a key (``SaveIdempotencyKey``): a row is written unless a live one
holds the key (then none is, and the write is a ``KeyTaken``). Format
``m`` with the driver's parameter mark."""

READ = ("SELECT tenant, user_id, key, fingerprint, command_id, status, answer, created_at FROM idempotency_keys"
        " WHERE tenant = {m} AND user_id = {m} AND key = {m}")
"""A user's key as stored (expired or not: ``KeptAnswer.expired`` says)."""


AFTER = ("SELECT tenant, user_id, key, fingerprint, command_id, status, answer, created_at FROM idempotency_keys"
         " WHERE (tenant, user_id, key) > ({m}, {m}, {m}) ORDER BY tenant, user_id, key LIMIT {m}")
"""Up to a number of keys after a (tenant, user, key), in that order (``store copy``)."""


def kept_answer(row: tuple[Any, ...]) -> KeptAnswer:
    """A row of ``READ``."""
    tenant, user_id, key, fingerprint, command_id, status, answer, created_at = row
    return KeptAnswer(tenant=tenant, user_id=user_id, key=key, fingerprint=fingerprint, command_id=command_id,
                      status=int(status), body=bytes(answer), created_at=float(created_at))


def save_values(write: SaveIdempotencyKey) -> tuple[object, ...]:
    """The parameters of ``SAVE`` for ``write``."""
    a = write.answer
    return (a.tenant, a.user_id, a.key, a.fingerprint, a.command_id, a.status, a.body, a.created_at,
            write.replaces_before)
