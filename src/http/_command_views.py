"""How commands, deployments and agents look on the wire."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from trioscope.domain.commands import CancelNotice, Command, Delivery, cancel_notice_id
from trioscope.domain.deployments import AgentRecord, Deployment


def timestamp(seconds: float | None) -> str | None:
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def command_view(command: Command, *, history: bool = False) -> dict[str, Any]:
    view: dict[str, Any] = {
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
        "result": command.result,
        "error": command.error,
        "progress": command.progress,
        "metadata": {"requires_confirmation": command.requires_confirmation,
                     "cancel_requested": command.cancel_requested},
    }
    if history:
        view["history"] = [
            {"status": h.status.value, "at": timestamp(h.at), "event": h.event.value if h.event else "created",
             **({"detail": h.detail} if h.detail else {})}
            for h in command.history
        ]
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
    return {"last_seen": timestamp(last_seen),"agent_id": agent.id, "deployment_hash": agent.deployment_hash, "status": agent.status.value,
            "capabilities": list(agent.capabilities), "version": agent.version, "system_info": agent.system_info,
            "created_at": timestamp(agent.created_at), "decommissioned_at": timestamp(agent.decommissioned_at)}
