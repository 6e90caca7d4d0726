"""How commands, deployments and agents look on the wire: the views of plain
values, and the records that add what this process knows of agents (when
they were heard from, their connections: ``agent_record``, ``deployment_record``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import orjson
import trio

from trioscope.domain.commands import (
    CancelNotice, Command, CommandEvent, Delivery, History, StatusChange, cancel_notice_id,
)
from trioscope.domain.deployments import AgentDirectory, AgentRecord, AgentStatus, Deployment
from trioscope.store import StoredCommand
from trioscope.wire import rfc3339_millis

from . import _agent_presence
from ._services import services




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
        "created_at": rfc3339_millis(command.created_at),
        "updated_at": rfc3339_millis(command.updated_at),
        "scheduled_for": rfc3339_millis(command.scheduled_for),
        "sent_at": rfc3339_millis(command.sent_at),
        "started_at": rfc3339_millis(command.started_at),
        "completed_at": rfc3339_millis(command.completed_at),
        "timeout_seconds": command.timeout_seconds,
        "progress": command.progress,
        "metadata": {"requires_confirmation": command.requires_confirmation,
                     "rollback_on_failure": command.rollback_on_failure,
                     "estimated_duration": command.estimated_duration,
                     "checkpoint_support": command.checkpoint_support,
                     "cancel_requested": command.cancel_requested},
        "target_agent_id": command.target_agent,
    }


def _history_entry(change: StatusChange, max_detail_bytes: int | None = None) -> dict[str, Any]:
    entry: dict[str, Any] = {"status": change.status.value, "at": rfc3339_millis(change.at),
                             "event": change.event.value if change.event else "created"}
    if change.detail:
        if max_detail_bytes is not None and len(orjson.dumps(change.detail)) > max_detail_bytes:
            entry["detail_truncated"] = True  # a failure's large error: it is the command's error too
        else:
            entry["detail"] = change.detail
    if change.count > 1:  # a run of progress reports: the first's time, the last's detail
        entry.update(count=change.count, last_at=rfc3339_millis(change.last_at))
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
    view["result_bytes"] = _result_bytes(stored)
    view["error"] = command.error
    view["error_truncated"] = not stored.error_included
    # No error is stored as JSON null: no bytes of an error to read.
    view["error_bytes"] = 0 if stored.error_included and command.error is None else stored.error_bytes
    view["links"] = {"self": url, "result": f"{url}/result", "error": f"{url}/error"}
    return view


_RESULT_EVENTS = frozenset({CommandEvent.COMPLETE, CommandEvent.FAIL, CommandEvent.AGENT_CANCELLED,
                            CommandEvent.LATE_OUTCOME})
"""The changes that may set a command's result: an agent's final report (also one after a time-out)."""


def _result_bytes(stored: StoredCommand) -> int:
    """The size of the result as compact JSON; 0 when there is none, as for
    ``error_bytes`` (the store keeps "no result" as JSON ``null``: 4 bytes).

    A listing reads sizes, not results: a command last changed by anything but
    an agent's final report has none; one an agent finished with a 4-byte
    result (``null``, or ``true``, ``"ab"``...) is shown as stored."""
    command = stored.command
    if stored.result_included:
        return 0 if command.result is None else stored.result_bytes
    if not command.status.terminal or command.history[-1].event not in _RESULT_EVENTS:
        return 0
    return stored.result_bytes


def delivery_view(delivery: Delivery, deployment_hash: str) -> dict[str, Any]:
    """What a poll returns: the seed's ``command`` and the status agent's ``item``."""
    if isinstance(delivery, CancelNotice):
        return {"id": cancel_notice_id(delivery.command_id), "command_id": cancel_notice_id(delivery.command_id),
                "deployment_hash": deployment_hash, "type": "cancel", "status": "sent", "priority": "critical",
                "parameters": {"command_id": delivery.command_id}}
    return command_view(delivery)


def deployment_view(deployment: Deployment, *, agent_id: str | None = None,
                    last_seen_at: float | None = None) -> dict[str, Any]:
    """A deployment: the seed's ``id`` (its hash), ``agent_id`` (its active
    agent, None without one) and ``last_seen_at`` (when one of its agents was
    last heard from, ``last_heard``) beside the fields of earlier versions."""
    return {"id": deployment.hash, "deployment_hash": deployment.hash, "user_id": deployment.user_id,
            "tenant": deployment.tenant, "agent_id": agent_id, "status": deployment.status.value,
            "created_at": rfc3339_millis(deployment.created_at), "last_seen_at": rfc3339_millis(last_seen_at),
            "metadata": deployment.metadata, "enrollment_pending": deployment.enrollment_hash is not None}


def last_heard(agent: AgentRecord, seen: Mapping[str, float]) -> float:
    """When ``agent`` was last heard from, as far as this process knows: its
    latest request that passed every check (``seen``: ``AgentSightings.seen``), else its
    enrolment (a request of the agent too)."""
    heard = seen.get(agent.id)
    return agent.created_at if heard is None else max(heard, agent.created_at)


def agent_view(agent: AgentRecord, *, last_seen: float | None, online_within: float, now: float,
               connection_info: dict[str, Any] | None = None) -> dict[str, Any]:
    """An agent; a retired one without system info (it keeps none) nor connection info.

    ``status`` is the seed's liveness: ``online`` for an active agent heard
    from within ``online_within`` seconds (``agents.heartbeat_timeout``) of
    ``now``, else ``offline``; whether it is enrolled or was retired
    (decommissioned, or replaced by a new enrolment) is ``enrollment_status``.
    ``last_heartbeat`` (the seed's name) and ``last_seen`` are the same time."""
    online = agent.status is AgentStatus.ACTIVE and last_seen is not None and now - last_seen <= online_within
    heard = rfc3339_millis(last_seen)
    view: dict[str, Any] = {
        "id": agent.id, "agent_id": agent.id, "deployment_hash": agent.deployment_hash,
        "status": "online" if online else "offline", "enrollment_status": agent.status.value,
        "last_heartbeat": heard, "last_seen": heard, "capabilities": list(agent.capabilities),
        "version": agent.version, "created_at": rfc3339_millis(agent.created_at),
        "decommissioned_at": rfc3339_millis(agent.decommissioned_at),
        "connection_info": connection_info if agent.status is AgentStatus.ACTIVE else None}
    if agent.status is AgentStatus.ACTIVE:
        view["system_info"] = agent.system_info
    return view


def agent_record(agent: AgentRecord) -> dict[str, Any]:
    """``agent_view`` with what this process knows of the agent: when it was
    last heard from (``AgentSightings.seen``), whether it holds a long-poll or an agent
    socket here now, where its latest agent request came from, how long its
    latest pong took (its socket's) and which command it was last handed."""
    s = services()
    sockets = len(s.agent_sockets.get(agent.id, ()))
    polls = len(_agent_presence.presence().polls.get(agent.id, ()))
    seen = s.gate.sightings
    seen.follow_clock(time.time(), trio.current_time())
    connection = {"transport": "websocket" if sockets else "long_poll" if polls else None,
                  "ip_address": seen.addresses.get(agent.id), "latency_ms": seen.latencies.get(agent.id),
                  "last_command_id": seen.last_commands.get(agent.id), "websockets": sockets, "long_polls": polls}
    return agent_view(agent, last_seen=last_heard(agent, seen.seen),
                      online_within=s.settings.agents.heartbeat_timeout, now=time.time(), connection_info=connection)


def deployment_record(deployment: Deployment, directory: AgentDirectory,
                      seen: Mapping[str, float] | None = None) -> dict[str, Any]:
    """``deployment_view`` with its active agent (the newest, if several) and
    when one of its agents was last heard from, as this process knows
    (``seen``: ``AgentSightings.seen``; None: the current app's)."""
    if seen is None:
        seen = services().gate.sightings.seen
    active = directory.active_agents(deployment.hash)
    heard = [last_heard(a, seen) for a in directory.agents_of(deployment.hash)]
    return deployment_view(deployment, agent_id=active[-1].id if active else None,
                           last_seen_at=max(heard) if heard else None)


def user_deployments(directory: AgentDirectory, tenant: str, user_id: str,
                     seen: Mapping[str, float] | None = None) -> list[dict[str, Any]]:
    """``user_id``'s deployments in ``tenant``, oldest first, as ``deployment_record``s:
    ``GET .../deployments`` and the seed's ``initial_state`` on ``/ws/user``
    (made in its client's actor, outside the app: ``seen`` given)."""
    found = sorted((d for d in directory.deployments_of(tenant) if d.user_id == user_id), key=lambda d: d.created_at)
    return [deployment_record(d, directory, seen) for d in found]
