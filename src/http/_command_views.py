"""How commands, deployments and agents look on the wire."""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import orjson

from trioscope.domain.commands import CancelNotice, Command, Delivery, History, StatusChange, cancel_notice_id
from trioscope.domain.deployments import AgentRecord, AgentStatus, Deployment
from trioscope.store import StoredCommand


_LATEST = datetime.max.replace(tzinfo=UTC)
_EARLIEST = datetime.min.replace(tzinfo=UTC)


def timestamp(seconds: float | None) -> str | None:
    """``seconds`` (unix time) in RFC 3339, UTC, to the millisecond
    (``2025-01-02T03:04:05.678Z``); None for None and NaN.

    A time outside the years 1-9999 is shown as the nearest end of that range
    instead of failing the request (a 500): only a token's ``exp`` can hold one,
    minted with the server's secret by something other than ``token create``
    (which caps its ttl), or by a ``token create`` that did not yet."""
    if seconds is None or math.isnan(seconds):
        return None
    try:
        moment = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):  # which one depends on the platform and the size
        moment = _LATEST if seconds > 0 else _EARLIEST
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _fields(command: Command) -> dict[str, Any]:
    """Every field of the command but its result, error and history."""
    return {
        "id": command.id,
        "command_id": command.id,
        "deployment_hash": command.deployment_hash,
        "type": command.type,
        "status": command.status.value,
        "priority": command.priority.value,
        "parameters": command.parameters,
        "created_by": command.created_by,
        "created_at": timestamp(command.created_at),
        "updated_at": timestamp(command.updated_at),
        "scheduled_for": timestamp(command.scheduled_for),
        "sent_at": timestamp(command.sent_at),
        "started_at": timestamp(command.started_at),
        "completed_at": timestamp(command.completed_at),
        "timeout_seconds": command.timeout_seconds,
        "progress": command.progress,
        "metadata": {"requires_confirmation": command.requires_confirmation,
                     "cancel_requested": command.cancel_requested},
        "target_agent_id": command.target_agent,
    }


def _history_entry(change: StatusChange, max_detail_bytes: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": change.status.value, "at": timestamp(change.at),
                             "event": change.event.value if change.event else "created"}
    if change.detail:
        if max_detail_bytes is not None and len(orjson.dumps(change.detail)) > max_detail_bytes:
            entry["detail_truncated"] = True  # a failure's large error: it is the command's error too
        else:
            entry["detail"] = change.detail
    if change.count > 1:  # a run of progress reports: the first's time, the last's detail
        entry.update(count=change.count, last_at=timestamp(change.last_at))
    return entry


def _history(history: History, max_detail_bytes: int | None = None) -> list[dict[str, Any]]:
    """The history's entries, with a marker where entries were left out."""
    entries = [_history_entry(h, max_detail_bytes) for h in history]
    if history.left_out:
        entries.insert(history.first, {"event": "left_out", "count": history.left_out})
    return entries


def command_view(command: Command, *, history: bool = False) -> dict[str, Any]:
    """The whole command (for the commands that queue actors answer: open, and small)."""
    view = {**_fields(command), "result": command.result, "error": command.error}
    if history:
        view["history"] = _history(command.history)
    return view


def stored_command_view(stored: StoredCommand, url: str, *, max_detail_bytes: int) -> dict[str, Any]:
    """A command as read from the store: in a listing, a summary (no result, no
    history); on its own, with its history (details over ``max_detail_bytes``
    left out) and its result and error when they were small enough to read.
    ``links`` say where the rest is: ``url`` is the command's own GET."""
    command = stored.command
    view = _fields(command)
    if stored.history_included:
        view["result"] = command.result
        view["result_truncated"] = not stored.result_included
        view["history"] = _history(command.history, max_detail_bytes)
    view["result_bytes"] = stored.result_bytes
    view["error"] = command.error
    view["error_truncated"] = not stored.error_included
    # No error is stored as JSON null: no bytes of an error to read.
    view["error_bytes"] = 0 if stored.error_included and command.error is None else stored.error_bytes
    view["links"] = {"self": url, "result": f"{url}/result", "error": f"{url}/error"}
    return view


def delivery_view(delivery: Delivery, deployment_hash: str) -> dict[str, Any]:
    """What a poll returns: the seed's ``command`` and the status agent's ``item``."""
    if isinstance(delivery, CancelNotice):
        return {"id": cancel_notice_id(delivery.command_id), "command_id": cancel_notice_id(delivery.command_id),
                "deployment_hash": deployment_hash, "type": "cancel", "status": "sent", "priority": "critical",
                "parameters": {"command_id": delivery.command_id}}
    return command_view(delivery)


def deployment_view(deployment: Deployment) -> dict[str, Any]:
    return {"deployment_hash": deployment.hash, "user_id": deployment.user_id, "tenant": deployment.tenant,
            "status": deployment.status.value, "created_at": timestamp(deployment.created_at),
            "metadata": deployment.metadata, "enrollment_pending": deployment.enrollment_hash is not None}


def agent_view(agent: AgentRecord, last_seen: float | None = None) -> dict[str, Any]:
    """An agent; a retired one without system info (it keeps none)."""
    view: dict[str, Any] = {"last_seen": timestamp(last_seen), "agent_id": agent.id, "deployment_hash": agent.deployment_hash,
            "status": agent.status.value, "capabilities": list(agent.capabilities), "version": agent.version,
            "created_at": timestamp(agent.created_at), "decommissioned_at": timestamp(agent.decommissioned_at)}
    if agent.status is AgentStatus.ACTIVE:
        view["system_info"] = agent.system_info
    return view
