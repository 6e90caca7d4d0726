"""``POST /api/v1/query/nodes/{node_id}/controls/{action}``: a container control
from the topology, delivered as a ``docker.<action>`` command to the probe that
reported the container (through its deployment's queue, like any command)."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response

from trioscope.actors.agent import Describe
from trioscope.actors.topology import GetSnapshot
from trioscope.domain.principals import Permission
from trioscope.domain.topology import NodeKind, control_allowed, controls_for

from . import _gate
from ._bodies import read_json
from ._command_views import timestamp
from ._commands import decode_create, submit
from ._errors import ApiError
from ._responses import json_response
from ._services import services

blueprint = Blueprint("controls", __name__)
blueprint.before_request(_gate.check_address_rate)


def _no_node(node_id: str) -> ApiError:
    return ApiError(404, "node_not_found", f"no container {node_id!r} that you may control", details={"node_id": node_id})


@blueprint.post("/api/v1/query/nodes/<path:node_id>/controls/<action>")
async def control(node_id: str, action: str) -> Response:
    """Run a container control (OPERATOR): a command for the probe that reported it (202)."""
    s = services()
    principal = await _gate.user(Permission.OPERATE)
    body = await read_json(s.settings, required=False) or {}
    snapshot = await s.topology.ask(GetSnapshot(), timeout=30)
    node = snapshot.node(node_id)
    if node is None or node.kind is not NodeKind.CONTAINER:
        raise _no_node(node_id)
    agent = s.agents.child(node.agent_id)
    described: dict[str, Any] = await agent.ask(Describe(), timeout=10) if agent is not None else {}
    deployment_hash = (described.get("metadata") or {}).get("deployment_hash")
    deployment = ((await _gate.directory()).deployments.get(deployment_hash)
                  if isinstance(deployment_hash, str) else None)
    # The same visibility as the command API: the deployment's owner, or an
    # admin of its tenant; anyone else could not follow the command they made.
    if (deployment is None or deployment.tenant != principal.tenant
            or (deployment.user_id != principal.user_id and not principal.may(Permission.ADMINISTER))):
        raise _no_node(node_id)  # not a probe of one of your deployments: as if it did not exist
    state = node.metadata.get("state", "")
    if not control_allowed(state, action):
        available = [c["id"] for c in controls_for(state)]
        raise ApiError(409, "control_not_available", f"{action!r} is not available for a container that is {state}",
                       details={"state": state, "available": available})
    if not isinstance(body, dict):
        raise ApiError(400, "invalid_body", "$: must be a JSON object")
    extra = body.get("parameters", {})
    create = decode_create({
        "type": f"docker.{action}",
        "parameters": {**(extra if isinstance(extra, dict) else {}), "container": node.metadata["container_id"]},
        "priority": body.get("priority", "high"),
        **({"timeout_seconds": body["timeout_seconds"]} if "timeout_seconds" in body else {}),
        **({"requires_confirmation": body["requires_confirmation"]} if "requires_confirmation" in body else {}),
    })
    stored = await submit(principal, deployment, create, node_id=node_id)
    return json_response({"command_id": stored.id, "status": stored.status.value, "type": stored.type,
                          "deployment_hash": deployment.hash, "user_id": deployment.user_id,
                          "estimated_start": timestamp(stored.scheduled_for)}, status=202)

