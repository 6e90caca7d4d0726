"""How a command is laid out in its row of the ``commands`` table.

The small fields are one JSON ``document``; what an agent or a long life can
make large (the error, the history, the result: each up to a request body)
has a BLOB column of its own, result last. So a listing reads the documents of
its page and only the lengths of the rest (SQLite answers ``length()`` of a
BLOB from the row header, without reading the value), and a large result is
read a page at a time (``Connection.blobopen``), never whole.
"""

from __future__ import annotations

from typing import Any

import orjson

from trioscope.domain.commands import OPEN_STATUSES, Command, command_document, command_from_document

BULK_COLUMNS = ("error", "history", "result")
"""In this order after ``document``, in new and migrated tables alike."""

OPEN_STATUSES_SQL = "(" + ", ".join(f"'{status.value}'" for status in OPEN_STATUSES) + ")"
"""The ``status`` of a command not yet finished, as an SQL list."""


def split_document(document: dict[str, Any]) -> tuple[bytes, bytes, bytes, bytes]:
    """``command_document(c)`` as stored: ``(document, error, history, result)``.

    The document keeps the newest history entry without its detail (which
    holds a failure's error): a summary shows when the command last changed."""
    small = dict(document)
    history = small.pop("history")
    result = small.pop("result", None)
    error = small.pop("error", None)
    small["history"] = [{**history[-1], "detail": None}]
    return orjson.dumps(small), orjson.dumps(error), orjson.dumps(history), orjson.dumps(result)


def command_columns(command: Command) -> tuple[bytes, bytes, bytes, bytes]:
    """``(document, error, history, result)`` of ``command``."""
    return split_document(command_document(command))


def finished_at(command: Command) -> float | None:
    """When it reached a final status (the server's clock); None while open."""
    return command.completed_at if command.status.terminal else None


def _as_stored(column: bytes) -> Any:
    return None if column == b"null" else orjson.Fragment(column)


def command_from_columns(document: bytes, *, error: bytes | None = None, history: bytes | None = None,
                         result: bytes | None = None, raw_result: bool = False) -> Command:
    """The inverse of ``command_columns``, from the document and those bulk columns
    that were read: the others stay None, and the history its newest entry.
    With ``raw_result``, the result and the error are their stored JSON as
    ``orjson.Fragment`` (None for JSON ``null``), for an answer that only
    writes them out again: a viewer re-reading a command with a 1 MiB result
    had it parsed and encoded again each time (other tenants' requests p50
    ~5 -> ~190 ms at 23 a second)."""
    read = _as_stored if raw_result else orjson.loads
    fields = orjson.loads(document)
    if history is not None:
        fields["history"] = orjson.loads(history)
    if result is not None:
        fields["result"] = read(result)
    if error is not None:
        fields["error"] = read(error)
    return command_from_document(fields)


def command_from_values(document: dict[str, Any], error: Any, history: list[Any], result: Any) -> Command:
    """The inverse of ``command_columns`` from all four columns already parsed
    (a change notification carries them inside its own JSON)."""
    return command_from_document({**document, "history": history, "result": result, "error": error})
