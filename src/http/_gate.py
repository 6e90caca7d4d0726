"""The one chokepoint for the command service: rate limits, who is asking, and
which tenant a request may see. Every command-service route goes through here,
and with ``auth.protect_reads`` the observability reads too; every refusal is
audited.

Order of checks: the client address's rate limit (before any work on
credentials), then credentials, then the user's or agent's own rate limit.

Its parts live beside it: ``_rate_checks`` (budgets), ``_tokens`` (what a
client offers), ``_client_address``, ``_audit_entries`` (and ``refuse``),
``_directory``, ``_signature_refusals``, ``_agent_presence`` and
``_probe_vouching``. Here: the user's and the agent's checks, and what a
reader may see.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from typing import Any

from quart import g, has_request_context

from trioscope.actors.agent import ReportScope
from trioscope.domain.deployments import AgentAuthFailure, AgentDirectory, AgentRecord, Deployment
from trioscope.domain.topology import node_scope, visible_to
from trioscope.domain.principals import InvalidToken, Permission, Principal, identity_problem, read_user_token
from trioscope.runtime import ActorFailed, ActorStopped, AskTimeout, MailboxFull

from ._agent_presence import heard
from ._audit_entries import refuse
from ._client_address import current_connection, client_address
from ._directory import heard_of_late, directory
from ._errors import ApiError, field_error
from ._rate_checks import charge_shared, charge_agent_bytes, check_address_rate
from ._services import services
from ._signature_refusals import Refusal, signature_failure
from ._tokens import bearer, socket_token

MAX_CACHED_TOKENS = 10_000


async def user(permission: Permission, *, token: str | None = None) -> Principal:
    """The authenticated user, allowed ``permission``; 401/403 (audited) otherwise."""
    s = services()
    token = token if token is not None else bearer()
    if token is None:
        where = "" if has_request_context() else " (a WebSocket may send it as ?token=<user token> instead)"
        raise refuse(401, "missing_token", f"send Authorization: Bearer <user token>{where}",
                     action="auth.failure", tenant=None, actor="anonymous")
    now = time.time()
    principal = s.gate.tokens.get(token)
    if principal is None or now >= principal.expires_at:
        try:
            principal = read_user_token(s.secret, token, now=now)
        except InvalidToken as exc:
            s.gate.tokens.pop(token, None)
            # The reason, not one answer for all: a client whose token names a
            # role we do not know, or lacks exp, cannot mend it otherwise.
            raise refuse(401, "invalid_token", f"the user token is invalid or expired: {exc.reason}",
                         action="auth.failure", tenant=None, actor="anonymous", reason=str(exc)) from None
        if len(s.gate.tokens) >= MAX_CACHED_TOKENS:
            s.gate.tokens.clear()  # crude but bounded: the next requests verify again
        s.gate.tokens[token] = principal
    # Per (tenant, user): alice of one tenant is not alice of another.
    await charge_shared(s.gate.per_user, f"{principal.tenant}\x00{principal.user_id}", "user",
                         "too many requests for this user")
    if not principal.may(permission):
        raise refuse(403, "forbidden", f"role {principal.role.value} may not do this",
                     action="auth.denied", tenant=principal.tenant, actor=f"user:{principal.user_id}",
                     needed=permission.value.value)
    return principal


async def protected_read() -> None:
    """The address's budget, then with ``auth.protect_reads`` a valid user
    token (any role) or 401. A WebSocket may offer it as a subprotocol
    (``offered_token``), as ?token= or, from a client that can, in the
    Authorization header. The reader is kept for ``visible_reporters`` and
    ``readable_tenant``."""
    # Open reads are charged too: they are what a flood of one address costs
    # the others most (a /metrics scrape or a topology view).
    await check_address_rate()
    if not services().settings.auth.protect_reads:
        return
    g.reader = await user(Permission.READ, token=None if has_request_context() else socket_token())


def readable_tenant() -> str | None:
    """After ``protected_read``, for a read over every tenant (``/metrics``):
    the one tenant whose data the reader may see, or None for all of them
    (reads open, as in the seed; or a server admin, who may read the whole
    server's figures as on ``/health/detailed`` and ``/api/v1/runtime``)."""
    reader: Principal | None = g.get("reader")
    if reader is None or administers_server(reader):
        return None
    return reader.tenant


def administers_server(principal: Principal) -> bool:
    """Whether ``principal`` is an ADMIN of ``auth.admin_tenant`` (any tenant's, where that is empty)."""
    if not principal.may(Permission.ADMINISTER):
        return False
    admin_tenant = services().settings.auth.admin_tenant
    if admin_tenant:
        return principal.tenant == admin_tenant
    services().note_server_admin(principal.tenant)
    return True


async def server_admin() -> Principal:
    """The authenticated user, an ADMIN of ``auth.admin_tenant`` (any tenant's
    where that is empty); 401/403 (audited) otherwise. Another tenant's ADMIN
    read the actor tree, named by every tenant's probe ids."""
    principal = await user(Permission.ADMINISTER)
    if not administers_server(principal):
        raise refuse(403, "forbidden", "only the server's admin tenant's ADMINs may read the whole server's figures "
                     "(auth.admin_tenant)", action="auth.denied", tenant=principal.tenant,
                     actor=f"user:{principal.user_id}", needed="server_admin")
    return principal


async def visible_reporters() -> Callable[[str], bool] | None:
    """Which probes' reports the reader may see (by probe agent id), after
    ``protected_read``: None when reads are open (everything); with
    ``auth.protect_reads``, those enrolled in the reader's tenant's deployments
    (and those of no deployment with ``auth.show_unassigned_agents``)."""
    reader: Principal | None = g.get("reader")
    if reader is None:
        return None
    found = await directory()
    show_unassigned = services().settings.auth.show_unassigned_agents
    return functools.cache(lambda reporter: found.reporter_visible(reporter, reader.tenant,
                                                                   show_unassigned=show_unassigned))


async def visible_nodes() -> Callable[[str, str | None], bool] | None:
    """Which nodes the reader may see, by id and agent, after ``protected_read``
    (``visible_to``: a scoped node by its tenant's readers alone, another by
    ``visible_reporters``); None when reads are open (everything)."""
    reporters = await visible_reporters()
    reader: Principal | None = g.get("reader")
    if reporters is None or reader is None:
        return None
    return visible_to(node_scope(reader.tenant), reporters)


async def keeps_readers(agent_id: str) -> bool:
    """Whether what the probe's actor keeps of its reports (``ReportScope``)
    may be shown to the reader, after ``protected_read``: an enrolled probe's
    to its tenant's readers alone, as its nodes are (``visible_to``), so that
    an agent id freed or taken over gives nobody what the probe before
    reported; an unsigned probe's to anyone who may see the reporter. False
    too when the actor is gone or does not answer."""
    ref = services().agents.actor(agent_id)
    if ref is None:
        return False
    try:
        kept = await ref.ask(ReportScope(), timeout=2.0)
    except (ActorStopped, ActorFailed, AskTimeout, MailboxFull):
        return False
    reader: Principal | None = g.get("reader")
    return kept is None or (reader is not None and kept == node_scope(reader.tenant))


async def live_reporter_check() -> Callable[[str], bool] | None:
    """``visible_reporters`` for a reader that stays (a WebSocket): each answer
    comes from the directory as published at the time, so probes enrolled
    later are seen too (answers cached per published version)."""
    reader: Principal | None = g.get("reader")
    if reader is None:
        return None
    await directory()
    published = services().gate.directory
    assert published is not None
    show_unassigned = services().settings.auth.show_unassigned_agents
    cache: dict[str, bool] = {}
    seen_version = published.version

    def visible(reporter: str) -> bool:
        nonlocal seen_version
        if published.version != seen_version:
            cache.clear()
            seen_version = published.version
        answer = cache.get(reporter)
        if answer is None:
            if len(cache) >= MAX_CACHED_TOKENS:
                cache.clear()
            answer = cache[reporter] = published.value.reporter_visible(reporter, reader.tenant,
                                                                        show_unassigned=show_unassigned)
        return answer

    return visible


def _not_found(deployment_hash: str) -> ApiError:
    return ApiError(404, "deployment_not_found", f"no deployment {deployment_hash!r}",
                    details={"deployment_hash": deployment_hash})


def own_user(principal: Principal, user_id: str) -> None:
    """A user path names the caller (admins may name any user of their tenant),
    and a user id a token can hold (``identity_problem``: 400 otherwise)."""
    if (problem := identity_problem(user_id)) is not None:
        shown = user_id[:64] + ("..." if len(user_id) > 64 else "")
        raise field_error("invalid_user_id", "user_id", f"{shown!r} {problem}")
    if user_id != principal.user_id and not principal.may(Permission.ADMINISTER):
        raise ApiError(404, "user_not_found", f"no user {user_id!r} visible to you", details={"user_id": user_id})


async def deployment_of(principal: Principal, user_id: str, deployment_hash: str) -> Deployment:
    """The deployment, if it is the principal's tenant's and ``user_id``'s: 404
    otherwise, the same as when it does not exist (no existence oracle)."""
    own_user(principal, user_id)
    known = await directory()
    deployment = known.deployments.get(deployment_hash)
    if deployment is None and await heard_of_late(known, deployment_hashes=(deployment_hash,)):
        deployment = (await directory()).deployments.get(deployment_hash)
    if deployment is None or deployment.tenant != principal.tenant or deployment.user_id != user_id:
        raise _not_found(deployment_hash)
    return deployment


async def agent(deployment_hash: str | None, body: bytes, *, token: str | None = None,
                headers: Any = None, target: tuple[str, str] | None = None, charged: bool = False) -> AgentRecord:
    """The agent making this request, after its token, deployment, signature,
    clock and request id are checked, and the request and its body's bytes
    counted against the agent's budgets (not if ``charged``: a socket's
    message is counted as it arrives). Refusals are audited."""
    s = services()
    headers = headers if headers is not None else current_connection().headers
    token = token if token is not None else bearer()
    claimed = headers.get("X-Agent-Id")
    known = await directory()
    answer = known.authenticate(token, deployment_hash=deployment_hash, agent_id=claimed)
    if answer is AgentAuthFailure.BAD_TOKEN and claimed and await heard_of_late(known, agent_ids=(claimed,)):
        known = await directory()
        answer = known.authenticate(token, deployment_hash=deployment_hash, agent_id=claimed)
    if isinstance(answer, AgentAuthFailure):
        raise _agent_refusal(Refusal.of(answer), known, known.holder_of(token), deployment_hash, claimed)
    found: AgentRecord = answer
    if s.settings.agents.require_signature:
        refusal = await signature_failure(found, token or "", body, headers, target)
        if refusal is not None:
            raise _agent_refusal(refusal, known, found, deployment_hash, claimed)
    if not charged:
        await charge_shared(s.gate.per_agent, found.id, "agent", "too many requests from this agent")
        charge_agent_bytes(found.id, len(body))
    heard(found, known)
    s.gate.sightings.address(found.id, client_address(), known)
    return found


def _agent_refusal(refusal: Refusal, known: AgentDirectory, holder: AgentRecord | None,
                   deployment_hash: str | None, claimed: str | None) -> ApiError:
    """An audited refusal of an agent request. It names the agent, in its
    tenant's log, only when the token proved who sent it (``holder``); a
    request with no valid token is anonymous and in no tenant's log, whatever
    agent id or deployment it names (those go in the details, as claims)."""
    deployment = known.deployments.get(holder.deployment_hash) if holder is not None else None
    return refuse(refusal.status, refusal.code, refusal.message, action="auth.failure",
                  tenant=deployment.tenant if deployment is not None else None,
                  actor=f"agent:{holder.id}" if holder is not None else "anonymous",
                  deployment_hash=deployment_hash, claimed_agent_id=claimed[:64] if claimed else None)
