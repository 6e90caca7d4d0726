"""``POST /api/v1/query/nodes/{node_id}/controls/{action}``: a container control
from the topology, delivered as a ``docker.<action>`` command to the probe that
reported the container (through its deployment's queue, like any command)."""

from __future__ import annotations

import logging

from quart import Blueprint, Response

from trioscope.actors.topology import GetNodeSources, GetSnapshot
from trioscope.domain.deployments import AgentRecord, Deployment
from trioscope.domain.principals import Permission, Principal
from trioscope.domain.topology import NodeKind, control_allowed, controls_for

from . import _gate
from ._bodies import read_object
from ._command_views import timestamp
from ._errors import ApiError, field_error
from ._openapi import Answer, Auth, documented
from ._responses import json_response
from ._services import services
from ._shared import decode_create, submit

log = logging.getLogger(__name__)
blueprint = Blueprint("controls", __name__)
blueprint.before_request(_gate.check_address_rate)

CONTROL_BODY = {"type": "object", "properties": {
    "parameters": {"type": "object", "description": "added to the command's parameters"},
    "priority": {"enum": ["low", "normal", "high", "critical"]},
    "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": 7 * 24 * 3600},
    "requires_confirmation": {"type": "boolean"}}}
"""The optional body of a control: how the command it makes is run."""


def _no_node(node_id: str) -> ApiError:
    return ApiError(404, "node_not_found", f"no container {node_id!r} that you may control", details={"node_id": node_id})


async def _controlling_agent(principal: Principal, node_id: str) -> tuple[Deployment, AgentRecord]:
    """The enrolled agent that reported the container and may run its controls,
    with its deployment: a reporter whose reports its agent credentials signed
    (``_gate.vouch``), in a deployment the principal may command (its owner or
    an admin of its tenant). Anything else is answered as if the node did not
    exist: reports are open to anyone, controls only reach real agents."""
    directory = await _gate.directory()
    for reporter in await services().topology.ask(GetNodeSources(node_id), timeout=30):
        agent = directory.reporting_agent(reporter)
        deployment = directory.deployments.get(agent.deployment_hash) if agent is not None else None
        if (agent is not None and deployment is not None and deployment.tenant == principal.tenant
                and (deployment.user_id == principal.user_id or principal.may(Permission.ADMINISTER))):
            return deployment, agent
    raise _no_node(node_id)


@blueprint.post("/api/v1/query/nodes/<path:node_id>/controls/<action>")
@documented(auth=Auth.USER, body=CONTROL_BODY, body_required=False, answers={202: Answer("the command is stored")},
            errors={409: "the control is not available in the container's state"})
async def control(node_id: str, action: str) -> Response:
    """Run a container control (OPERATOR): a command for the probe that reported it (202)."""
    s = services()
    principal = await _gate.user(Permission.OPERATE)
    body = await read_object(s.settings)
    extra = body.get("parameters", {})
    if not isinstance(extra, dict):
        raise field_error("invalid_body", "$.parameters", "must be a JSON object")
    snapshot = await s.topology.ask(GetSnapshot(), timeout=30)
    node = snapshot.node(node_id)
    if node is None or node.kind is not NodeKind.CONTAINER:
        raise _no_node(node_id)
    deployment, agent = await _controlling_agent(principal, node_id)
    state = node.metadata.get("state", "")
    if not control_allowed(state, action):
        available = [c["id"] for c in controls_for(state)]
        raise ApiError(409, "control_not_available", f"{action!r} is not available for a container that is {state}",
                       details={"state": state, "available": available})
    create = decode_create({
        "type": f"docker.{action}",
        # The id the agent itself reported (the node's), not merged metadata.
        "parameters": {**extra, "container": node_id.removeprefix("container:")},
        "priority": body.get("priority", "high"),
        **({"timeout_seconds": body["timeout_seconds"]} if "timeout_seconds" in body else {}),
        **({"requires_confirmation": body["requires_confirmation"]} if "requires_confirmation" in body else {}),
    })
    stored = await submit(principal, deployment, create, target_agent=agent.id, node_id=node_id)
    log.info("control %s on %s for agent %s of deployment %s", action, node_id, agent.id, deployment.hash)
    return json_response({"command_id": stored.id, "status": stored.status.value, "type": stored.type,
                          "deployment_hash": deployment.hash, "user_id": deployment.user_id,
                          "estimated_start": timestamp(stored.scheduled_for)}, status=202)

