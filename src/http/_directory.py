"""The agent directory as the edge reads it: deployments and agent credentials
as the directory actor last published them, (with replicas) a reload of
records another replica may have created a moment ago, and this process's
agent sockets of agents it retired."""

from __future__ import annotations

from trioscope.actors.directory import GetPublished, ReloadRecords
from trioscope.domain.deployments import AgentAuthFailure, AgentDirectory, AgentStatus

from ._services import services


async def directory() -> AgentDirectory:
    """Deployments and agent credentials as the directory actor last published
    them: read, not asked, on every request (the actor hands out its
    ``Published`` once)."""
    gate = services().gate
    if gate.directory is None:
        gate.directory = await services().directory.ask(GetPublished(), timeout=10.0)
    return gate.directory.value


async def credentials_failure(token: str | None, deployment_hash: str, agent_id: str) -> AgentAuthFailure | None:
    """Why a new request of the agent with ``token`` would be refused now (None: it would not)."""
    answer = (await directory()).authenticate(token, deployment_hash=deployment_hash, agent_id=agent_id)
    return answer if isinstance(answer, AgentAuthFailure) else None


async def close_retired_sockets(deployment_hash: str) -> None:
    """Close this process's agent sockets (``/ws/agent``) of the deployment's
    retired agents with 4410, at once (after a decommission or a replacing
    enrollment). A socket waiting for an agent's message re-checks its
    credentials then, but one waiting for a command's acknowledgement heard
    of it from nothing else: it stayed open until that deadline (10 s).
    Another replica's sockets close at the agent's next message or that deadline."""
    sockets = services().agent_sockets
    if not sockets:
        return
    failure = AgentAuthFailure.DECOMMISSIONED
    for agent in (await directory()).agents_of(deployment_hash):
        if agent.status is AgentStatus.DECOMMISSIONED:
            for link in sockets.get(agent.id, ()):
                link.close(failure.close_code, failure.code)


MAX_RECORD_ID = 64
"""Longest deployment hash or agent id worth looking up in the store (they are 32 and 36 characters)."""


async def heard_of_late(known: AgentDirectory, *, deployment_hashes: tuple[str, ...] = (),
                         agent_ids: tuple[str, ...] = ()) -> bool:
    """With replicas: a request names a deployment or agent this replica has
    not heard of, which another replica may have created a moment ago (its
    notification still on its way). Have the directory read them from the
    store; True if it was asked (look again), False with one process (the
    directory knows everything) or for ids that cannot be ours."""
    s = services()
    deployment_hashes = tuple(h for h in deployment_hashes if h not in known.deployments and _may_be_ours(h))
    agent_ids = tuple(a for a in agent_ids if a not in known.agents and _may_be_ours(a))
    if not s.gate.replicated or not (deployment_hashes or agent_ids):
        return False
    await s.directory.ask(ReloadRecords(deployment_hashes, agent_ids), timeout=10.0)
    return True


def _may_be_ours(record_id: str) -> bool:
    """Whether the store may hold a record of this id: not too long, and no
    NUL character (PostgreSQL cannot even compare one: its reader's error
    crashed the directory, which a request's id must never do)."""
    return len(record_id) <= MAX_RECORD_ID and "\x00" not in record_id
