"""The directory actor publishes what it knows before it answers a change, and
keeps publishing to the same ``Published`` after a crash."""

from __future__ import annotations

import time

import attrs

from tests.conftest import settings_in
from trioscope.actors.directory import CreateDeployment, Decommission, GetPublished, RegisterAgent
from trioscope.domain.commands import AgentRegistration
from trioscope.domain.deployments import AgentAuthFailure, AgentRecord, AgentStatus
from trioscope.runtime import open_actor_system
from trioscope.store import AuditEntry
from trioscope.system import DIRECTORY, supervision_tree
from tests.waiting import eventually


@attrs.frozen
class Poison:
    """No actor handles this: it crashes whoever receives it."""


def audit(action: str) -> AuditEntry:
    return AuditEntry(at=time.time(), tenant="t", actor="user:u", action=action)


async def test_every_change_is_published_before_it_is_answered_and_survives_a_restart(tmp_path) -> None:
    async with open_actor_system(supervision_tree(settings_in(tmp_path))) as system:
        directory = system.lookup(DIRECTORY)
        published = await directory.ask(GetPublished())
        deployment, enrollment = await directory.ask(CreateDeployment("t", "u", {}, audit("deployment.create")))
        assert published.value.deployments[deployment.hash] == deployment

        agent, token = await directory.ask(RegisterAgent(
            AgentRegistration(deployment_hash=deployment.hash, enrollment_token=enrollment), enrollment,
            audit("agent.register")))
        seen = published.value.authenticate(token, deployment_hash=deployment.hash, agent_id=agent.id)
        assert isinstance(seen, AgentRecord) and seen.id == agent.id
        before = published.value

        async def republished() -> bool:
            return published.value is not before

        directory.tell(Poison())  # the actor restarts and loads from the store
        await eventually(republished)
        assert await directory.ask(GetPublished()) is published
        assert published.value.authenticate(token, deployment_hash=deployment.hash, agent_id=agent.id) == seen

        retired = await directory.ask(Decommission(agent.id, audit("agent.decommission")))
        assert retired.status is AgentStatus.DECOMMISSIONED
        assert published.value.authenticate(token, deployment_hash=deployment.hash,
                                            agent_id=agent.id) is AgentAuthFailure.DECOMMISSIONED
        assert before.agents[agent.id].status is AgentStatus.ACTIVE  # a published value never changes
