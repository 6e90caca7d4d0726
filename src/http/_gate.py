"""The one chokepoint for the command service: rate limits, who is asking, and
which tenant a request may see. Every command-service route goes through here,
and with ``auth.protect_reads`` the observability reads too; every refusal is
audited.

Order of checks: the client address's rate limit (before any work on
credentials), then credentials, then the user's or agent's own rate limit.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import attrs
import trio
from quart import Quart, current_app, g, has_request_context, request, websocket

from trioscope.actors.agent import ReportScope
from trioscope.actors.alerts import AgentSeen, sighting_resolution
from trioscope.actors.directory import AttachReporter, GetPublished, ReleaseReporter, ReloadRecords
from trioscope.actors.refusals import ReporterTaken
from trioscope.actors.store import Record
from trioscope.actors.topology import ReporterSilent
from trioscope.config import Settings
from trioscope.domain.deployments import (
    AgentAuthFailure, AgentDirectory, AgentRecord, AgentStatus, Deployment, signature_valid,
)
from trioscope.domain.topology import node_scope, visible_to
from trioscope.domain.principals import InvalidToken, Permission, Principal, identity_problem, read_user_token
from trioscope.domain.rates import RateLimiter, retry_after
from trioscope.runtime import ActorFailed, ActorStopped, AskTimeout, MailboxFull
from trioscope.store import AuditEntry, RateBudget
from trioscope.wire import request_signing

from ._errors import ApiError, field_error
from ._forwarded import source_of
from ._services import services

log = logging.getLogger(__name__)
MAX_CLOCK_SKEW = 300.0
MAX_CACHED_TOKENS = 10_000


def _connection() -> Any:
    """The HTTP request or WebSocket being handled (both have headers, path, address)."""
    return request if has_request_context() else websocket


def client_address() -> str:
    """The client's address, for rate limits, the audit log and the access
    log: the connection's peer, or the client a trusted proxy forwarded for
    (``server.trusted_proxies``; ``_forwarded``)."""
    connection = _connection()
    peer: str = connection.remote_addr or "unknown"
    proxies = services().proxies
    if not proxies.networks:
        return peer
    return proxies.client(peer, connection.headers.getlist(proxies.header))


def client_source() -> str:
    """What the client counts as for per-address limits: its address, or
    for IPv6 its /64 (``_forwarded.source_of``)."""
    return source_of(client_address())


MAX_AUDIT_TEXT = 256


def audit_entry(action: str, *, actor: str, tenant: str | None, resource_type: str | None = None,
                resource_id: str | None = None, outcome: str = "ok", **details: Any) -> AuditEntry:
    """An audit record of the current request (who, what, when, from where).

    Strings that come from the request (paths, ids, details) are cut to
    ``MAX_AUDIT_TEXT``: refusals are recorded for anyone who asks, and a 7,000
    character hash in a URL made each such record 14 KB."""
    return AuditEntry(at=time.time(), tenant=tenant, actor=actor[:MAX_AUDIT_TEXT], action=action,
                      resource_type=resource_type,
                      resource_id=resource_id[:MAX_AUDIT_TEXT] if resource_id is not None else None,
                      outcome=outcome, address=client_address(),
                      user_agent=(_connection().headers.get("User-Agent") or "")[:MAX_AUDIT_TEXT] or None,
                      details={k: v[:MAX_AUDIT_TEXT] if isinstance(v, str) else v for k, v in details.items()})


def _audit_refusal(entry: AuditEntry) -> None:
    """Auth failures are recorded without waiting for the commit: the client gets
    its 4xx either way, and a flood of failures must not queue requests."""
    try:
        services().store.tell(Record((entry,)))
    except (MailboxFull, ActorStopped):
        log.warning("audit record dropped (store busy): %s %s from %s", entry.action, entry.outcome, entry.address)


async def directory() -> AgentDirectory:
    """Deployments and agent credentials as the directory actor last published
    them: read, not asked, on every request (the actor hands out its
    ``Published`` once)."""
    gate = services().gate
    if gate.directory is None:
        gate.directory = await services().directory.ask(GetPublished(), timeout=10.0)
    return gate.directory.value


async def check_address_rate() -> None:
    """The client address's request budget (``limits.per_address``), before
    any other work on the request: charged once per request or WebSocket
    upgrade, however many gates it passes (the app charges every request as
    it arrives, ``_app``; a route's own gates then find it paid)."""
    # A coroutine although it never waits: Quart runs a plain-function hook in
    # a worker thread, a thread hop on every request.
    if g.get("address_charged", False):
        return
    # Marked before the charge: a refused request is not charged again by the
    # next gate it would have passed (it is answered 429 at once anyway).
    g.address_charged = True
    s = services()
    _charge(s.gate.per_address, s.settings.limits.per_address, "address", "too many requests from this address")


async def check_report_rate() -> None:
    """The client address's budget of probe reports and heartbeats
    (``limits.reports_per_address``), checked before the body is read."""
    s = services()
    _charge(s.gate.reports_per_address, s.settings.limits.reports_per_address, "address_reports",
            "too many reports from this address (limits.reports_per_address; raise it if many probes share "
            "one address)")


async def check_registration_rate() -> None:
    """The client address's budget of registrations and enrollments."""
    s = services()
    _charge(s.gate.registrations_per_address, s.settings.limits.registrations_per_address,
            "address_registrations", "too many registrations from this address")


def _charge(limiter: RateLimiter, limit: int, scope: str, message: str) -> None:
    """Count one request against ``limiter``, keyed by the client address: 429
    with Retry-After beyond it, counted in /metrics."""
    _refuse_beyond(limiter.acquire(client_source(), time.monotonic()), scope, message, limit_per_minute=limit)


async def _charge_shared(budget: RateBudget, key: str, scope: str, message: str) -> None:
    """``_charge`` for a budget every replica shares (per agent, per user)."""
    _refuse_beyond(await budget.acquire(key), scope, message, limit_per_minute=budget.per_minute)


def _refuse_beyond(wait: float, scope: str, message: str, **limit: int) -> None:
    """429 with Retry-After (``wait`` seconds) and the ``limit`` named, counted in /metrics; nothing if ``wait`` is 0."""
    if wait:
        services().metrics.refused(f"rate_{scope}")
        raise ApiError(429, "rate_limited", f"{message}; slow down", details={**limit, "scope": scope},
                       headers={"Retry-After": retry_after(wait)})


READ_PAUSE = 1.0
"""Seconds a WebSocket goes unread after one of its messages was refused for a
rate (``read_pause``): what its client sends meanwhile waits in Hypercorn's
queue (a few messages) and then in TCP's buffers. Refused at once but read
on, two agents' ~1 MB messages were still received as fast as they came
(wsproto's work, ~100 MB/s) and every other client's requests waited 8x."""


def read_pause(ping_interval: float) -> float:
    """``READ_PAUSE``, but at most a quarter of ``ping_interval``: the pong to a
    ping sent during the pause is read in time."""
    return min(READ_PAUSE, ping_interval / 4)


def charge_socket_message(address: str) -> float:
    """Count a message a client (live view, user events) sent on its socket
    against its address's request budget (``limits.per_address``): the
    seconds to wait, 0 if it is within it (then counted), as ``_charge``
    would refuse it. A browser sends a few a minute (views, pongs)."""
    wait = services().gate.per_address.acquire(address, time.monotonic())
    if wait:
        services().metrics.refused("rate_address")
    return wait


BYTE_UNIT = 64 * 1024
"""What an agent's byte budget counts in (``agent_byte_budget``): each started one (an empty body costs nothing)."""


def agent_byte_budget(per_minute: int) -> RateLimiter:
    """The per-agent budget of bytes (``limits.agent_bytes``), in ``BYTE_UNIT``s, half of it at once."""
    units = max(1, per_minute // BYTE_UNIT)
    return RateLimiter(units, burst=max(1, units // 2))


def charge_agent_bytes(agent_id: str, size: int) -> None:
    """Count ``size`` bytes of an agent's request body or socket message
    against this process's byte budget for it, each started ``BYTE_UNIT``
    (an empty body nothing): 429 (scope ``agent_bytes``) beyond it. Parsing
    and checking JSON costs ~0.1 s a MB of the event loop (or of the GIL, in
    a worker thread): one agent sending 750 KB command results within its
    600 requests a minute held every other client's requests up by ~230 ms each."""
    units = -(-size // BYTE_UNIT)
    if units:
        s = services()
        _refuse_beyond(s.gate.agent_bytes.acquire(agent_id, time.monotonic(), units), "agent_bytes",
                       "too many bytes from this agent", limit_bytes_per_minute=s.settings.limits.agent_bytes)


def bearer() -> str | None:
    return _bearer_value(_connection().headers.get("Authorization", ""))


def _bearer_value(text: str) -> str | None:
    """The token of ``Bearer <token>`` (any case), None for anything else."""
    scheme, _, value = text.partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        return None
    return value.strip()


def refuse(status: int, code: str, message: str, *, action: str, tenant: str | None, actor: str,
            **details: Any) -> ApiError:
    """The refusal to raise, audited as ``Gate.refusals`` samples those that
    name nobody (by client source) and ``Gate.attributed_refusals`` those
    whose credentials proved who sent them (by tenant and actor): a flood is
    counted, not written row by row, and the next row of its source says how
    many were left out."""
    gate = services().gate
    if tenant is None and actor == "anonymous":
        left_out = gate.refusals.admit(client_source(), time.monotonic())
    else:
        left_out = gate.attributed_refusals.admit(f"{tenant}\x00{actor}", time.monotonic())
    if left_out is None:
        services().metrics.audit_unrecorded.inc()
        return ApiError(status, code, message)
    if left_out:
        details["unrecorded_before"] = left_out
    _audit_refusal(audit_entry(action, actor=actor, tenant=tenant, outcome=code, path=_connection().path, **details))
    return ApiError(status, code, message)


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
    await _charge_shared(s.gate.per_user, f"{principal.tenant}\x00{principal.user_id}", "user",
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


def socket_token() -> str | None:
    """A WebSocket client's user token: offered as a subprotocol, else ?token=
    (None: then ``user`` reads the Authorization header)."""
    return offered_token() or query_token()


def query_token() -> str | None:
    """A WebSocket's ``?token=``, a ``Bearer <t>`` in it taken as ``<t>``
    (the command service's seed says "Bearer token in query string"; the whole
    of it was read as the token: "Invalid header padding")."""
    token = websocket.args.get("token")
    return _bearer_value(token) or token if token is not None else None


TOKEN_SUBPROTOCOL = "trioscope"
"""Chosen when a WebSocket client offers it with ``bearer.<token>``: browsers
cannot set an Authorization header on a WebSocket, and a token in the URL ends
up in proxy logs."""
_BEARER = "bearer."


def offered_token() -> str | None:
    """The token a WebSocket offers as a ``bearer.<token>`` subprotocol beside ``trioscope``."""
    offered = websocket.requested_subprotocols
    if TOKEN_SUBPROTOCOL not in offered:
        return None
    return next((p.removeprefix(_BEARER) for p in offered if p.startswith(_BEARER)), None)


def chosen_subprotocol() -> str | None:
    """What to accept a WebSocket with: ``trioscope`` if offered (a browser
    that offers subprotocols fails the connection unless one is chosen)."""
    return TOKEN_SUBPROTOCOL if TOKEN_SUBPROTOCOL in websocket.requested_subprotocols else None


MAX_RECORD_ID = 64
"""Longest deployment hash or agent id worth looking up in the store (they are 32 and 36 characters)."""


async def _heard_of_late(known: AgentDirectory, *, deployment_hashes: tuple[str, ...] = (),
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
    if deployment is None and await _heard_of_late(known, deployment_hashes=(deployment_hash,)):
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
    headers = headers if headers is not None else _connection().headers
    token = token if token is not None else bearer()
    claimed = headers.get("X-Agent-Id")
    known = await directory()
    answer = known.authenticate(token, deployment_hash=deployment_hash, agent_id=claimed)
    if answer is AgentAuthFailure.BAD_TOKEN and claimed and await _heard_of_late(known, agent_ids=(claimed,)):
        known = await directory()
        answer = known.authenticate(token, deployment_hash=deployment_hash, agent_id=claimed)
    if isinstance(answer, AgentAuthFailure):
        raise _agent_refusal(Refusal.of(answer), known, known.holder_of(token), deployment_hash, claimed)
    found: AgentRecord = answer
    if s.settings.agents.require_signature:
        refusal = await _signature_failure(found, token or "", body, headers, target)
        if refusal is not None:
            raise _agent_refusal(refusal, known, found, deployment_hash, claimed)
    if not charged:
        await _charge_shared(s.gate.per_agent, found.id, "agent", "too many requests from this agent")
        charge_agent_bytes(found.id, len(body))
    _heard(found, known)
    note(presence().addresses, found.id, client_address(), known)
    return found


T = TypeVar("T")


async def note_delivery(agent_id: str, command_id: str) -> None:
    """``command_id`` was handed to ``agent_id`` (``AgentPresence.last_commands``)."""
    note(presence().last_commands, agent_id, command_id, await directory())


async def note_latency(agent_id: str, seconds: float) -> None:
    """A ping on ``agent_id``'s socket was answered after ``seconds`` (``AgentPresence.latencies``)."""
    note(presence().latencies, agent_id, round(seconds * 1000, 1), await directory())


def note(table: dict[str, T], agent_id: str, value: T, known: AgentDirectory | None) -> None:
    """Record ``value`` for ``agent_id`` in one of ``AgentPresence``'s tables;
    past twice the agents ``known`` (and some), those no longer known
    (forgotten after their retirement) are dropped, as ``Gate.seen`` drops theirs."""
    table[agent_id] = value
    if known is not None and len(table) > 2 * len(known.agents) + 1024:
        for gone in [a for a in table if a not in known.agents]:
            del table[gone]


async def charge_agent(agent_id: str) -> None:
    """Count a message on an authenticated agent socket against the agent's
    request budget, as ``agent`` counts a request: 429 beyond it. Its bytes
    are counted before it is read (``charge_agent_bytes``)."""
    await _charge_shared(services().gate.per_agent, agent_id, "agent", "too many requests from this agent")


async def heard_from(agent_id: str, *, as_request: bool = True) -> None:
    """An active agent proved it is there without a signed request (any
    message on the socket it authenticated): noted as a request of it would
    be (``as_request``: timed as one, too)."""
    await directory()
    _heard_again(agent_id, as_request=as_request)


def _heard_again(agent_id: str, *, as_request: bool = True) -> None:
    """``agent_id`` is heard from, if it is an active agent (by the directory
    as last read: the caller authenticated it before). ``as_request``: as a
    request of it, timed for the heartbeat histogram; else only noted as there."""
    published = services().gate.directory
    if published is None:
        return
    known = published.value
    agent = known.agents.get(agent_id)
    if agent is not None and agent.status is AgentStatus.ACTIVE:
        _heard(agent, known, as_request=as_request)


@attrs.define(eq=False)
class AgentPresence:
    """What the edge knows of agents beside ``Gate.seen``, one per app (its
    extensions, ``presence``)."""

    polls: dict[str, list[trio.CancelScope]] = attrs.Factory(dict)
    """Agent id -> the long-polls it holds now, oldest first (``holding_poll``): it is there while they are held."""
    requested: dict[str, float] = attrs.Factory(dict)
    """Agent id -> when it last made a request (unix seconds): the heartbeat
    histogram times requests, which a held poll noted as there is not."""
    refreshing: trio.CancelScope | None = None
    """``keep_holders_heard``'s, cancelled when the app stops serving."""
    addresses: dict[str, str] = attrs.Factory(dict)
    """Agent id -> the client address of its latest request that passed every
    check (``agent``): the ``ip_address`` of its ``connection_info``."""
    latencies: dict[str, float] = attrs.Factory(dict)
    """Agent id -> milliseconds from the server's latest ping on its socket to
    the agent's pong: the ``latency_ms`` of its ``connection_info``."""
    last_commands: dict[str, str] = attrs.Factory(dict)
    """Agent id -> the command last handed to it (a poll's answer, or sent on
    its socket): the ``last_command_id`` of its ``connection_info``."""


_PRESENCE = "trioscope.agent_presence"


def presence(app: Quart | None = None) -> AgentPresence:
    """The app's ``AgentPresence`` (the current app's if none is given)."""
    extensions = (app if app is not None else current_app).extensions
    found: AgentPresence | None = extensions.get(_PRESENCE)  # only this function puts it there
    if found is None:
        found = extensions[_PRESENCE] = AgentPresence()
    return found


MAX_POLLS_PER_AGENT = 32
"""Long-polls one agent holds at once on a serving process (~40 KB each); a
newer one ends its oldest (answered 204 at once), so an agent that reconnects
is never refused. Without it, one agent's request budget held ~1,260 (~47 MB)."""


@contextlib.contextmanager
def holding_poll(agent: AgentRecord) -> Iterator[None]:
    """``agent`` holds a long-poll for as long as this lasts: it is heard from
    while it waits (``keep_holders_heard``), and when the poll is answered
    (not when it ends otherwise: the client gone, the agent retired). Its start
    was heard from as the request it is. Beyond ``MAX_POLLS_PER_AGENT`` its
    oldest poll is cancelled: what waits in it ends there, as if nothing came."""
    polls = presence().polls
    held = polls.setdefault(agent.id, [])
    scope = trio.CancelScope()
    held.append(scope)
    if len(held) > MAX_POLLS_PER_AGENT:
        held.pop(0).cancel()
    try:
        with scope:
            yield
    finally:
        if scope in held:
            held.remove(scope)
        if not held and polls.get(agent.id) is held:
            del polls[agent.id]
    _heard_again(agent.id, as_request=False)


def hold_refresh_interval(settings: Settings) -> float:
    """How often agents holding a long-poll are heard from: within the alerts
    actor's ``sighting_resolution`` and a quarter of ``agents.heartbeat_timeout``,
    so neither AgentOffline nor the online gauge ever finds them silent; at
    most 15 s (a poll is held up to 120 s)."""
    interval = min(15.0, settings.agents.heartbeat_timeout / 4)
    if settings.alerts.agent_offline_after > 0:
        interval = min(interval, sighting_resolution(settings))
    return interval


HOLDERS_PER_STEP = 1000
"""Agents noted between two checkpoints of ``keep_holders_heard``: 20,000 held
polls are not one long step of the event loop."""


async def keep_holders_heard() -> None:
    """Until the app stops serving (``stop_keeping_holders_heard``): every
    ``hold_refresh_interval``, each agent holding a long-poll is heard from.
    One task for all held polls: a task (and a timer) of each would weigh on
    every one of 20,000 polls."""
    found = presence()
    interval = hold_refresh_interval(services().settings)
    with trio.CancelScope() as found.refreshing:
        while True:
            await trio.sleep(interval)
            for done, agent_id in enumerate(list(found.polls), 1):
                _heard_again(agent_id, as_request=False)
                if done % HOLDERS_PER_STEP == 0:
                    await trio.lowlevel.checkpoint()


def stop_keeping_holders_heard(app: Quart) -> None:
    """End ``app``'s ``keep_holders_heard`` (when it stops serving)."""
    scope = presence(app).refreshing
    if scope is not None:
        scope.cancel(reason="the app stopped serving")


def _heard(agent: AgentRecord, known: AgentDirectory, *, as_request: bool = True) -> None:
    """An enrolled agent was heard from: when (``Gate.seen``), its heartbeat in
    /metrics (``as_request``: the time since its previous request), and the
    alerts actor told, at most once per ``sighting_resolution`` (not per request)."""
    s = services()
    seen = s.gate.seen
    now = time.time()
    seen[agent.id] = now
    requested = presence().requested
    previous = requested.get(agent.id) if as_request else None
    if as_request:
        requested[agent.id] = now
    if len(seen) > 2 * len(known.agents) + 1024:  # agents forgotten after retirement: drop theirs
        for agent_id in [a for a in seen if a not in known.agents]:
            del seen[agent_id]
            s.gate.sighting_told.pop(agent_id, None)
            requested.pop(agent_id, None)
    deployment = known.deployments.get(agent.deployment_hash)
    if previous is not None and deployment is not None:
        s.metrics.observe_heartbeat(deployment.tenant, now - previous)
    if s.settings.alerts.agent_offline_after <= 0:
        return
    told = s.gate.sighting_told
    last = told.get(agent.id)
    if last is not None and now - last < sighting_resolution(s.settings):
        return
    try:
        s.alerts.tell(AgentSeen(agent.id, now))
        told[agent.id] = now
    except (MailboxFull, ActorStopped):
        pass  # told with the agent's next request


async def probe_credentials(raw_body: bytes) -> AgentRecord | None:
    """The enrolled agent signing a probe's report or registration, checked as
    on the agent API (token, signature, clock, request id: refusals audited);
    None for an unsigned request. Checked before the body is decoded."""
    headers = _connection().headers
    if bearer() is None and not request_signing.is_signed(headers) and "X-Agent-Signature" not in headers:
        return None
    return await agent(None, raw_body)


async def signer_scope(signer: AgentRecord | None) -> str | None:
    """The ``node_scope`` of the tenant whose deployment ``signer`` is
    enrolled in, which the ids of the nodes it reports carry (None: unsigned,
    or its deployment is gone)."""
    if signer is None:
        return None
    deployment = (await directory()).deployments.get(signer.deployment_hash)
    return node_scope(deployment.tenant) if deployment is not None else None


async def vouch(reporter_id: str, signer: AgentRecord | None, claimed_deployment: str | None = None, *,
                attach: bool = True) -> None:
    """Whether probe agent id ``reporter_id`` may report (or register) with this
    signer. Deployment membership is proven, never claimed: a signed request
    attaches ``reporter_id`` to the signer's deployment (its nodes then offer
    controls, delivered to that agent); an unsigned one belongs to no
    deployment, so it may neither claim one nor speak for a probe agent id that
    an enrolled agent reports under. ``attach`` False (a heartbeat) checks the
    same without attaching. Refusals are audited, with no tenant: the claims
    in them are unverified.

    Raises:
        ApiError: 401 ``unauthenticated_deployment`` or ``signature_required``,
            403 ``wrong_deployment``; ``ReporterTaken`` (409) if another enrolled
            agent reports under ``reporter_id``.
    """
    found = await directory()
    if signer is None:
        if claimed_deployment is not None:
            raise refuse(401, "unauthenticated_deployment",
                         "a registration that names a deployment must be signed with that deployment's agent "
                         "credentials (enroll the probe with --deployment-hash and --enrollment-token)",
                         action="auth.failure", tenant=None, actor="anonymous", reporter_id=reporter_id,
                         deployment_hash=claimed_deployment)
        holder = found.reporting_agent(reporter_id)
        if holder is not None:
            if not attach or not await _claim_lapsed(reporter_id):
                raise refuse(401, "signature_required",
                             f"agent {reporter_id!r} reports for an enrolled agent: its reports, registrations and "
                             "heartbeats must be signed with that agent's credentials", action="auth.failure",
                             tenant=None, actor="anonymous", reporter_id=reporter_id)
            await services().directory.ask(ReleaseReporter(reporter_id), timeout=10.0)
            _claim_taken(reporter_id, holder, None)
        return
    if claimed_deployment is not None and claimed_deployment != signer.deployment_hash:
        raise refuse(403, "wrong_deployment", "the agent credentials belong to another deployment",
                     action="auth.denied", tenant=None, actor=f"agent:{signer.id}", reporter_id=reporter_id,
                     deployment_hash=claimed_deployment)
    holder = found.reporting_agent(reporter_id)
    if holder is None or holder.id != signer.id:
        if not attach:  # a heartbeat: it keeps a probe alive, it does not make it the signer's
            if holder is not None:
                raise ReporterTaken(reporter_id)
            return
        lapsed = holder is not None and await _claim_lapsed(reporter_id)
        await services().directory.ask(AttachReporter(reporter_id, signer.id, lapsed=lapsed), timeout=10.0)
        if lapsed:
            assert holder is not None
            _claim_taken(reporter_id, holder, signer)


CLAIM_CHECK_EVERY = 10.0
"""Seconds the topology's word on a claim (``_claim_lapsed``) is taken for."""


async def _claim_lapsed(reporter_id: str) -> bool:
    """Whether the enrolled agent that reports under ``reporter_id`` stopped:
    nothing was reported under it for ``agents.stale_threshold`` (the
    topology's say, asked at most once per ``CLAIM_CHECK_EVERY``). One signed
    report of another tenant's agent under a host's id held it for good: that
    host's enrolled probe got 409 and its unsigned one 401 until the server
    restarted."""
    s = services()
    now = time.monotonic()
    checked = s.gate.claims_checked.get(reporter_id)
    if checked is not None and now - checked[0] < CLAIM_CHECK_EVERY:
        return checked[1]
    lapsed = bool(await s.topology.ask(ReporterSilent(reporter_id), timeout=10.0))
    checks = s.gate.claims_checked
    if len(checks) > 2 * len(s.gate.directory.value.agents if s.gate.directory else ()) + 1024:
        checks.clear()  # ids no longer claimed: one entry per claim at most, and claims are the agents'
    checks[reporter_id] = (now, lapsed)
    return lapsed


def _claim_taken(reporter_id: str, holder: AgentRecord, signer: AgentRecord | None) -> None:
    services().gate.claims_checked.pop(reporter_id, None)  # the new holder's claim is asked about anew
    log.warning("probe agent id %s: enrolled agent %s reported nothing under it for agents.stale_threshold; %s "
                "reports under it now", reporter_id[:80], holder.id,
                f"enrolled agent {signer.id}" if signer is not None else "an unsigned probe",
                extra={"event": "reporter_claim_lapsed", "agent_id": reporter_id[:80], "holder": holder.id,
                       "signer": signer.id if signer is not None else None})


@attrs.frozen
class Refusal:
    """An agent request refused: a domain failure's status and error code,
    with a message that names what this request lacked in the signature
    scheme it used (the domain's messages name the body-only scheme's headers)."""

    status: int
    code: str
    message: str

    @classmethod
    def of(cls, failure: AgentAuthFailure, message: str | None = None) -> Refusal:
        return cls(failure.status, failure.code, failure.message if message is None else message)


BODY_ONLY_HEADERS = ("X-Agent-Id", "X-Timestamp", "X-Request-Id", "X-Agent-Signature")
"""What the status agent's scheme sends (X-Agent-Signature: an HMAC of the body alone)."""
MAX_TIMESTAMP_DIGITS = 12
"""An X-Timestamp of more digits is far off any clock (clock_skew), and would overflow a float."""


def _listed(names: Sequence[str]) -> str:
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


_RFC_9421_SENDS = f"a request signed over the whole request (RFC 9421) sends {_listed(request_signing.SENT_HEADERS)}"
_BODY_ONLY_SENDS = ("a request signed with X-Agent-Signature (the body alone) sends X-Agent-Id, X-Timestamp (unix "
                    "seconds), X-Request-Id (a UUID) and X-Agent-Signature")
_RFC_9421_MESSAGES = {
    AgentAuthFailure.CLOCK_SKEW: f"the signature's created time (Signature-Input) is more than "
                                 f"{MAX_CLOCK_SKEW:g} s away from the server's clock",
    AgentAuthFailure.REPLAYED: "this signature's nonce (the request id, in Signature-Input) was already used; "
                               "sign each request with a new UUID",
}
"""The domain's messages of these failures name X-Timestamp and X-Request-Id,
which a request signed with RFC 9421 does not send."""


def _missing(names: Sequence[str], scheme_sends: str) -> Refusal:
    return Refusal.of(AgentAuthFailure.MISSING_SIGNATURE, f"missing {_listed(names)}: {scheme_sends}")


def _unsigned(body_only_accepted: bool) -> Refusal:
    """A request with no signature of either scheme: what signing it takes."""
    ways = _RFC_9421_SENDS + (f"; {_BODY_ONLY_SENDS}" if body_only_accepted else "")
    return Refusal.of(AgentAuthFailure.MISSING_SIGNATURE, f"the request is not signed: {ways}")


def _malformed_timestamp(timestamp: str) -> Refusal:
    """400 as for a malformed X-Request-Id: it says nothing of the clock."""
    shown = timestamp[:32] + ("..." if len(timestamp) > 32 else "")
    return Refusal.of(AgentAuthFailure.BAD_TIMESTAMP, f"{AgentAuthFailure.BAD_TIMESTAMP.message} "
                      f"(such as 1733300000), not {shown!r}")


async def _signature_failure(found: AgentRecord, token: str, body: bytes, headers: Any,
                             target: tuple[str, str] | None = None) -> Refusal | None:
    """Why the request's signature does not hold, or None. Two schemes: RFC 9421
    over the whole request (``request_signing``, the probe's), and the status
    agent's HMAC of the body alone (``agents.accept_body_only_signatures``).
    ``target``: the method and URL an RFC 9421 signature covers, when they are
    not the connection's (a signed message inside a WebSocket)."""
    messages: dict[AgentAuthFailure, str] = {}
    rfc_9421 = request_signing.is_signed(headers)
    if rfc_9421:
        missing = request_signing.missing_headers(headers)
        if missing:
            return _missing(missing, _RFC_9421_SENDS)
        method, url = target or _signed_target()
        try:
            signed = request_signing.verify(method, url, headers, body, agent_id=found.id, token=token)
        except request_signing.BadRequestSignature as exc:
            log.debug("request signature refused for agent %s: %s", found.id, exc)
            return Refusal.of(AgentAuthFailure.BAD_REQUEST_SIGNATURE)
        signed_at, request_id = signed.created, signed.nonce
        messages = _RFC_9421_MESSAGES
    else:
        accepted = services().settings.agents.accept_body_only_signatures
        if not any(headers.get(name) for name in BODY_ONLY_HEADERS[1:]):
            return _unsigned(accepted)
        if not accepted:
            return Refusal.of(AgentAuthFailure.BODY_ONLY_SIGNATURE)
        missing = tuple(name for name in BODY_ONLY_HEADERS if not headers.get(name))
        if missing:
            return _missing(missing, _BODY_ONLY_SENDS)
        timestamp, given_id, signature = (headers.get(h) for h in BODY_ONLY_HEADERS[1:])
        normalised = request_signing.normalise_request_id(given_id)
        if normalised is None:
            return Refusal.of(AgentAuthFailure.BAD_REQUEST_ID)
        # Unix seconds in digits, as the status agent sends them: int() would
        # also take "+5", " 5" and "1_0"; a float was answered clock_skew,
        # which sent its sender to look at a clock that was right.
        if not (timestamp.isascii() and timestamp.isdigit()):
            return _malformed_timestamp(timestamp)
        if not signature_valid(token, body, signature):
            return Refusal.of(AgentAuthFailure.BAD_SIGNATURE)
        if len(timestamp) > MAX_TIMESTAMP_DIGITS:
            return Refusal.of(AgentAuthFailure.CLOCK_SKEW)
        signed_at, request_id = int(timestamp), normalised
    if abs(time.time() - signed_at) > MAX_CLOCK_SKEW:
        return Refusal.of(AgentAuthFailure.CLOCK_SKEW, messages.get(AgentAuthFailure.CLOCK_SKEW))
    gate = services().gate
    if signed_at < gate.replay.signed_since:
        return _signed_before_start(signed_at, gate.replay.signed_since, time.time(), rfc_9421=rfc_9421)
    # Recorded only once the signature proved the sender holds the token, so
    # nobody else can burn an agent's request ids. Normalised: the same UUID in
    # upper case, braces or without hyphens is the same request id.
    if not await gate.replay.first_use(f"{found.id}/{request_id}"):
        return Refusal.of(AgentAuthFailure.REPLAYED, messages.get(AgentAuthFailure.REPLAYED))
    return None


def _signed_before_start(signed_at: float, started: float, now: float, *, rfc_9421: bool) -> Refusal:
    """A request signed before the replay window's start (this process's, with
    SQLite). Its sender is told how far before, and that its clock may be that
    far behind: a clock slow by N s (within ``MAX_CLOCK_SKEW``) has every
    request refused for the first N s after each restart, and "sign a new
    request" alone sent it signing again with the same slow clock."""
    signed = ("the signature's created time (Signature-Input)" if rfc_9421 else "X-Timestamp")
    nonce = "its nonce (the request id)" if rfc_9421 else "its X-Request-Id"
    return Refusal.of(AgentAuthFailure.SIGNED_BEFORE_START, (
        f"{signed}, {signed_at:.0f}, is {started - signed_at:.0f} s before this server started, so {nonce} cannot "
        f"be checked against the requests served before; sign a new request. If it was signed just now, the "
        f"agent's clock may be behind the server's by {max(0.0, now - signed_at):.0f} s: its requests are refused "
        "so until the server has run that long (set the agent's clock by NTP)"))


def _signed_target() -> tuple[str, str]:
    """Method and URL of the request as the agent signed them: the path and
    query exactly as they came on the wire (a WebSocket handshake is a GET)."""
    connection = _connection()
    scope = connection.scope
    raw_path = scope.get("raw_path") or scope.get("path", "").encode()
    method = request.method if has_request_context() else "GET"
    return method, request_signing.target(raw_path.decode("latin-1"), scope.get("query_string", b"").decode("latin-1"))


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
