"""``POST /api/v1/query/nodes/{node_id}/controls/{action}``: a container control
from the topology, delivered as a ``docker.<action>`` command to the probe that
reported the container (through its deployment's queue, like any command).

Its body is checked whole before anything is stored: a key it does not have
(``paramters``), a parameter the control does not take (``since`` for logs)
or a ``container`` other than the node's is refused (400 naming it), where it
was stored, sent, and ignored (a misspelt ``parameters`` ran a plain control
with none of them)."""

from __future__ import annotations

import logging
from typing import Any

from quart import Blueprint, Response

from trioscope.actors.topology import GetSnapshot
from trioscope.domain.commands import Command
from trioscope.domain.principals import Permission
from trioscope.domain.topology import (
    CONTROL_ACTIONS, NodeKind, control_allowed, control_parameter_problem, controls_for, reported_container,
)

from trioscope.wire import MAX_COMMAND_TIMEOUT, rfc3339_millis

from . import _gate, _rate_checks
from ._bodies import read_object
from ._command_submission import decode_create, submit
from ._control_rule import choose, controllers, no_node
from ._errors import ApiError, closest, field_error, key_path, unknown_keys
from ._idempotency import IDEMPOTENCY_HEADER, earlier_answer, requested_once
from ._openapi import Answer, Auth, documented
from ._services import services

log = logging.getLogger(__name__)
blueprint = Blueprint("controls", __name__)
blueprint.before_request(_rate_checks.check_address_rate)

MAX_CONTROL_BODY = 64 * 1024
"""Bytes of a control's body (a few parameters); a larger one is refused (413) before it is read."""

_BODY_PROPERTIES: dict[str, Any] = {
    "parameters": {"type": "object", "description": "the control's parameters (stop, restart: timeout; remove: force; "
                   "logs: tail, follow; exec: argv), and container, the node's own id, if at all"},
    "priority": {"enum": ["low", "normal", "high", "critical"]},
    "timeout_seconds": {"type": "integer", "minimum": 1, "maximum": MAX_COMMAND_TIMEOUT},
    "requires_confirmation": {"type": "boolean"}}
CONTROL_BODY = {"type": "object", "additionalProperties": False, "properties": _BODY_PROPERTIES}
"""The optional body of a control: how the command it makes is run."""

BODY_KEYS: tuple[str, ...] = tuple(_BODY_PROPERTIES)
"""The keys a control's body may have; any other is refused."""

TAKES: dict[str, tuple[str, ...]] = {
    "start": (), "pause": (), "unpause": (), "inspect": (),
    "stop": ("timeout",), "restart": ("timeout",), "remove": ("force",), "logs": ("tail", "follow"), "exec": ("argv",),
}
"""The parameters each control takes besides ``container`` (the probe's
handlers, probe/_executor.py and probe/_follow.py; their values are checked by
``control_parameter_problem``). Any other was stored and sent, for the agent
to ignore."""


def _check_action(action: str) -> None:
    if action not in CONTROL_ACTIONS:
        raise ApiError(404, "unknown_control",
                       f"unknown control {action!r}; the controls are: {', '.join(CONTROL_ACTIONS)}",
                       details={"action": action, "known": list(CONTROL_ACTIONS)})


def _check_parameters(action: str, parameters: dict[str, Any]) -> None:
    """400 naming the first parameter the control does not take, or that the
    probe would refuse (probe/_executor.py's types and bounds), rather than a
    202 for a command bound to fail or to run without it."""
    takes = ("container", *TAKES[action])
    for name in parameters:
        if name not in takes:
            raise field_error("invalid_parameters", key_path("$.parameters", name),
                              f"{action!r} takes no such parameter{closest(name, takes)}; it takes {', '.join(takes)}")
    problem = control_parameter_problem(action, parameters)
    if problem is not None:
        name, expected = problem
        raise field_error("invalid_parameters", f"$.parameters.{name}", f"{expected} for {action!r}")


def _check_container(parameters: dict[str, Any], container: str) -> None:
    """400 for a ``container`` parameter that is not the node's id: the
    command runs on the node's container, whatever it says."""
    if "container" in parameters and parameters["container"] != container:
        raise field_error("invalid_parameters", "$.parameters.container",
                          f"must be the node's container id, {container!r}, or left out (the control runs on the node)")


@blueprint.post("/api/v1/query/nodes/<path:node_id>/controls/<action>")
@documented(auth=Auth.USER, body=CONTROL_BODY, body_required=False, headers=(IDEMPOTENCY_HEADER,),
            answers={202: Answer("the command is stored (or, for a request repeated with its Idempotency-Key, the "
                                 "first answer again, with Idempotent-Replayed: true)")},
            errors={400: "a key the body does not have, a parameter the control does not take, one that is not what "
                         "the probe accepts, a container other than the node's, or an invalid Idempotency-Key "
                         "(names it)",
                    403: "the agent that reported the container does not allow this control (control_not_allowed)",
                    404: "no such container that you may control, or no such control (unknown_control)",
                    409: "the control is not available in the container's state",
                    422: "the Idempotency-Key was used for another request (idempotency_key_reused)"})
async def control(node_id: str, action: str) -> Response:
    """Run a container control (OPERATOR): a command for the probe that reported it (202).
    With an ``Idempotency-Key``, the same request sent again gets the first
    answer and no second command (a container restarted once)."""
    s = services()
    principal = await _gate.user(Permission.OPERATE)
    body = await read_object(s.settings, limit=MAX_CONTROL_BODY)
    once = requested_once(principal, body)
    if once is not None and (earlier := await earlier_answer(once)) is not None:
        # Before the container's state is looked at: the control it ran changed it.
        return earlier
    _check_action(action)
    unknown_keys("invalid_body", body, BODY_KEYS, "a control's body")
    extra = body.get("parameters", {})
    if not isinstance(extra, dict):
        raise field_error("invalid_body", "$.parameters", "must be a JSON object")
    _check_parameters(action, extra)
    snapshot = await s.topology.ask(GetSnapshot(), timeout=30)
    node = snapshot.node(node_id)
    if node is None or node.kind is not NodeKind.CONTAINER:
        raise no_node(node_id)
    controller = choose(await controllers(principal, node_id), node_id, action)
    # Only once the reader may control it: to anyone else it is no node (404).
    container = reported_container(node_id)
    _check_container(extra, container)
    deployment, agent = controller.deployment, controller.agent
    state = node.metadata.get("state", "")
    if not control_allowed(state, action):
        available = [c["id"] for c in controls_for(state, controller.runs)]
        raise ApiError(409, "control_not_available", f"{action!r} is not available for a container that is {state}",
                       details={"state": state, "available": available})
    create = decode_create({
        "type": f"docker.{action}",
        # The id the agent itself reported (the node's), not merged metadata.
        "parameters": {**extra, "container": container},
        "priority": body.get("priority", "high"),
        **({"timeout_seconds": body["timeout_seconds"]} if "timeout_seconds" in body else {}),
        **({"requires_confirmation": body["requires_confirmation"]} if "requires_confirmation" in body else {}),
    })

    def created(command: Command) -> dict[str, Any]:
        return {"command_id": command.id, "status": command.status.value, "type": command.type,
                "deployment_hash": deployment.hash, "user_id": deployment.user_id,
                "estimated_start": rfc3339_millis(command.scheduled_for)}

    answer = await submit(principal, deployment, create, created, target_agent=agent.id, once=once, node_id=node_id)
    log.info("control %s on %s for agent %s of deployment %s", action, node_id, agent.id, deployment.hash)
    return answer

