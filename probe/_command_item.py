"""A command as the poll hands it over, checked before anything acts on it.

The server sends well-formed commands, but the probe must not trust that
(another server at ``--server``, a proxy, one that poses as the server over
http://): a ``command_id`` of 12345 stopped the container and then crashed
the agent before the final report, a ``timeout_seconds`` of ``1e999`` raised
OverflowError and nothing was reported. Pure: no I/O, no clock.
"""

from __future__ import annotations

import math
from typing import Any

from trioscope.wire import MAX_COMMAND_TIMEOUT

MAX_COMMAND_ID = 256
"""Characters of a command id at most: the server's are at most 128
(``cancel:`` and one of them for a cancel's notice)."""
DEFAULT_TIMEOUT_SECONDS = 300
"""A command's time limit when the item has none."""


def usable_id(item: dict[str, Any]) -> str | None:
    """The item's ``command_id`` if a report can name it (a non-empty string
    of at most ``MAX_COMMAND_ID`` characters); None: the item can only be
    dropped (and logged), nothing can be reported for it."""
    command_id = item.get("command_id")
    if isinstance(command_id, str) and 0 < len(command_id) <= MAX_COMMAND_ID:
        return command_id
    return None


def timeout_of(item: dict[str, Any]) -> float:
    """The item's ``timeout_seconds`` (``DEFAULT_TIMEOUT_SECONDS`` if it has
    none).

    Raises:
        ValueError: it is not a finite number from 1 to ``MAX_COMMAND_TIMEOUT``
            (the message says so, for the command's failed report).
    """
    timeout = item.get("timeout_seconds")
    if timeout is None:
        return DEFAULT_TIMEOUT_SECONDS
    # bool is an int to Python, not to JSON's sender.
    if (isinstance(timeout, bool) or not isinstance(timeout, (int, float))
            or not (math.isfinite(timeout) and 1 <= timeout <= MAX_COMMAND_TIMEOUT)):
        raise ValueError(f"timeout_seconds must be a number of seconds from 1 to {MAX_COMMAND_TIMEOUT}, "
                         f"not {str(timeout)[:40]!r}")
    return float(timeout) if isinstance(timeout, float) else timeout


def kind_of(item: dict[str, Any]) -> str:
    """The item's ``type`` ("" if it has none: an unknown type to the
    executor's check, which names the known ones).

    Raises:
        ValueError: it is not a string (a list would not even be looked up).
    """
    kind = item.get("type", "")
    if not isinstance(kind, str):
        raise ValueError(f"type must be a command type (a string), not {str(kind)[:40]!r}")
    return kind[:128]
