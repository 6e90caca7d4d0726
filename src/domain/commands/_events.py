"""What users' WebSockets (``/ws/user``) are told of a command's changes.

Each change of a command (each entry of its history) makes the same events
whichever replica computes them, from the command as stored: the replica that
made the change publishes them from the value it committed, and every other
replica from the row it reloads when the change is announced. So the events
are a function of the command and of which version (``len(history)``, the
number of changes) changed. A change whose entry was merged (a run of progress
reports) reports the run's last progress; one left out of a long history
reports the command as it is now.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from ._model import Command
from ._status import CommandEvent

EVENT_OUTCOME_BYTES = 64 * 1024
"""Largest encoded result (or error) a ``command_completed`` event carries: it
goes to every socket of the tenant's admins and the owner. A larger one is
sent as null with ``result_truncated`` and ``result_bytes``; the command's GET
(and ``/result``) has it."""

DEADLINE_EXPIRY = "not delivered before the delivery deadline"
"""The reason of an ``expire`` entry made by the delivery deadline (a command
also expires when its target agent is retired: that raises no alert)."""
TIMED_OUT = "timed out"
"""The error of a command with the agent past its timeout and grace."""


def command_event(command: Command, version: int | None = None) -> dict[str, Any]:
    """The ``command_progress`` or ``command_completed`` event of ``command``'s
    change number ``version`` (``len(history)`` after it; default: its latest).

    A command finishes with its last entry, so a finished version is the
    command itself; an open one reports the status and the progress as they
    were after that entry.
    """
    entry = None if version is None or version >= len(command.history) else command.history.entry_at(version)
    # The latest, or a change left out of the history: as the command is now.
    at = len(command.history) if entry is None or version is None else version
    status = command.status if entry is None else entry.status
    if status.terminal:
        event = {"type": "command_completed", "command_id": command.id, "deployment_hash": command.deployment_hash,
                 "status": command.status.value, "result": command.result, "error": command.error}
        for field in ("result", "error"):
            if event[field] is not None and (size := len(orjson.dumps(event[field]))) > EVENT_OUTCOME_BYTES:
                event.update({field: None, f"{field}_truncated": True, f"{field}_bytes": size})
        return event
    progress = _progress_at(command, at)
    return {"type": "command_progress", "command_id": command.id, "deployment_hash": command.deployment_hash,
            "status": status.value, "progress": progress.get("percent"), "stage": progress.get("stage")}


def _progress_at(command: Command, version: int) -> dict[str, Any]:
    """``command.progress`` as it was after change ``version`` (a progress
    report is the only change that sets it)."""
    if version == len(command.history):
        return command.progress or {}
    for entry in reversed(command.history.until(version)):
        if entry.event is CommandEvent.PROGRESS:
            detail = entry.detail or {}
            return {"percent": detail.get("percent"), "stage": detail.get("stage")}
    return {}


def deadline_alert(command: Command, version: int | None = None) -> dict[str, Any] | None:
    """The ``system_alert`` of a change made by a deadline (a time-out, or an
    expiry at the delivery deadline), or None for any other change."""
    entry = command.history[-1] if version is None else command.history.entry_at(version)
    if entry is None:
        return None
    if entry.event is CommandEvent.TIME_OUT:
        what = TIMED_OUT
    elif entry.event is CommandEvent.EXPIRE and (entry.detail or {}).get("reason") == DEADLINE_EXPIRY:
        what = "expired"
    else:
        return None
    return {"type": "system_alert", "severity": "warning", "deployment_hash": command.deployment_hash,
            "message": f"command {command.id} ({command.type}) {what}"}


def change_events(command: Command, version: int | None = None) -> list[dict[str, Any]]:
    """Every event of one change, in the order they are published."""
    alert = deadline_alert(command, version)
    return [command_event(command, version), *([alert] if alert is not None else [])]


def announced_events(command: Command, versions: Iterable[int]) -> list[dict[str, Any]]:
    """The events of each of ``versions`` (history lengths another replica
    announced) that ``command``, as read now, holds; a version past its
    history (it was read before that change) or not positive has none."""
    return [event for version in versions if 0 < version <= len(command.history)
            for event in change_events(command, version)]
