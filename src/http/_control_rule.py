"""Who may control a container of the topology: the enrolled agent that
reported it and runs the action, in a deployment the user may command. One
rule for the control endpoint (``_controls``) and for node details, which say
whether the reader may control the node and which of its controls (``_query``):
both read the node's controllers once (``controllers``: one ask of the
topology actor, through which every report goes) and choose among them in
memory (``choose``)."""

from __future__ import annotations

import attrs

from trioscope.actors.topology import GetNodeSources
from trioscope.domain.deployments import AgentRecord, Deployment
from trioscope.domain.principals import Permission, Principal
from trioscope.domain.topology import allowed_actions, id_scope, node_scope

from . import _directory
from ._errors import ApiError
from ._services import services


def no_node(node_id: str) -> ApiError:
    return ApiError(404, "node_not_found", f"no container {node_id!r} that you may control", details={"node_id": node_id})


@attrs.frozen(kw_only=True)
class Controller:
    """An enrolled agent that reported a container and that a principal may
    have control it: a deployment of theirs, or of their tenant if they administer it."""

    deployment: Deployment
    """The agent's deployment: its queue carries the control's command."""
    agent: AgentRecord
    """The agent the command is for."""
    runs: frozenset[str] | None
    """The controls the agent runs, from the capabilities it enrolled with (None: all)."""

    def may_run(self, action: str) -> bool:
        return self.runs is None or action in self.runs


async def controllers(principal: Principal, node_id: str) -> tuple[Controller, ...]:
    """The agents that may control container ``node_id`` for ``principal``
    (none: as if the node did not exist), in the topology's order: reporters
    whose reports their agent credentials signed (``_probe_vouching.vouch``) and whose
    engine listed the container (their version offers controls), in a
    deployment the principal may command (its owner or an admin of its
    tenant). Reports are open to anyone; controls only reach real agents.
    A container of another tenant's scope (``id_scope``) has none for the
    principal, whoever reports under its agent id now."""
    scope = id_scope(node_id)
    if scope is not None and scope != node_scope(principal.tenant):
        return ()
    directory = await _directory.directory()
    found: list[Controller] = []
    for reporter in await services().topology.ask(GetNodeSources(node_id, offering_controls=True), timeout=30):
        agent = directory.reporting_agent(reporter)
        deployment = directory.deployments.get(agent.deployment_hash) if agent is not None else None
        if (agent is not None and deployment is not None and deployment.tenant == principal.tenant
                and (deployment.user_id == principal.user_id or principal.may(Permission.ADMINISTER))):
            found.append(Controller(deployment=deployment, agent=agent,
                                    runs=allowed_actions(agent.capabilities, agent.version)))
    return tuple(found)


def choose(found: tuple[Controller, ...], node_id: str, action: str) -> Controller:
    """The first of ``found`` (``controllers``) that runs ``action``.

    Error handling: 403 ``control_not_allowed`` if none of them runs it (its
    agent enrolled without it: ``--allow``); 404 ``node_not_found`` if there
    are none."""
    for controller in found:
        if controller.may_run(action):
            return controller
    if found:
        agent = found[0].agent
        names = sorted(found[0].runs or ())
        raise ApiError(403, "control_not_allowed",
                       f"{action!r} is not allowed by the agent that reported this container: it enrolled "
                       f"allowing {', '.join(names) or 'no controls'} (a probe's --allow); enroll it again "
                       f"with docker.{action} in --allow to use it",
                       details={"action": action, "agent_id": agent.id, "allowed": names})
    raise no_node(node_id)
