"""What the listings of both backends share: the filters of a command page and
of an audit page, the byte budget of a summary page, and how an audit row reads
back. Only the SQL placeholder differs (``?`` for SQLite, ``%s`` for psycopg)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import orjson

from ._command_rows import command_from_columns
from ._ops import AuditEntry
from ._read_results import AuditRecord, StoredCommand

AUDIT_COLUMNS = "id, at, tenant, actor, action, resource_type, resource_id, outcome, address, user_agent, details"
"""In the order ``audit_record`` reads them."""


def command_filter(deployment_hash: str, *, status: str | None, since: float | None, until: float | None,
                   mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause (with ``mark`` placeholders) and its arguments for a page of a deployment's commands."""
    where = [f"deployment_hash = {mark}"]
    args: list[Any] = [deployment_hash]
    for condition, value in (("status =", status), ("created_at >=", since), ("created_at <", until)):
        if value is not None:
            where.append(f"{condition} {mark}")
            args.append(value)
    return " AND ".join(where), args


def audit_filter(tenant: str | None, *, action: str | None, actor: str | None, since: float | None,
                 until: float | None, every_tenant: bool, mark: str) -> tuple[str, list[Any]]:
    """The WHERE clause and its arguments for a page of audit records: of
    ``tenant``; with ``tenant`` None, those in no tenant's log; with ``every_tenant``, all."""
    where: list[str] = []
    args: list[Any] = []
    if not every_tenant:
        where.append("tenant IS NULL" if tenant is None else f"tenant = {mark}")
        args.extend([] if tenant is None else [tenant])
    for column, value, op in (("action", action, "="), ("actor", actor, "="), ("at", since, ">="),
                              ("at", until, "<")):
        if value is not None:
            where.append(f"{column} {op} {mark}")
            args.append(value)
    return " AND ".join(where) or "1 = 1", args


def summary_page(rows: Iterable[Sequence[Any]], max_bytes: int) -> list[StoredCommand]:
    """Summaries from rows of ``(document, error size, error if small enough,
    result size)``, newest first, ending (after at least one) before the
    documents and errors read pass ``max_bytes``. ``rows`` is read lazily: the
    rows past the budget are never fetched."""
    page: list[StoredCommand] = []
    read = 0
    for document, error_size, error, result_bytes in rows:
        weight = len(document) + (len(error) if error is not None else 0)
        if page and read + weight > max_bytes:
            break
        read += weight
        page.append(StoredCommand(
            command=command_from_columns(document, error=error), result_bytes=result_bytes,
            error_bytes=error_size, result_included=False, error_included=error is not None,
            history_included=False))
    return page


def audit_record(row: Sequence[Any]) -> AuditRecord:
    """A row of ``AUDIT_COLUMNS``; ``details`` as text (SQLite) or already decoded (PostgreSQL's JSON)."""
    i, at, tenant, who, what, resource_type, resource_id, outcome, address, agent, details = row
    if isinstance(details, (str, bytes)):
        details = orjson.loads(details)
    return AuditRecord(i, AuditEntry(at=at, tenant=tenant, actor=who, action=what, resource_type=resource_type,
                                     resource_id=resource_id, outcome=outcome, address=address, user_agent=agent,
                                     details=details))
