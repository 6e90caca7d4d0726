"""The directory actor (``/root/directory``): deployments, enrollment tokens and
agent credentials. It is the one place they change, so a one-time enrollment
token is spent once even when two registrations race with it.

Every agent request and every user route reads them, so the directory
publishes a snapshot of itself (``Published[AgentDirectory]``, replaced after
each change and before the change is answered) that the HTTP edge reads
without a message: authentication costs a dict lookup, not two task switches
per request. Read-your-writes holds: a deployment, a new agent or a
decommission is in the snapshot before its request is answered.

Retired agents (decommissioned, or replaced by a new enrolment) keep a small
record, without system info, so their tokens answer 410; the directory
forgets them once they are older than the history retention, checking every
hour as the store prunes commands.

With replicas, what another replica committed arrives as ``ReloadRecords``
(from the change feed, or from the HTTP edge when a request names a
deployment or agent this replica has not heard of yet): the directory reads
those records again, publishes, tells their queues of retired agents and
tells users what the replica that made the change told its own."""

from __future__ import annotations

import logging
import secrets
import time
import uuid
from collections.abc import Callable
from typing import Any

import attrs

from trioscope.config import Settings, format_duration
from trioscope.domain.commands import AgentRegistration
from trioscope.domain.deployments import (
    AgentDirectory, AgentRecord, AgentStatus, Deployment, agent_status_event, hash_token,
)
from trioscope.runtime import ActorNotFound, ActorRef, Published
from trioscope.store import (AuditEntry, Conflict, ForgetAgents, OverQuota, SaveAgent, SaveDeployment,
                             StoreReader)

from .notifier import publish
from .refusals import EnrollmentRefused, QuotaExceeded, RefusingActor, ReporterTaken, UnknownAgent
from .store import commit

log = logging.getLogger(__name__)


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
class AttachReporter:
    """An enrolled agent signed a report (or registration) of probe agent id
    ``reporter_id``: its nodes belong to the agent's deployment from now on.
    Answered with None; refused with ``ReporterTaken``."""

    reporter_id: str
    agent_id: str
    lapsed: bool = False
    """Taken from another enrolled agent whose claim lapsed (``AgentDirectory.attach_reporter``)."""


@attrs.frozen
class ReleaseReporter:
    """Nothing was reported under probe agent id ``reporter_id`` for
    ``agents.stale_threshold`` and an unsigned probe reports under it now: the
    enrolled agent that did holds it no more. Answered with that agent's id, or None."""

    reporter_id: str


@attrs.frozen
class GetPublished:
    """Answered with the ``Published[AgentDirectory]`` the directory keeps current
    (the same object across restarts of the actor)."""


@attrs.frozen
class GetDeployment:
    deployment_hash: str


MAX_RETIRED_PER_DEPLOYMENT = 1000
"""Retired (decommissioned, replaced) agents a deployment keeps, the newest
enrolled: each is kept in memory for the history retention (30 days), and
every change of the directory copies them all for its readers; an operator
enrolling again in a loop made 2,960 in 71 s (1,000,000: 423 MiB, and 271 ms
of the event loop at each enrolment, anyone's)."""
PRUNE_INTERVAL = 3600.0
"""Seconds between two looks for retired agents to forget (``PruneRetired``)."""
PRUNE_BATCH = 5000
"""Agents forgotten per transaction: commits wait for the writer meanwhile."""


@attrs.frozen
class PruneRetired:
    """Forget agents retired longer ago than the history retention, and those
    beyond the ``MAX_RETIRED_PER_DEPLOYMENT`` newest of a deployment; answered
    with how many this batch forgot (another batch follows while there are more)."""


@attrs.frozen
class AgentsRetired:
    """Told to a deployment's queue actor (if it runs) once an agent of the
    deployment was decommissioned or replaced, after that was published: its
    waiting polls end now rather than at their timeout or the next hand-out."""


@attrs.frozen
class ReloadRecords:
    """Read these deployments and agents again from the store (another replica
    changed them, or a request names one not known here yet). Answered with
    None once the new values are published."""

    deployment_hashes: tuple[str, ...] = ()
    agent_ids: tuple[str, ...] = ()


@attrs.frozen
class ReloadAll:
    """Read every deployment and agent again (the change feed may have missed
    changes). Answered with None once published."""


class DirectoryActor(RefusingActor):
    def __init__(self, settings: Settings, *, store_path: str, reader: StoreReader,
                 notifier_path: str | None = None, clock: Callable[[], float] = time.time,
                 published: Published[AgentDirectory] | None = None, queues_path: str | None = None,
                 shared: bool = False) -> None:
        self.settings = settings
        self.shared = shared
        """Other replicas write the same store: what they spent (an enrollment token) is read before it is checked."""
        self.store_path = store_path
        self.notifier_path = notifier_path
        self.queues_path = queues_path
        self.reader = reader
        self.clock = clock
        self.directory = AgentDirectory()
        self.published = published if published is not None else Published(AgentDirectory())

    async def on_start(self) -> None:
        self.store: ActorRef = self.context.system.lookup(self.store_path)
        self.notifier: ActorRef | None = (self.context.system.lookup(self.notifier_path)
                                          if self.notifier_path is not None else None)
        for deployment in await self.reader.deployments():
            self.directory.put_deployment(deployment)
        for agent in await self.reader.agents():
            self.directory.put_agent(agent)
        self.published.publish(self.directory.snapshot())
        self.prunes = self.context.sweep(PRUNE_INTERVAL, PruneRetired(), first=0.0)

    async def serve(self, message: Any, now: float) -> Any:
        answer = await self._serve(message, now)
        if isinstance(message, _CHANGES) or (isinstance(message, PruneRetired) and answer) or isinstance(
                message, ReloadRecords | ReloadAll):
            self.published.publish(self.directory.snapshot())  # before the answer: read-your-writes
        if isinstance(message, Decommission):
            self._tell_queue(answer.deployment_hash)
            self._prune_beyond(answer.deployment_hash)
        elif isinstance(message, RegisterAgent):
            self._tell_queue(answer[0].deployment_hash)  # it replaced the deployment's earlier agents
            self._prune_beyond(answer[0].deployment_hash)
        return answer

    def _prune_beyond(self, deployment_hash: str) -> None:
        """A ``PruneRetired`` now if the deployment keeps more retired agents than
        ``MAX_RETIRED_PER_DEPLOYMENT`` (the timer's would come an interval later)."""
        if self.directory.retired_count(deployment_hash) > MAX_RETIRED_PER_DEPLOYMENT:
            self.prunes.again()  # no room: the timer comes back to it

    def _tell_queue(self, deployment_hash: str) -> None:
        """``AgentsRetired`` to the deployment's queue actor, if it runs (a
        stopped one has no waiting polls). If the tell is lost, the queue still
        finds out at its next hand-out, from the published snapshot."""
        if self.queues_path is None:
            return
        try:
            queue = self.context.system.lookup(self.queues_path).child(deployment_hash)
        except ActorNotFound:
            return
        if queue is not None:
            queue.offer(AgentsRetired())

    async def _serve(self, message: Any, now: float) -> Any:
        d = self.directory
        if isinstance(message, GetPublished):
            return self.published
        if isinstance(message, GetDeployment):
            return d.deployments.get(message.deployment_hash)
        if isinstance(message, CreateDeployment):
            limit = self.settings.tenants.max_deployments
            if len(d.deployments_of(message.tenant)) >= limit:
                raise QuotaExceeded("deployments per tenant", limit, "tenants.max_deployments")
            token = new_token()
            deployment = Deployment(hash=secrets.token_hex(16), tenant=message.tenant, user_id=message.user_id,
                                    created_at=now, enrollment_hash=hash_token(token), metadata=message.metadata)
            audit = attrs.evolve(message.audit, resource_id=deployment.hash)
            try:
                await commit(self.store, [SaveDeployment(deployment, max_of_tenant=limit), audit])
            except OverQuota:  # counted with other replicas' deployments
                raise QuotaExceeded("deployments per tenant", limit, "tenants.max_deployments") from None
            d.put_deployment(deployment)
            return deployment, token
        if isinstance(message, NewEnrollmentToken):
            deployment = d.deployments.get(message.deployment_hash)
            assert deployment is not None, "the HTTP edge resolves the deployment first"
            token = new_token()
            deployment = attrs.evolve(deployment, enrollment_hash=hash_token(token))
            await commit(self.store, [SaveDeployment(deployment), message.audit])
            d.put_deployment(deployment)
            return token
        if isinstance(message, RegisterAgent):
            registration = message.registration
            if self.shared:
                # Another replica may have spent the token (or issued a new one)
                # a moment ago; the store has it before its notification comes.
                stored = await self.reader.deployment(registration.deployment_hash)
                if stored is not None:
                    d.put_deployment(stored)
            token = new_token()
            enrollment = d.enrollment(registration.deployment_hash, message.enrollment_token,
                                      agent_id=str(uuid.uuid4()), token_hash=hash_token(token), now=now,
                                      capabilities=tuple(registration.capabilities),
                                      version=registration.agent_version, system_info=registration.system_info)
            if enrollment is None:
                raise EnrollmentRefused()
            deployment, agent = enrollment.deployment, enrollment.agent
            audit = attrs.evolve(message.audit, tenant=deployment.tenant, actor=f"agent:{agent.id}",
                                 resource_id=agent.id)
            try:
                await commit(self.store, [SaveDeployment(enrollment.spent, spends=deployment.enrollment_hash),
                                          *(SaveAgent(a) for a in enrollment.retired), SaveAgent(agent), audit])
            except Conflict:
                # Another replica spent the token (or issued a new one) first.
                stored = await self.reader.deployment(deployment.hash)
                if stored is not None:
                    d.put_deployment(stored)
                raise EnrollmentRefused() from None
            d.enrolled(enrollment)
            self._agent_status(agent, deployment)
            return agent, token
        if isinstance(message, AttachReporter):
            try:
                d.attach_reporter(message.reporter_id, message.agent_id, lapsed=message.lapsed)
            except ValueError:
                raise ReporterTaken(message.reporter_id) from None
            return None
        if isinstance(message, ReleaseReporter):
            return d.release_reporter(message.reporter_id)
        if isinstance(message, Decommission):
            agent = d.agents.get(message.agent_id)
            if agent is None:
                raise UnknownAgent(message.agent_id)
            if agent.status is AgentStatus.DECOMMISSIONED:
                return agent
            agent = agent.retire(now)
            await commit(self.store, [SaveAgent(agent), message.audit])
            d.put_agent(agent)
            self._agent_status(agent, d.deployments[agent.deployment_hash])
            return agent
        if isinstance(message, PruneRetired):
            return await self._prune_retired(now)
        if isinstance(message, ReloadRecords):
            await self._reload(message)
            return None
        if isinstance(message, ReloadAll):
            await self._reload_all()
            return None
        return await super().serve(message, now)

    async def _reload(self, message: ReloadRecords) -> None:
        d = self.directory
        # A query for all the deployments, one for all the agents, one for
        # the agents' deployments this replica has not heard of yet.
        for deployment in (await self.reader.deployments_named(message.deployment_hashes)).values():
            d.put_deployment(deployment)
        found = await self.reader.agents_named(message.agent_ids)
        unknown = {a.deployment_hash for a in found.values()} - set(d.deployments)
        for deployment in (await self.reader.deployments_named(tuple(unknown))).values():
            d.put_deployment(deployment)
        changed: list[tuple[AgentRecord | None, AgentRecord]] = []
        for agent_id in dict.fromkeys(message.agent_ids):
            before = d.agents.get(agent_id)
            agent = found.get(agent_id)
            if agent is None:
                d.forget_agent(agent_id)  # pruned past the retention
                continue
            if agent.deployment_hash not in d.deployments:
                continue
            d.put_agent(agent)
            if before is None or before.status is not agent.status:
                changed.append((before, agent))
        retired_in: set[str] = set()
        for before, agent in changed:
            deployment = d.deployments[agent.deployment_hash]
            if agent.status is AgentStatus.ACTIVE:
                self._agent_status(agent, deployment)  # enrolled on another replica
                continue
            retired_in.add(agent.deployment_hash)
            # An enrolment on another replica retires the deployment's earlier
            # agents at the new agent's creation time: that replica announced
            # only the new agent, and so does this one.
            replaced = any(a.created_at == agent.decommissioned_at for a in d.active_agents(agent.deployment_hash))
            if before is not None and not replaced:
                self._agent_status(agent, deployment)
        self.published.publish(self.directory.snapshot())  # before the queues look
        for deployment_hash in retired_in:
            self._tell_queue(deployment_hash)

    async def _reload_all(self) -> None:
        d = self.directory
        for deployment in await self.reader.deployments():
            d.put_deployment(deployment)
        agents = await self.reader.agents()
        for agent in agents:
            d.put_agent(agent)
        for agent_id in set(d.agents) - {a.id for a in agents}:
            d.forget_agent(agent_id)
        self.published.publish(self.directory.snapshot())
        for deployment_hash in {a.deployment_hash for a in agents if a.status is AgentStatus.DECOMMISSIONED}:
            self._tell_queue(deployment_hash)

    async def _prune_retired(self, now: float) -> int:
        retention = self.settings.storage.history_retention
        aged = self.directory.retired_before(now - retention, PRUNE_BATCH)
        aged_ids = {a.id for a in aged}
        beyond = [a for a in self.directory.retired_beyond(MAX_RETIRED_PER_DEPLOYMENT, PRUNE_BATCH)
                  if a.id not in aged_ids][:PRUNE_BATCH - len(aged)]
        old = aged + beyond
        if old:
            await commit(self.store, [ForgetAgents(tuple(a.id for a in old))])
            for agent in old:
                self.directory.forget_agent(agent.id)
            log.info("forgot %d agents retired more than %s ago and %d beyond the %d newest a deployment keeps",
                     len(aged), format_duration(retention), len(beyond), MAX_RETIRED_PER_DEPLOYMENT,
                     extra={"event": "prune", "agents": len(old)})
        if len(old) == PRUNE_BATCH:
            self.prunes.again()  # the rest after what waits in the mailbox (no room: the timer comes back to it)
        return len(old)

    def _agent_status(self, agent: AgentRecord, deployment: Deployment) -> None:
        """Tell the deployment's users that ``agent`` was enrolled (``online``:
        its enrolment was a request of it, at its creation) or retired
        (``offline`` when it was decommissioned or replaced). Made of the stored
        record only, so every replica tells the same (``_reload``)."""
        active = agent.status is AgentStatus.ACTIVE
        at = agent.created_at if active else agent.decommissioned_at or agent.created_at
        publish(self.notifier, deployment.tenant, deployment.user_id,
                agent_status_event(agent, deployment, online=active, last_seen=at))


_CHANGES = (CreateDeployment, NewEnrollmentToken, RegisterAgent, Decommission, AttachReporter, ReleaseReporter)
"""The messages that change the directory (when they are not refused)."""


def new_token() -> str:
    """A fresh secret token, 256 random bits.

    Prefixed so that it never begins with ``-``: a bare ``token_urlsafe`` does
    one time in 64, and pasted after ``--enrollment-token`` it is then read as
    an option. The prefix also lets secret scanners recognise a leaked token.
    """
    return "tsk_" + secrets.token_urlsafe(32)
