"""Who may control a container of the topology: the enrolled agent that
reported it and runs the action, in a deployment the user may command. One
rule for the control endpoint (``_controls``) and for node details, which say
whether the reader may control the node (``_query``)."""

from __future__ import annotations

from trioscope.actors.topology import GetNodeSources
from trioscope.domain.deployments import AgentRecord, Deployment
from trioscope.domain.principals import Permission, Principal
from trioscope.domain.topology import allowed_actions

from . import _gate
from ._errors import ApiError
from ._services import services


def no_node(node_id: str) -> ApiError:
    return ApiError(404, "node_not_found", f"no container {node_id!r} that you may control", details={"node_id": node_id})


def allowed(agent: AgentRecord) -> frozenset[str] | None:
    """The controls ``agent`` runs (None: all), from the capabilities it enrolled with."""
    return allowed_actions(agent.capabilities, agent.version)


async def controlling_agent(principal: Principal, node_id: str, action: str) -> tuple[Deployment, AgentRecord]:
    """The enrolled agent that reported the container and may run its
    ``action``, with its deployment: a reporter whose reports its agent
    credentials signed (``_gate.vouch``) and whose engine listed the container
    (its version offers controls), in a deployment the principal may command
    (its owner or an admin of its tenant). Without one, as if the node did not
    exist: reports are open to anyone, controls only reach real agents.

    Error handling: 403 ``control_not_allowed`` if such agents exist and none
    of them runs ``action`` (it enrolled without it: ``--allow``)."""
    directory = await _gate.directory()
    refusing: list[AgentRecord] = []
    for reporter in await services().topology.ask(GetNodeSources(node_id, offering_controls=True), timeout=30):
        agent = directory.reporting_agent(reporter)
        deployment = directory.deployments.get(agent.deployment_hash) if agent is not None else None
        if (agent is not None and deployment is not None and deployment.tenant == principal.tenant
                and (deployment.user_id == principal.user_id or principal.may(Permission.ADMINISTER))):
            runs = allowed(agent)
            if runs is None or action in runs:
                return deployment, agent
            refusing.append(agent)
    if refusing:
        agent = refusing[0]
        names = sorted(allowed(agent) or ())
        raise ApiError(403, "control_not_allowed",
                       f"{action!r} is not allowed by the agent that reported this container: it enrolled "
                       f"allowing {', '.join(names) or 'no controls'} (a probe's --allow); enroll it again "
                       f"with docker.{action} in --allow to use it",
                       details={"action": action, "agent_id": agent.id, "allowed": names})
    raise no_node(node_id)
