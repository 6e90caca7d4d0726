"""The directory actor (``/root/directory``): deployments, enrollment tokens and
agent credentials. It authenticates every agent request, and it is the one
place a one-time enrollment token is spent, so two registrations racing with
the same token cannot both win."""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from trioscope.config import Settings
from trioscope.domain.commands import AgentRegistration
from trioscope.domain.deployments import (
    AgentDirectory, AgentRecord, AgentStatus, Deployment, hash_token, token_matches,
)
from trioscope.runtime import ActorRef
from trioscope.store import AuditEntry, SaveAgent, SaveDeployment, SqliteReader, StoreReader

from .notifier import publish
from .refusals import EnrollmentRefused, QuotaExceeded, RefusingActor, UnknownAgent
from .store import commit


@attrs.frozen
class CreateDeployment:
    """Answered with ``(Deployment, enrollment token)``."""

    tenant: str
    user_id: str
    metadata: dict[str, Any]
    audit: AuditEntry


@attrs.frozen
class NewEnrollmentToken:
    """Answered with a fresh one-time token for the deployment (the old one stops working)."""

    deployment_hash: str
    audit: AuditEntry


@attrs.frozen
class RegisterAgent:
    """Answered with ``(AgentRecord, agent token)``."""

    registration: AgentRegistration
    enrollment_token: str
    audit: AuditEntry


@attrs.frozen
class Decommission:
    agent_id: str
    audit: AuditEntry


@attrs.frozen
class Authenticate:
    """Answered with the ``AgentRecord`` or an ``AgentAuthFailure``."""

    token: str | None
    deployment_hash: str | None
    agent_id: str | None


@attrs.frozen
class GetDeployment:
    deployment_hash: str


@attrs.frozen
class ListDeployments:
    tenant: str
    user_id: str | None


@attrs.frozen
class ListAgents:
    """Answered with ``(AgentRecord, last seen or None)`` pairs, oldest agent first."""

    deployment_hash: str


class DirectoryActor(RefusingActor):
    def __init__(self, settings: Settings, *, store_path: str, reader: StoreReader,
                 notifier_path: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.store_path = store_path
        self.notifier_path = notifier_path
        self.reader = reader
        self.clock = clock
        self.directory = AgentDirectory()
        self.last_seen: dict[str, float] = {}
        """When each agent last made an authenticated request (since this start)."""

    async def on_start(self) -> None:
        self.store: ActorRef = self.context.system.lookup(self.store_path)
        self.notifier: ActorRef | None = (self.context.system.lookup(self.notifier_path)
                                          if self.notifier_path is not None else None)
        for deployment in await self.reader.call(SqliteReader.deployments):
            self.directory.put_deployment(deployment)
        for agent in await self.reader.call(SqliteReader.agents):
            self.directory.put_agent(agent)

    async def serve(self, message: Any, now: float) -> Any:
        d = self.directory
        if isinstance(message, Authenticate):
            answer = d.authenticate(message.token, deployment_hash=message.deployment_hash, agent_id=message.agent_id)
            if isinstance(answer, AgentRecord):
                self.last_seen[answer.id] = now  # in memory: a heartbeat is not worth a disk write
            return answer
        if isinstance(message, GetDeployment):
            return d.deployments.get(message.deployment_hash)
        if isinstance(message, ListDeployments):
            return sorted((x for x in d.deployments_of(message.tenant)
                           if message.user_id is None or x.user_id == message.user_id),
                          key=lambda x: x.created_at)
        if isinstance(message, ListAgents):
            agents = sorted((a for a in d.agents.values() if a.deployment_hash == message.deployment_hash),
                            key=lambda a: a.created_at)
            return [(a, self.last_seen.get(a.id)) for a in agents]
        if isinstance(message, CreateDeployment):
            limit = self.settings.tenants.max_deployments
            if len(d.deployments_of(message.tenant)) >= limit:
                raise QuotaExceeded("deployments per tenant", limit, "tenants.max_deployments")
            token = secrets.token_urlsafe(32)
            deployment = Deployment(hash=secrets.token_hex(16), tenant=message.tenant, user_id=message.user_id,
                                    created_at=now, enrollment_hash=hash_token(token), metadata=message.metadata)
            audit = attrs.evolve(message.audit, resource_id=deployment.hash)
            await commit(self.store, [SaveDeployment(deployment), audit])
            d.put_deployment(deployment)
            return deployment, token
        if isinstance(message, NewEnrollmentToken):
            deployment = d.deployments.get(message.deployment_hash)
            assert deployment is not None, "the HTTP edge resolves the deployment first"
            token = secrets.token_urlsafe(32)
            deployment = attrs.evolve(deployment, enrollment_hash=hash_token(token))
            await commit(self.store, [SaveDeployment(deployment), message.audit])
            d.put_deployment(deployment)
            return token
        if isinstance(message, RegisterAgent):
            registration = message.registration
            deployment = d.deployments.get(registration.deployment_hash)
            if deployment is None or not token_matches(message.enrollment_token, deployment.enrollment_hash):
                raise EnrollmentRefused()
            token = secrets.token_urlsafe(32)
            agent = AgentRecord(id=str(uuid.uuid4()), deployment_hash=deployment.hash, token_hash=hash_token(token),
                                status=AgentStatus.ACTIVE, created_at=now,
                                capabilities=tuple(registration.capabilities), version=registration.agent_version,
                                system_info=registration.system_info)
            spent = attrs.evolve(deployment, enrollment_hash=None)
            # Enrolling again replaces the deployment's agent: earlier tokens stop working.
            retired = [attrs.evolve(a, status=AgentStatus.DECOMMISSIONED, decommissioned_at=now)
                       for a in d.active_agents(deployment.hash)]
            audit = attrs.evolve(message.audit, tenant=deployment.tenant, actor=f"agent:{agent.id}",
                                 resource_id=agent.id)
            await commit(self.store, [SaveDeployment(spent), *(SaveAgent(a) for a in retired), SaveAgent(agent), audit])
            d.put_deployment(spent)
            for a in retired:
                d.put_agent(a)
            d.put_agent(agent)
            self._agent_status(agent, deployment)
            return agent, token
        if isinstance(message, Decommission):
            agent = d.agents.get(message.agent_id)
            if agent is None:
                raise UnknownAgent(message.agent_id)
            if agent.status is AgentStatus.DECOMMISSIONED:
                return agent
            agent = attrs.evolve(agent, status=AgentStatus.DECOMMISSIONED, decommissioned_at=now)
            await commit(self.store, [SaveAgent(agent), message.audit])
            d.put_agent(agent)
            self._agent_status(agent, d.deployments[agent.deployment_hash])
            return agent
        return await super().serve(message, now)

    def _agent_status(self, agent: AgentRecord, deployment: Deployment) -> None:
        publish(self.notifier, deployment.tenant, deployment.user_id, {
            "type": "agent_status", "agent_id": agent.id, "deployment_hash": deployment.hash,
            "status": "online" if agent.status is AgentStatus.ACTIVE else "decommissioned",
            "last_seen": agent.decommissioned_at or agent.created_at})

