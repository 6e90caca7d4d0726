"""What user-facing reads of commands answer: a command without what would make
the read large, and one page of a large value."""

from __future__ import annotations

from typing import Literal

import attrs

from trioscope.domain.commands import Command

from ._ops import AuditEntry

BulkPart = Literal["result", "error"]
"""The values an agent sends that may be as large as a request body."""


@attrs.frozen(kw_only=True)
class StoredCommand:
    """A command as a listing or a user's GET reads it: the small fields always,
    the agent's result and error only when they are small enough, the history
    only when asked for."""

    command: Command
    """``result`` and ``error`` are None unless included; ``history`` has every
    entry when ``history_included``, else only the newest one, without its detail."""
    result_bytes: int
    """Size of the result as compact JSON (``null`` is 4)."""
    error_bytes: int
    """Size of the error as compact JSON."""
    result_included: bool
    error_included: bool
    history_included: bool


@attrs.frozen(kw_only=True)
class CommandPart:
    """Bytes ``[offset, offset + len(data))`` of a command's result or error as compact JSON."""

    deployment_hash: str
    """Whose command it is (the caller checks it is the deployment asked for)."""
    total: int
    """Size of the whole value."""
    data: bytes


@attrs.frozen
class AuditRecord:
    """An audit entry as the log holds it: numbered in the order it was written."""

    id: int
    entry: AuditEntry
