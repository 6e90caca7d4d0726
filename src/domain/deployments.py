"""Deployments, the agents enrolled in them, and agent credentials.

Tokens are random (drawn by the directory actor, where randomness belongs:
this module is pure) and kept only as SHA-256 hashes; comparisons are
constant-time.
"""

from __future__ import annotations

import base64
import binascii
import bisect
import enum
import hashlib
import hmac
from typing import Any

import attrs

from trioscope.wire import rfc3339_seconds


def hash_token(token: str) -> str:
    """What is stored of a token."""
    return hashlib.sha256(token.encode()).hexdigest()


def token_matches(token: str, stored_hash: str | None) -> bool:
    if stored_hash is None:
        return False
    return hmac.compare_digest(hash_token(token), stored_hash)


def sign(token: str, body: bytes) -> str:
    """``X-Agent-Signature``: base64 (standard, padded) HMAC-SHA256 of the raw body keyed by the agent token."""
    return base64.b64encode(hmac.new(token.encode(), body, hashlib.sha256).digest()).decode()


def signature_valid(token: str, body: bytes, signature: str) -> bool:
    """Whether ``signature`` is ``sign(token, body)``; hex is accepted too, as the
    status agent's own verifier does."""
    expected = hmac.new(token.encode(), body, hashlib.sha256).digest()
    try:
        given = base64.b64decode(signature, validate=True) if len(signature) == 44 else bytes.fromhex(signature)
    except (binascii.Error, ValueError):
        return False
    return hmac.compare_digest(expected, given)


class DeploymentStatus(enum.Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"


@attrs.frozen(kw_only=True)
class Deployment:
    hash: str
    tenant: str
    user_id: str
    created_at: float
    enrollment_hash: str | None
    """Hash of the one-time enrollment token; None once used."""
    status: DeploymentStatus = DeploymentStatus.ACTIVE
    metadata: dict[str, Any] = attrs.field(factory=dict)


class AgentStatus(enum.Enum):
    ACTIVE = "active"
    DECOMMISSIONED = "decommissioned"


@attrs.frozen(kw_only=True)
class AgentRecord:
    id: str
    deployment_hash: str
    token_hash: str
    status: AgentStatus
    created_at: float
    capabilities: tuple[str, ...] = ()
    version: str | None = None
    system_info: dict[str, Any] = attrs.field(factory=dict)
    """Up to 64 KiB of what the agent said of its host; an active agent's only."""
    decommissioned_at: float | None = None

    def retire(self, at: float) -> AgentRecord:
        """This agent decommissioned (or replaced by a new enrolment) at ``at``: its
        token answers 410 from now on, and the record shrinks to what that and
        the list of retired agents need (its system info goes)."""
        return attrs.evolve(self, status=AgentStatus.DECOMMISSIONED, decommissioned_at=at, system_info={})


@attrs.frozen(kw_only=True)
class Enrollment:
    """What one enrollment changes (``AgentDirectory.enrollment``)."""

    deployment: Deployment
    """As it was: its ``enrollment_hash`` is what the store's write spends."""
    spent: Deployment
    """The deployment with its enrollment token spent."""
    agent: AgentRecord
    retired: tuple[AgentRecord, ...]
    """The deployment's agents until now, retired."""


def agent_status_event(agent: AgentRecord, deployment: Deployment, *, online: bool, last_seen: float | None,
                       metrics: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``agent_status`` event of ``/ws/user`` (the command service seed's
    ``{status, last_seen, metrics}``): ``status`` ``online`` or ``offline``,
    ``last_seen`` when it was last heard from (RFC 3339, as ``system_alert``'s
    times), ``metrics`` what is known of it (``{}``: nothing). Whether the
    agent is enrolled or was retired (decommissioned, or replaced by a new
    enrolment) is ``enrollment_status``, as in the agent's record."""
    return {"type": "agent_status", "agent_id": agent.id, "deployment_hash": deployment.hash,
            "status": "online" if online else "offline", "enrollment_status": agent.status.value,
            "last_seen": rfc3339_seconds(last_seen), "metrics": dict(metrics or {})}


class AgentAuthFailure(enum.Enum):
    """Why an agent request was refused; each has its own status and error code."""

    MISSING_TOKEN = (401, "missing_token", "send Authorization: Bearer <agent token>")
    BAD_TOKEN = (401, "invalid_token", "the agent token is not valid")
    WRONG_AGENT = (401, "invalid_token", "X-Agent-Id does not match the agent token")
    WRONG_DEPLOYMENT = (403, "wrong_deployment", "the agent token belongs to another deployment")
    DECOMMISSIONED = (410, "agent_decommissioned", "this agent was decommissioned; enroll it again")
    MISSING_SIGNATURE = (401, "missing_signature", "send X-Agent-Id, X-Timestamp, X-Request-Id and X-Agent-Signature")
    BAD_SIGNATURE = (401, "invalid_signature", "X-Agent-Signature is not the HMAC-SHA256 of the body keyed by the agent token")
    CLOCK_SKEW = (401, "clock_skew", "X-Timestamp is more than 300 s away from the server's clock")
    REPLAYED = (401, "replayed_request", "this X-Request-Id was already used")
    SIGNED_BEFORE_START = (401, "signed_before_start", "X-Timestamp is older than this server's start, so its "
                           "request id cannot be checked against the requests served before; sign a new request")
    BAD_REQUEST_ID = (400, "invalid_request_id", "X-Request-Id must be a UUID")
    BAD_TIMESTAMP = (400, "invalid_timestamp", "X-Timestamp must be unix seconds, a whole number in ASCII digits")
    BAD_REQUEST_SIGNATURE = (401, "invalid_signature", "the request's Signature does not verify: it must be "
                             "RFC 9421 HMAC-SHA256 keyed by the agent token over @method, @path, @query, "
                             "x-agent-id and content-digest, with created, nonce (a UUID) and keyid (the agent id)")
    BODY_ONLY_SIGNATURE = (401, "signature_scheme_refused", "this server accepts only signatures over the whole "
                           "request (RFC 9421 Signature-Input and Signature), not X-Agent-Signature of the body alone")

    @property
    def status(self) -> int:
        return self.value[0]

    @property
    def code(self) -> str:
        return self.value[1]

    @property
    def message(self) -> str:
        return self.value[2]

    @property
    def close_code(self) -> int:
        """The close code of an agent's socket refused for this: 4000 + the status
        a request would get (4410 once decommissioned)."""
        return 4000 + self.status


SPARE_ENTRIES = 1024
"""Entries of a table kept by agent id beyond twice the agents known (``AgentDirectory.outgrown``)."""


class AgentDirectory:
    """Every deployment and agent, indexed for authentication (token hash -> agent)
    and by deployment (active and retired agents apart, oldest first)."""

    def __init__(self) -> None:
        self.deployments: dict[str, Deployment] = {}
        self.agents: dict[str, AgentRecord] = {}
        self._by_token: dict[str, str] = {}
        self._reporters: dict[str, str] = {}
        """Probe agent id (``agent_id`` of reports) -> the enrolled agent that
        proved, by signing its reports, that it sends them."""
        self._reporter_of: dict[str, str] = {}
        """The reverse: each enrolled agent reports under one probe agent id."""
        self._active: dict[str, list[AgentRecord]] = {}
        self._retired: dict[str, list[AgentRecord]] = {}

    def outgrown(self, entries: int) -> bool:
        """Whether a table the edge keeps by agent id (when each was seen, its
        latency, its claim checked) has grown past twice the agents known and
        ``SPARE_ENTRIES``: it then holds agents forgotten since their
        retirement, to be dropped. Checked per entry added, so each table stays
        within a bound of the directory's size at no cost per request."""
        return entries > 2 * len(self.agents) + SPARE_ENTRIES

    def snapshot(self) -> AgentDirectory:
        """A copy to publish: the owner goes on changing this one, readers get that."""
        copy = AgentDirectory()
        copy.deployments = dict(self.deployments)
        copy.agents = dict(self.agents)
        copy._by_token = dict(self._by_token)
        copy._reporters = dict(self._reporters)
        copy._reporter_of = dict(self._reporter_of)
        copy._active = {h: list(agents) for h, agents in self._active.items()}
        copy._retired = {h: list(agents) for h, agents in self._retired.items()}
        return copy

    def reporting_agent(self, reporter_id: str) -> AgentRecord | None:
        """The active enrolled agent whose signed reports attached probe agent id
        ``reporter_id`` to its deployment; None if there is none (any more)."""
        enrolled = self._reporters.get(reporter_id)
        agent = self.agents.get(enrolled) if enrolled is not None else None
        return agent if agent is not None and agent.status is AgentStatus.ACTIVE else None

    def reporter_visible(self, reporter_id: str, tenant: str, *, show_unassigned: bool) -> bool:
        """Whether a user of ``tenant`` may see what probe agent id ``reporter_id``
        reports: a probe enrolled in one of the tenant's deployments, or one of
        no deployment if ``show_unassigned``."""
        agent = self.reporting_agent(reporter_id)
        if agent is None:
            return show_unassigned
        deployment = self.deployments.get(agent.deployment_hash)
        return deployment is not None and deployment.tenant == tenant

    def attach_reporter(self, reporter_id: str, agent_id: str, *, lapsed: bool = False) -> None:
        """Record that enrolled agent ``agent_id`` sends the reports of probe
        agent id ``reporter_id`` (replacing the one it sent before, and any
        retired agent's claim on ``reporter_id``, or with ``lapsed`` any
        agent's: nothing was reported under it for ``agents.stale_threshold``).

        Raises:
            ValueError: another active agent reports under ``reporter_id``, and its claim has not lapsed.
        """
        holder = self.reporting_agent(reporter_id)
        if holder is not None and holder.id != agent_id and not lapsed:
            raise ValueError(f"probe agent id {reporter_id!r} is already reported by another enrolled agent")
        previous = self._reporter_of.pop(agent_id, None)
        if previous is not None:
            self._reporters.pop(previous, None)
        stale = self._reporters.get(reporter_id)
        if stale is not None:
            self._reporter_of.pop(stale, None)
        self._reporters[reporter_id] = agent_id
        self._reporter_of[agent_id] = reporter_id

    def release_reporter(self, reporter_id: str) -> str | None:
        """Forget which agent reports under probe agent id ``reporter_id`` (its
        claim lapsed, and an unsigned probe reports under it now); answers
        that agent's id, or None if none did."""
        holder = self._reporters.pop(reporter_id, None)
        if holder is not None and self._reporter_of.get(holder) == reporter_id:
            del self._reporter_of[holder]
        return holder

    def put_deployment(self, deployment: Deployment) -> None:
        self.deployments[deployment.hash] = deployment

    def enrollment(self, deployment_hash: str, enrollment_token: str, *, agent_id: str, token_hash: str,
                   now: float, capabilities: tuple[str, ...] = (), version: str | None = None,
                   system_info: dict[str, Any] | None = None) -> Enrollment | None:
        """What enrolling an agent with ``enrollment_token`` in the deployment
        changes (``agent_id`` and its token's hash passed in): its one-time token
        spent, the new agent, and the agents it replaces retired (enrolling again
        replaces the deployment's agent: earlier tokens stop working). None if
        the deployment is unknown or the token is not its enrollment token.
        Nothing changes here until ``enrolled`` is called with it (once it is stored)."""
        deployment = self.deployments.get(deployment_hash)
        if deployment is None or not token_matches(enrollment_token, deployment.enrollment_hash):
            return None
        agent = AgentRecord(id=agent_id, deployment_hash=deployment.hash, token_hash=token_hash,
                            status=AgentStatus.ACTIVE, created_at=now, capabilities=capabilities, version=version,
                            system_info=dict(system_info or {}))
        return Enrollment(deployment=deployment, spent=attrs.evolve(deployment, enrollment_hash=None), agent=agent,
                          retired=tuple(a.retire(now) for a in self.active_agents(deployment.hash)))

    def enrolled(self, enrollment: Enrollment) -> None:
        """``enrollment`` stored: the directory holds what it changed."""
        self.put_deployment(enrollment.spent)
        for retired in enrollment.retired:
            self.put_agent(retired)
        self.put_agent(enrollment.agent)

    def put_agent(self, agent: AgentRecord) -> None:
        if agent.status is AgentStatus.DECOMMISSIONED and agent.system_info:
            agent = attrs.evolve(agent, system_info={})  # loaded as an earlier version stored it
        reporter = self._reporter_of.get(agent.id)  # a new value of the same agent keeps its claim
        self.forget_agent(agent.id)
        if reporter is not None and reporter not in self._reporters:
            self._reporters[reporter] = agent.id
            self._reporter_of[agent.id] = reporter
        self.agents[agent.id] = agent
        self._by_token[agent.token_hash] = agent.id
        index = self._active if agent.status is AgentStatus.ACTIVE else self._retired
        bisect.insort(index.setdefault(agent.deployment_hash, []), agent, key=_enrolment_order)

    def forget_agent(self, agent_id: str) -> None:
        """Drop the agent's record: its token is unknown from now on."""
        old = self.agents.pop(agent_id, None)
        if old is None:
            return
        self._by_token.pop(old.token_hash, None)
        reporter = self._reporter_of.pop(agent_id, None)
        if reporter is not None and self._reporters.get(reporter) == agent_id:
            del self._reporters[reporter]
        index = self._active if old.status is AgentStatus.ACTIVE else self._retired
        agents = index[old.deployment_hash]
        del agents[bisect.bisect_left(agents, _enrolment_order(old), key=_enrolment_order)]
        if not agents:
            del index[old.deployment_hash]

    def deployments_of(self, tenant: str) -> list[Deployment]:
        return [d for d in self.deployments.values() if d.tenant == tenant]

    def agents_of(self, deployment_hash: str) -> list[AgentRecord]:
        """The deployment's agents, oldest first (decommissioned ones included)."""
        return sorted((*self._active.get(deployment_hash, ()), *self._retired.get(deployment_hash, ())),
                      key=_enrolment_order)

    def active_agents(self, deployment_hash: str) -> list[AgentRecord]:
        """The deployment's active agents, oldest first."""
        return list(self._active.get(deployment_hash, ()))

    def retired_count(self, deployment_hash: str) -> int:
        return len(self._retired.get(deployment_hash, ()))

    def retired_agents(self, deployment_hash: str, *, limit: int, offset: int) -> list[AgentRecord]:
        """A page of the deployment's decommissioned and replaced agents, newest first."""
        retired = self._retired.get(deployment_hash, [])
        end = len(retired) - offset
        return list(reversed(retired[max(0, end - limit):max(0, end)]))

    def retired_before(self, cutoff: float, limit: int) -> list[AgentRecord]:
        """Up to ``limit`` agents retired before ``cutoff`` (unix seconds): past the retention."""
        old = (a for retired in self._retired.values() for a in retired
               if (a.decommissioned_at or a.created_at) < cutoff)
        return [a for a, _ in zip(old, range(limit), strict=False)]

    def retired_beyond(self, keep: int, limit: int) -> list[AgentRecord]:
        """Up to ``limit`` agents of deployments with more than ``keep`` retired
        ones: each such deployment's earliest enrolled beyond its ``keep`` newest."""
        beyond = (a for retired in self._retired.values() if len(retired) > keep for a in retired[:len(retired) - keep])
        return [a for a, _ in zip(beyond, range(limit), strict=False)]

    def holder_of(self, token: str | None) -> AgentRecord | None:
        """The agent a token was issued to (active or not), or None."""
        found = self._by_token.get(hash_token(token)) if token else None
        return self.agents.get(found) if found is not None else None

    def authenticate(self, token: str | None, *, deployment_hash: str | None,
                     agent_id: str | None) -> AgentRecord | AgentAuthFailure:
        """The agent a token belongs to, or why the request is refused.

        The lookup is by the token's hash, so no stored secret is compared byte
        by byte with attacker input."""
        if not token:
            return AgentAuthFailure.MISSING_TOKEN
        found = self._by_token.get(hash_token(token))
        agent = self.agents.get(found) if found is not None else None
        if agent is None:
            return AgentAuthFailure.BAD_TOKEN
        if agent_id is not None and agent_id != agent.id:
            return AgentAuthFailure.WRONG_AGENT
        if agent.status is AgentStatus.DECOMMISSIONED:
            return AgentAuthFailure.DECOMMISSIONED
        if deployment_hash is not None and deployment_hash != agent.deployment_hash:
            return AgentAuthFailure.WRONG_DEPLOYMENT
        return agent


def _enrolment_order(agent: AgentRecord) -> tuple[float, str]:
    return agent.created_at, agent.id
